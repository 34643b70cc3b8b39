#!/usr/bin/python
# Copyright (c) weave.fastdp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
DOCUMENTATION = r"""
module: guards
short_description: iptables guards that never let a mesh's tunnel traffic through in clear
description:
  - Converges the guard chains of one mesh, C(FASTDP-<mesh>-OUT), C(FASTDP-<mesh>-PST) and
    C(FASTDP-<mesh>-IN), all in the C(mangle) table, each jumped to from the top of
    C(OUTPUT), C(POSTROUTING) and C(INPUT).
  - 'Per peer, as in Weave Net 1.9: mark UDP from O(local_address) to the peer''s tunnel port
    (the XFRM out policy selects on that mark); drop marked packets that no policy transformed;
    mark ESP from the peer carrying one of its inbound SPIs (two during a key rotation); drop
    tunnel packets from the peer without that mark, and let through only those that an SA of
    O(reqid) decrypted (C(-m policy --pol ipsec --strict --reqid) O(reqid) C(--proto esp
    --mode transport)).'
  - 'Only the kernel''s own VXLAN traffic enters the tunnel: packets of a local socket
    (C(-m owner --uid-owner 0-4294967294)) are never marked, unless they carry the mark of a
    packet that left through O(device) (an encapsulated packet keeps the socket of the packet
    inside it). A local user''s datagram to a peer''s tunnel port meets no policy and is
    dropped.'
  - 'Then the tunnel-wide drops: tunnel packets from O(local_address) that no policy
    transformed, and inbound tunnel packets that no declared peer''s rules let through (plaintext,
    another SA''s, a non-peer''s), whatever the address, so a peer just removed, or a spoofed
    one, gets nothing through either.'
  - 'Precedence: no iptables table has a place no rule can precede (a built-in chain stops at
    its first ACCEPT), but an ACCEPT in one table never skips another table''s chains. So the
    drops live in the C(mangle) table, where firewalls and a reload of the C(filter) table do
    not reach: C(mangle INPUT) runs before C(filter INPUT), C(mangle POSTROUTING) after
    C(filter OUTPUT). Within C(mangle), each jump must stand first (behind nothing but other
    meshes'' guard jumps): a run puts a displaced or duplicated jump back on top and reports a
    change, deleting only its own jump (by its spec) and inserting it at 1 in one table
    commit, which the kernel swaps in at once, so there is no moment without the guard.
    M(weave.fastdp.mesh_info) reports a displaced jump as a broken pair. An nftables base
    chain at an earlier priority was not chosen: hosts on the legacy backend, and kernels built
    without nf_tables for IPv4, have none, and the C(nft) tool is not on every host. Inbound,
    the mesh''s XFRM inbound policy (M(weave.fastdp.datapath)) is a second line no iptables
    rule can precede.'
  - Applied with one C(iptables-restore --noflush) per address family that rewrites only this
    mesh's chains; nothing else is touched. Unchanged chains are not rewritten, so their
    counters stay. Chains an earlier release kept in the C(filter) table are removed in the
    same run, after the C(mangle) chains are complete.
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
  - Chains of a mesh are managed in the family of O(local_address); the other family gets the
    C(PST) chain with the device's mark only (the overlay may carry either family).
    O(state=absent) removes both.
  - Two meshes on one host need distinct tunnel ports (the tunnel-wide drops match the port).
  - A tool that keeps its own jump first in C(mangle INPUT), C(OUTPUT) or C(POSTROUTING) (some
    container network plugins can be set to) makes every run report a change there.
  - Local user-space traffic across the overlay must leave through O(device) itself (the
    role's setup); sent through a bridge that enslaves the device, or from a raw packet socket
    on it, it is not marked and is dropped.
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
