#!/usr/bin/python
# Copyright (c) weave.fastdp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
DOCUMENTATION = r"""
module: identity
short_description: The host's X25519 identity for the encrypted fast datapath
description:
  - Makes the host's X25519 key pair once, in the root-only state directory, and returns the
    public key and the peer name. The private key never leaves the host.
  - Peers combine their own private key, the other's public key and the mesh password into the
    session key of the pair, from which the per-direction ESP keys are derived.
version_added: 0.1.0
author: weave.fastdp contributors (@weave-fastdp)
requirements:
  - python >= 3.8 (the distribution's own)
  - cryptography >= 3.3 (the distribution's python3-cryptography)
options:
  peer_name:
    description: This host's peer name in the mesh (HKDF info of the keys it receives with).
    type: str
    required: true
extends_documentation_fragment:
  - weave.fastdp.state_dir
  - weave.fastdp.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - In check mode a host without an identity reports C(changed) and returns no public key.
"""

EXAMPLES = r"""
- name: Make sure the host has its identity
  weave.fastdp.identity:
    peer_name: "{{ inventory_hostname }}"
  register: fastdp_identity
"""

RETURN = r"""
public_key:
  description: Base64 of the raw 32-byte X25519 public key; null in check mode before it exists.
  type: str
  returned: always
peer_name:
  description: The peer name, as given.
  type: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.weave.fastdp.plugins.module_utils import arguments, keys


def main():
    module = AnsibleModule(
        argument_spec={
            "peer_name": {"type": "str", "required": True},
            **arguments.STATE_DIR,
        },
        supports_check_mode=True,
    )
    arguments.require(module, keys.MISSING)
    state = keys.StateDir(module.params["state_dir"])
    try:
        private = state.identity()
    except keys.KeyMaterialError as exc:
        module.fail_json(msg=f"state_dir: {exc}")
    changed = private is None
    if changed and not module.check_mode:
        private = state.create_identity()
    module.exit_json(
        changed=changed,
        peer_name=module.params["peer_name"],
        public_key=keys.public_key_text(private) if private else None,
    )


if __name__ == "__main__":
    main()
