#!/usr/bin/python
# Copyright (c) weave.fastdp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
DOCUMENTATION = r"""
module: mesh_info
short_description: The state of every pair of the mesh, like C(weave status connections)
description:
  - Per peer, the mode (C(encrypted fastdp), or C(incomplete) and which part is missing, of
    inbound SA, outbound SA, outbound policy and guard rules), the SPIs each way, bytes and
    packets each way, replay and integrity error counters, and the overlay MTU.
  - Reads one SA dump, one policy dump, one C(iptables-save) and the VXLAN device; only the
    mesh's own objects (its reqid, its guard chains) count.
  - With O(verify=true), sends ICMP echo to each peer's overlay address and reports every pair
    whose echo went unanswered or whose ESP counters did not move, with the likely cause (a
    missing part, no traffic through the outbound SA, ESP blocked on the path, key mismatch).
    Peers still silent get the echo again after waits that double from 0.5 s to 8 s, so a
    loaded peer has 15.5 s to answer, and a broken pair costs that long to report.
version_added: 0.1.0
author: weave.fastdp contributors (@weave-fastdp)
requirements:
  - python >= 3.8 (the distribution's own)
  - iptables-save (ip6tables-save for IPv6 underlays)
# The options: plugins/doc_fragments/steps.py, shared with weave.fastdp.datapath.
extends_documentation_fragment:
  - weave.fastdp.steps.mesh_info
  - weave.fastdp.netns
  - weave.fastdp.attributes
attributes:
  check_mode:
    support: full
    details: Reads only; O(verify) sends ICMP echo in check mode too.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Status of every pair
  weave.fastdp.mesh_info:
    mesh: weave
    reqid: 4242
    device: wf-weave
    local_address: 198.51.100.11
    peers:
      - {name: h2, address: 198.51.100.12, overlay_address: 203.0.113.2/24}
  register: fastdp_status

- name: Show it as a table
  ansible.builtin.debug:
    msg: "{{ fastdp_status.table.splitlines() }}"
"""

RETURN = r"""
peers:
  description: One entry per peer.
  type: list
  elements: dict
  returned: always
  contains:
    peer: {description: Peer name., type: str}
    address: {description: The peer's underlay address., type: str}
    mode: {description: C(encrypted fastdp) or C(incomplete)., type: str}
    missing: {description: The parts an incomplete pair lacks., type: list, elements: str}
    spi_in: {description: SPI of the inbound SA that carried the most packets., type: int}
    spi_out: {description: SPI the outbound policy uses., type: int}
    bytes_in: {description: Bytes received over the pair's inbound SAs., type: int}
    bytes_out: {description: Bytes sent over the outbound SA in use., type: int}
    packets_in: {description: Packets received., type: int}
    packets_out: {description: Packets sent., type: int}
    replay_errors: {description: Packets the inbound SAs refused as replayed., type: int}
    integrity_errors: {description: Packets whose ICV did not verify., type: int}
    mtu: {description: The overlay MTU., type: int}
table:
  description: The same as a text table, one line per peer.
  type: str
  returned: always
broken:
  description: With O(verify), one line per broken pair naming the likely cause.
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.weave.fastdp.plugins.module_utils import arguments, status


def main():
    module = AnsibleModule(argument_spec=status.ARGUMENT_SPEC, supports_check_mode=True)
    arguments.run(module, status.report)


if __name__ == "__main__":
    main()
