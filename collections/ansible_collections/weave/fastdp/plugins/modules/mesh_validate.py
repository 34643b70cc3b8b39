#!/usr/bin/python
# Copyright (c) weave.fastdp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
DOCUMENTATION = r"""
module: mesh_validate
short_description: Check a declared fast datapath mesh as a whole, before any host changes
description:
  - Run once on the controller with every member's declared and probed facts. Fails listing
    every problem, each naming the host and the inventory variable to fix.
  - 'Finds: duplicate underlay addresses, duplicate peer names, duplicate overlay addresses,
    overlay addresses outside the mesh prefix, an MTU the underlay cannot carry with VXLAN and
    ESP, a missing password, an unknown cipher, a key epoch lower than one a host already uses.'
version_added: 0.1.0
author: weave.fastdp contributors (@weave-fastdp)
requirements:
  - python >= 3.8 (the distribution's own)
options:
  mesh:
    description: The mesh-wide settings.
    type: dict
    required: true
    suboptions:
      name:
        description: Mesh name.
        type: str
        required: true
      cipher:
        description: C(aes-gcm) or C(chacha20-poly1305).
        type: str
        required: true
      password:
        description: The mesh password; only its presence is checked.
        type: str
      overlay_prefix:
        description: The overlay network every member's overlay address must be in.
        type: str
        required: true
      epoch:
        description: The key epoch.
        type: int
        required: true
      mtu:
        description: Explicit overlay MTU, or null for the computed default.
        type: int
  members:
    description: One entry per host (host, peer_name, underlay_address, overlay_address,
      underlay_mtu, recorded_epoch).
    type: list
    elements: dict
    required: true
extends_documentation_fragment:
  - weave.fastdp.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Check the whole mesh on the controller
  weave.fastdp.mesh_validate:
    mesh: {name: weave, cipher: aes-gcm, password: "{{ vault_pw }}", overlay_prefix: 203.0.113.0/24, epoch: 1}
    members: "{{ ansible_play_hosts_all | map('extract', hostvars, 'fastdp_member') | list }}"
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
errors:
  description: Every problem found (also in msg when failed).
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.weave.fastdp.plugins.module_utils.mesh import validate
from ansible_collections.weave.fastdp.plugins.module_utils.vxlan import max_overlay_mtu


def main():
    module = AnsibleModule(
        argument_spec={
            "mesh": {"type": "dict", "required": True, "options": {
                "name": {"type": "str", "required": True},
                "cipher": {"type": "str", "required": True},
                "password": {"type": "str", "no_log": True},
                "overlay_prefix": {"type": "str", "required": True},
                "epoch": {"type": "int", "required": True},
                "mtu": {"type": "int"},
            }},
            "members": {"type": "list", "elements": "dict", "required": True},
        },
        supports_check_mode=True,
    )
    members = [{**m, "underlay_mtu": _int(m.get("underlay_mtu")),
                "recorded_epoch": _int(m.get("recorded_epoch"))} for m in module.params["members"]]
    errors = validate(module.params["mesh"], members, max_overlay_mtu)
    if errors:
        module.fail_json(msg="the declared mesh is not valid:\n" + "\n".join(errors), errors=errors)
    module.exit_json(changed=False, errors=[])


def _int(value):
    """Facts templated into a list come back as strings; absent ones as '' or None."""
    return int(value) if value not in (None, "", "None") else None


if __name__ == "__main__":
    main()
