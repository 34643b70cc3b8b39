#!/usr/bin/python
# Copyright (c) weave.fastdp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
DOCUMENTATION = r"""
module: guards
short_description: iptables guards that never let a mesh's tunnel traffic through in clear
description:
  - Converges the guard chains of one mesh, C(FASTDP-<mesh>-OUT) and C(FASTDP-<mesh>-IN) in the
    C(mangle) and C(filter) tables, each jumped to once from the top of C(OUTPUT) / C(INPUT).
  - 'Per peer, as in Weave Net 1.9: mark UDP from O(local_address) to the peer''s tunnel port
    (the XFRM out policy selects on that mark); drop marked packets that no policy transformed;
    mark ESP from the peer carrying one of its inbound SPIs (two during a key rotation); drop
    tunnel packets from the peer without that mark.'
  - 'Then two tunnel-wide rules: tunnel packets from O(local_address) that no policy
    transformed, and tunnel packets in that were not decrypted, are dropped whatever the
    address, so a peer just removed, or a spoofed one, gets no plaintext through either.'
  - Applied with one C(iptables-restore --noflush) per address family that rewrites only this
    mesh's chains, the filter table (drops) before the mangle table (marks); nothing else is
    touched. Unchanged chains are not rewritten, so their counters stay.
  - The iptables backend (nf_tables or legacy) is the one the C(iptables) command uses; the
    matching C(-save)/C(-restore) tools are used. IPv6 underlays use C(ip6tables).
version_added: 0.1.0
author: weave.fastdp contributors (@weave-fastdp)
requirements:
  - python >= 3.8 (the distribution's own)
  - iptables, with iptables-save and iptables-restore (ip6tables for IPv6 underlays)
# The options: plugins/doc_fragments/steps.py, shared with weave.fastdp.datapath.
extends_documentation_fragment:
  - weave.fastdp.steps.guards
  - weave.fastdp.netns
  - weave.fastdp.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
notes:
  - Chains of a mesh are managed in the family of O(local_address) only; O(state=absent)
    removes both.
  - Two meshes on one host need distinct tunnel ports or the same mark (the tunnel-wide rules
    match the port).
seealso:
  - module: weave.fastdp.vxlan
"""

EXAMPLES = r"""
- name: Guard chains of mesh weave towards two peers
  weave.fastdp.guards:
    mesh: weave
    local_address: 198.51.100.11
    peers:
      - {name: h2, address: 198.51.100.12, inbound_spis: [0x1000a]}
      - {name: h3, address: 198.51.100.13, inbound_spis: [0x1000b, 0x2000b]}

- name: Remove them
  weave.fastdp.guards:
    mesh: weave
    state: absent
"""

RETURN = r"""
commands:
  description: The iptables-restore input of the run (of check mode, what it would apply);
    empty when nothing changes.
  type: list
  elements: str
  returned: always
  sample: ["ip6tables *filter", "ip6tables :FASTDP-weave-IN - [0:0]"]
rules:
  description: 'The mesh''s jumps and guard rules after the run, C(<tool> <table>: <rule>).
    Only in diff mode: at a thousand peers they are four thousand lines.'
  type: list
  elements: str
  returned: in diff mode (C(--diff))
backend:
  description: The iptables backend used, C(nft) or C(legacy).
  type: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.weave.fastdp.plugins.module_utils import arguments, guards


def main():
    module = AnsibleModule(argument_spec=guards.ARGUMENT_SPEC, required_if=guards.REQUIRED_IF,
                           supports_check_mode=True)
    arguments.run(module, guards.converge)


if __name__ == "__main__":
    main()
