#!/usr/bin/python
# Copyright (c) weave.fastdp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
DOCUMENTATION = r"""
module: vxlan
short_description: The VXLAN device of an encrypted fast datapath mesh
description:
  - Converges one VXLAN device per mesh (VNI, UDP tunnel port, local underlay address),
    one all-zeros FDB entry per peer (head-end replication, so that broadcast and not yet
    learned frames go to every peer), the overlay addresses, an optional bridge the device is
    enslaved to, and the MTU; then sets the device up.
  - Optionally also the device's MAC address (O(mac)), permanent FDB entries for overlay MACs
    behind a peer (O(macs)) and permanent ARP/NDP entries for overlay addresses (O(neighbours)).
    The weave.fastdp.mesh role declares all three for every peer (each host's MAC is derived
    from the mesh name and its underlay address), so traffic between the hosts' overlay
    addresses never waits for ARP and never floods to every peer, even after an idle spell
    long enough for learned entries to age out (300 s).
  - The device learns which peer an overlay MAC address is behind from the frames it receives
    (the mesh's guards let VXLAN in only over ESP from a peer), so unicast frames go to that
    peer alone instead of to every peer. Learned FDB entries are the kernel's own, never
    reported as a change nor removed. A device made without learning (by an earlier version)
    learns from the next run on, in place. Neighbours the kernel resolved itself are not
    this module's either; a permanent one on the device that is not declared is removed like an
    FDB entry (see O(purge)).
  - The default MTU leaves room for VXLAN (50 bytes over IPv4, 70 over IPv6) and the worst case
    of ESP (34 bytes), rounded down to a multiple of 4; an underlay MTU of 1500 gives 1416 over
    IPv4. A larger O(mtu) is refused with the largest allowed value.
  - The MTU, MAC address, addresses, master, FDB and neighbour entries change in place. A
    change of VNI, port, local address or underlay interface recreates the device (briefly
    interrupting the overlay); the result says so in RV(recreated) and RV(changes).
  - Only the device named O(name) is ever touched; a device of that name that is not VXLAN is
    refused. Underlays may be IPv4 or IPv6.
version_added: 0.1.0
author: weave.fastdp contributors (@weave-fastdp)
requirements:
  - python >= 3.8 (the distribution's own)
# The options: plugins/doc_fragments/steps.py, shared with weave.fastdp.datapath.
extends_documentation_fragment:
  - weave.fastdp.steps.vxlan
  - weave.fastdp.netns
  - weave.fastdp.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
notes:
  - Run the guards module first, so that tunnel traffic never leaves the host in clear.
seealso:
  - module: weave.fastdp.guards
"""

EXAMPLES = r"""
- name: VXLAN device of mesh weave, to two peers
  weave.fastdp.vxlan:
    name: wf-weave
    vni: 4242
    local: 198.51.100.11
    underlay_interface: eth0
    addresses: [203.0.113.1/24]
    peers: [198.51.100.12, 198.51.100.13]

- name: Over an IPv6 underlay, with an explicit MTU, and the peer's device known in advance
  weave.fastdp.vxlan:
    name: wf-six
    vni: 6
    local: 2001:db8::11
    mtu: 1280
    mac: "02:00:00:00:00:11"
    addresses: [203.0.113.1/24]
    peers: [2001:db8::12]
    macs:
      - {mac: "02:00:00:00:00:12", peer: 2001:db8::12}
    neighbours:
      - {address: 203.0.113.2, mac: "02:00:00:00:00:12"}

- name: Remove the device
  weave.fastdp.vxlan:
    name: wf-weave
    state: absent
"""

RETURN = r"""
changes:
  description: What the run changed (in check mode, what it would change), in order.
  type: list
  elements: str
  returned: always
  sample: ["remove fdb 00:00:00:00:00:00 dst 198.51.100.13", "set mtu 1376 -> 1416"]
recreated:
  description: Whether the device was (or would be) deleted and created again, because an
    attribute the kernel cannot change in place differs.
  type: bool
  returned: always
device:
  description: The device after the run; null when O(state=absent).
  type: dict
  returned: always
  contains:
    name: {description: Device name., type: str}
    vni: {description: VNI., type: int}
    port: {description: UDP tunnel port., type: int}
    local: {description: Underlay address., type: str}
    underlay_interface: {description: Underlay interface., type: str}
    mtu: {description: Overlay MTU., type: int}
    bridge: {description: Master bridge or null., type: str}
    mac: {description: The device's MAC address., type: str}
    addresses: {description: Overlay addresses., type: list, elements: str}
    peers: {description: Peers with an all-zeros FDB entry., type: list, elements: str}
    fdb: {description: 'Every permanent FDB entry, {mac, peer}.', type: list, elements: dict}
    neighbours: {description: 'Every permanent neighbour, {address, mac}.', type: list,
                 elements: dict}
max_mtu:
  description: The largest overlay MTU the underlay allows; null when O(state=absent).
  type: int
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.weave.fastdp.plugins.module_utils import arguments, vxlan


def main():
    module = AnsibleModule(argument_spec=vxlan.ARGUMENT_SPEC, required_if=vxlan.REQUIRED_IF,
                           supports_check_mode=True)
    arguments.run(module, vxlan.converge)


if __name__ == "__main__":
    main()
