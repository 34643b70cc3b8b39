#!/usr/bin/python
# Copyright (c) weave.fastdp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
DOCUMENTATION = r"""
module: xfrm_state
short_description: The host's inbound or outbound ESP SAs of the mesh, keys derived on the host
description:
  - Converges the kernel's XFRM SAs of one direction to exactly what the mesh declares, in one
    call with one kernel dump. Every SA is ESP transport mode with an AEAD (ICV 128 bits), ESN
    and the given replay window, and carries O(reqid), which marks it as this mesh's own. SAs of
    any other reqid are never touched.
  - Keys are derived here, never sent. The session key of each pair is formed from this host's
    X25519
    identity, the peer's public key and the mesh password, then HKDF-SHA256 with the nonce of
    the direction. Inbound SAs use the nonces kept in O(state_dir) (every epoch kept there);
    outbound SAs the nonces each peer published for this host (every published epoch, or only
    the newest with O(retire)).
  - A difference in anything that matters (algorithm, key, ICV, ESN, replay window, mode,
    selector, mark, reqid, source) replaces the SA; the kernel cannot change those in place.
  - With O(state=absent) every SA with O(reqid) is removed.
version_added: 0.1.0
author: weave.fastdp contributors (@weave-fastdp)
requirements:
  - python >= 3.8 (the distribution's own)
  - cryptography >= 3.3 (the distribution's python3-cryptography)
# The options: plugins/doc_fragments/steps.py, shared with weave.fastdp.datapath.
extends_documentation_fragment:
  - weave.fastdp.steps.xfrm_state
  - weave.fastdp.state_dir
  - weave.fastdp.netns
  - weave.fastdp.attributes
attributes:
  check_mode:
    support: full
    details: SAs whose nonce a real run would make first are reported as additions.
  diff_mode:
    support: full
    details: One line per added, changed or removed SA; keys appear only as C(sha256:) fingerprints.
seealso:
  - module: weave.fastdp.nonces
  - module: weave.fastdp.xfrm_policy
"""

EXAMPLES = r"""
- name: Inbound SAs from every peer
  weave.fastdp.xfrm_state:
    direction: inbound
    mesh: weave
    peer_name: h1
    local_address: 198.51.100.11
    epoch: 1
    peers:
      - name: h2
        address: 198.51.100.12
        public_key: "{{ hostvars.h2.fastdp_identity.public_key }}"
    password: "{{ vault_fastdp_password }}"
    reqid: 4242

- name: Remove every SA of the mesh
  weave.fastdp.xfrm_state:
    state: absent
    reqid: 4242
"""

RETURN = r"""
changes:
  description: One readable line per added (+), changed (~) or removed (-) SA; no key.
  type: list
  elements: str
  returned: always
outbound_spis:
  description: Per peer, V({address, spi}) of the newest outbound SA (empty for inbound).
  type: dict
  returned: always
outbound_epochs:
  description: Per peer, the newest epoch of its outbound SA (empty for inbound).
  type: dict
  returned: always
sas:
  description: The wanted SAs of this direction, V([{peer, epoch, src, dst, spi, key}]) with
    C(key) a C(sha256:) fingerprint.
  type: list
  elements: dict
  returned: always
pending:
  description: V(peer epoch) of SAs whose nonce does not exist yet (check mode).
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.weave.fastdp.plugins.module_utils import arguments, keys
from ansible_collections.weave.fastdp.plugins.module_utils import xfrm_inventory as inventory


def main():
    module = AnsibleModule(argument_spec=inventory.SA_ARGUMENT_SPEC, required_if=inventory.SA_REQUIRED_IF,
                           supports_check_mode=True)
    arguments.require(module, keys.MISSING)
    arguments.run(module, inventory.converge_sas)


if __name__ == "__main__":
    main()
