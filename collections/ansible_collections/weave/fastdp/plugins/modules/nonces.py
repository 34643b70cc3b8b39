#!/usr/bin/python
# Copyright (c) weave.fastdp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
DOCUMENTATION = r"""
module: nonces
short_description: The receiver's nonces and inbound SPIs of a key epoch, published sealed
description:
  - For each peer that sends to this host, makes (once per key epoch) the 32-byte random nonce
    and the SPI of the inbound SA, keeps them in the root-only state directory and publishes
    them for that peer sealed with AES-GCM under a key only the two peers can form. The
    controller carries the published values to the sender; no nonce appears in any output.
  - The SPI is chosen at random outside the reserved range 1-255 and unused by any SA towards
    this host (one kernel dump), so it is unique per destination.
  - Re-running keeps the nonces and SPIs, so an unchanged mesh derives the same keys; a higher
    O(epoch) makes new ones; a lower one is refused.
version_added: 0.1.0
author: weave.fastdp contributors (@weave-fastdp)
requirements:
  - python >= 3.8 (the distribution's own)
  - cryptography >= 3.3 (the distribution's python3-cryptography)
# The options: plugins/doc_fragments/steps.py, shared with weave.fastdp.datapath.
extends_documentation_fragment:
  - weave.fastdp.steps.nonces
  - weave.fastdp.state_dir
  - weave.fastdp.netns
  - weave.fastdp.attributes
attributes:
  check_mode:
    support: full
    details: Reports the entries it would make; publishes only entries that exist.
  diff_mode:
    support: full
    details: Lines per entry with the SPI; never the nonce.
"""

EXAMPLES = r"""
- name: Nonces and inbound SPIs of epoch 1
  weave.fastdp.nonces:
    mesh: weave
    peer_name: "{{ inventory_hostname }}"
    local_address: 198.51.100.11
    epoch: 1
    peers:
      - name: h2
        public_key: "{{ hostvars.h2.fastdp_identity.public_key }}"
    password: "{{ vault_fastdp_password }}"
  register: fastdp_nonces
"""

RETURN = r"""
published:
  description: Per sender, its entries [{epoch, spi, sealed_nonce}]; only the sender can open them.
  type: dict
  returned: always
inbound_spis:
  description: Per sender, the SPIs of its inbound SAs on this host, newest epoch last.
  type: dict
  returned: always
epochs:
  description: The epochs this host keeps entries for after the run.
  type: list
  elements: int
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.weave.fastdp.plugins.module_utils import arguments, keys
from ansible_collections.weave.fastdp.plugins.module_utils import xfrm_inventory as inventory


def main():
    module = AnsibleModule(argument_spec=inventory.NONCES_ARGUMENT_SPEC,
                           supports_check_mode=True)
    arguments.require(module, keys.MISSING)
    arguments.run(module, inventory.converge_nonces)


if __name__ == "__main__":
    main()
