#!/usr/bin/python
# Copyright (c) weave.fastdp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
DOCUMENTATION = r"""
module: xfrm_policy
short_description: The mesh's XFRM policies (marked tunnel traffic to each peer through its SA)
description:
  - Converges the kernel's XFRM policies whose template carries O(reqid) (this mesh's own) to
    exactly O(policies), in one call with one kernel dump. Policies of any other owner are never
    touched; one holding the place (selector, direction, mark) of a declared policy is an error.
  - A declared policy that differs from the kernel's (a new SPI after a key rotation, another
    template) is switched in place with C(XFRM_MSG_UPDPOLICY), so no packet goes out unprotected
    or is dropped while it changes.
version_added: 0.1.0
author: weave.fastdp contributors (@weave-fastdp)
requirements:
  - python >= 3.8 (the distribution's own)
options:
  reqid:
    description: This mesh's reqid, the ownership marker (policies with a template of this reqid are ours).
    type: int
    required: true
  policies:
    description: The whole wanted set of this mesh's policies (see the C(outbound_policies) filter).
    type: list
    elements: dict
    required: true
    suboptions:
      src:
        description: Selector source, an address (a host) or a network.
        type: str
        required: true
      dst:
        description: Selector destination, an address or a network.
        type: str
        required: true
      proto:
        description: Selector protocol (V(udp), V(tcp), V(icmp), V(any) or a number).
        type: raw
        default: any
      direction:
        description: Policy direction.
        type: str
        choices: [out, in, fwd]
        default: out
      mark:
        description: Packet mark the policy selects on (with O(policies[].mask)).
        type: int
        default: 0
      mask:
        description: Mask of O(policies[].mark); defaults to the mark itself.
        type: int
      template:
        description: The ESP transport SA the traffic goes through.
        type: dict
        required: true
        suboptions:
          src:
            description: SA source address.
            type: str
            required: true
          dst:
            description: SA destination address.
            type: str
            required: true
          spi:
            description: SA SPI (256 and up).
            type: int
            required: true
          reqid:
            description: Must equal O(reqid) (the SA's reqid; a mismatch would drop every packet).
            type: int
  retain:
    description: Addresses of peers outside this run; policies naming them are never touched.
    type: list
    elements: str
    default: []
  purge:
    description: Remove this mesh's policies that are not declared (and not retained).
    type: bool
    default: true
extends_documentation_fragment:
  - weave.fastdp.netns
  - weave.fastdp.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: One line per added, switched or removed policy.
seealso:
  - module: weave.fastdp.xfrm_state
"""

EXAMPLES = r"""
- name: Marked tunnel traffic to h2 goes through the SA with SPI 0x1234
  weave.fastdp.xfrm_policy:
    reqid: 4242
    policies:
      - src: 198.51.100.11
        dst: 198.51.100.12
        proto: udp
        direction: out
        mark: 0x20000
        template: {src: 198.51.100.11, dst: 198.51.100.12, spi: 0x1234}

- name: Remove every policy of the mesh
  weave.fastdp.xfrm_policy:
    reqid: 4242
    policies: []
"""

RETURN = r"""
changes:
  description: One readable line per added (+), switched (~) or removed (-) policy.
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.weave.fastdp.plugins.module_utils import arguments, xfrm_policies


def main():
    module = AnsibleModule(argument_spec=xfrm_policies.POLICY_ARGUMENT_SPEC,
                           supports_check_mode=True)
    arguments.run(module, xfrm_policies.converge_policies)


if __name__ == "__main__":
    main()
