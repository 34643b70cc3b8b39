#!/usr/bin/python
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
author: weave.fastdp developers
requirements:
  - python >= 3.8 (the distribution's own)
options:
  name:
    description: The device name (at most 15 characters), the mesh's ownership marker.
    type: str
    required: true
  state:
    description: C(absent) removes the device with its addresses and FDB entries.
    type: str
    choices: [present, absent]
    default: present
  vni:
    description: VXLAN network identifier, 1 to 16777215. Required when O(state=present).
    type: int
  port:
    description: UDP tunnel port (Weave's fastdp uses 6784).
    type: int
    default: 6784
  local:
    description: This host's underlay address (IPv4 or IPv6), the source of tunnel packets.
      Required when O(state=present).
    type: str
  underlay_interface:
    description: The interface the underlay address is on; its MTU bounds the overlay MTU.
      Default the interface holding O(local).
    type: str
  mtu:
    description: The overlay MTU. Default the largest the underlay allows with VXLAN and ESP.
    type: int
  addresses:
    description: Overlay addresses of the device, C(address/prefix). The whole set;
      others are removed (IPv6 link-local addresses are left to the kernel).
    type: list
    elements: str
    default: []
  peers:
    description: Underlay addresses of the peers, each given an all-zeros FDB entry.
    type: list
    elements: str
    default: []
  macs:
    description: Optional static FDB entries, an overlay MAC address behind a peer.
    type: list
    elements: dict
    default: []
    suboptions:
      mac:
        description: The overlay MAC address.
        type: str
        required: true
      peer:
        description: The peer's underlay address (one of O(peers)).
        type: str
        required: true
  mac:
    description: The device's MAC address (unicast); unset, the kernel's random one is kept.
    type: str
  neighbours:
    description: Permanent ARP (IPv4) or NDP (IPv6) entries on the device, a peer's overlay
      address and the MAC of its device.
    type: list
    elements: dict
    default: []
    suboptions:
      address:
        description: The peer's overlay address, without prefix.
        type: str
        required: true
      mac:
        description: The MAC address of the peer's device.
        type: str
        required: true
  retain:
    description: Underlay addresses of peers outside this run (C(--limit)); their FDB entries,
      and the neighbours whose MAC is behind them, are left as they are.
    type: list
    elements: str
    default: []
  purge:
    description: Remove FDB entries of peers that are neither in O(peers) nor in O(retain),
      and permanent neighbours that are not in O(neighbours) (unless behind a retained peer).
    type: bool
    default: true
  bridge:
    description:
      - A bridge to enslave the device to. An empty string releases it from any master.
      - Omit to leave the device's master as it is.
    type: str
extends_documentation_fragment:
  - weave.fastdp.netns
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
