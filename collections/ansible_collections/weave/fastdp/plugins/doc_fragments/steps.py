# Copyright (c) weave.fastdp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The options of each converge step, documented once. NONCES, GUARDS, XFRM_STATE, VXLAN and
MESH_INFO are the options of the step's own module (``weave.fastdp.steps.nonces`` and so on).
DATAPATH, the sub-dicts of weave.fastdp.datapath that run the steps (their argument specs are
the step modules', module_utils.datapath.ARGUMENT_SPEC), is made from them and the netns and
state_dir fragments by tests/unit/test_doc_fragments.py, which checks it: edit the step docs
here, then run ``.venv/bin/python -m tests.unit.test_doc_fragments``."""

from __future__ import annotations


class ModuleDocFragment:
    NONCES = r"""
options:
  mesh:
    description: Mesh name; binds every sealed nonce to this mesh.
    type: str
    required: true
  peer_name:
    description: This host's peer name.
    type: str
    required: true
  local_address:
    description: This host's underlay address (destination of its inbound SAs).
    type: str
    required: true
  epoch:
    description: The key epoch of the mesh. Bumping it rotates every key.
    type: int
    required: true
  peers:
    description: The peers that send to this host in this run.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Peer name.
        type: str
        required: true
      public_key:
        description: The peer's X25519 public key (base64), from M(weave.fastdp.identity).
        type: str
      switched_epoch:
        description: The epoch of the peer's outbound SA to this host, once known.
        type: int
      lost_spis:
        description: SPIs of the peer's outbound SAs to this host that its kernel lost (its
          M(weave.fastdp.preflight) RV(weave.fastdp.preflight#module:lost_outbound)); each gets a
          fresh nonce and SPI, as a key is never installed twice.
        type: list
        elements: int
        default: []
  retain:
    description: Names of peers outside this run (C(--limit), later C(serial) batches) whose
      entries are left as they are.
    type: list
    elements: str
    default: []
  password:
    description: The mesh password (keep it in Ansible Vault). Never logged.
    type: str
    required: true
  purge:
    description: Drop the entries of peers no longer declared (and not in O(retain)).
    type: bool
    default: true
  retire:
    description:
      - Drop a peer's entries of earlier epochs once it has switched to O(epoch)
        (O(peers[].switched_epoch)). Until then they stay, so its old SA keeps working
        (make before break).
    type: bool
    default: false
"""

    GUARDS = r"""
options:
  mesh:
    description: The mesh name, part of the chain names (at most 17 characters, as iptables
      chain names have at most 28).
    type: str
    required: true
  state:
    description: C(absent) removes the mesh's chains and every jump to them, IPv4 and IPv6.
    type: str
    choices: [present, absent]
    default: present
  local_address:
    description: This host's underlay address; its family picks iptables or ip6tables.
      Required when O(state=present).
    type: str
  port:
    description: The UDP tunnel port.
    type: int
    default: 6784
  mark:
    description: The packet mark bit (mark and mask), one bit, clear of Kubernetes'
      C(0x4000)/C(0x8000). An integer or a string like C(0x20000).
    type: raw
    default: 0x20000
  peers:
    description: The peers of this run.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Peer name (for messages).
        type: str
      address:
        description: The peer's underlay address.
        type: str
        required: true
      inbound_spis:
        description: SPIs of the inbound SAs from this peer; ESP carrying them is marked.
          Empty drops all tunnel traffic from the peer.
        type: list
        elements: raw
        default: []
  retain:
    description: Underlay addresses of peers outside this run (C(--limit)); their rules are
      left as they are.
    type: list
    elements: str
    default: []
  purge:
    description: Remove the rules of peers that are neither in O(peers) nor in O(retain).
    type: bool
    default: true
"""

    XFRM_STATE = r"""
options:
  state:
    description: V(present) converges the SAs of O(direction); V(absent) removes every SA with O(reqid).
    type: str
    choices: [present, absent]
    default: present
  direction:
    description:
      - V(inbound) SAs from each peer to this host, V(outbound) SAs from this host to each peer.
      - Required with O(state=present).
    type: str
    choices: [inbound, outbound]
  retire:
    description: Outbound only the newest epoch each peer published (the last step of a key rotation).
    type: bool
    default: false
  mesh:
    description: Mesh name (bound into every sealed nonce). Required with O(state=present).
    type: str
  peer_name:
    description: This host's peer name (HKDF info of the keys it receives with).
    type: str
  local_address:
    description: This host's underlay address.
    type: str
  epoch:
    description:
      - The mesh's current key epoch. Its SAs are wanted even before their nonces exist, so
        that check mode reports them; omit to converge only the epochs already known.
    type: int
  peers:
    description: The peers of this run.
    type: list
    elements: dict
    suboptions:
      name:
        description: Peer name.
        type: str
        required: true
      address:
        description: The peer's underlay address.
        type: str
        required: true
      public_key:
        description: The peer's X25519 public key (base64) from M(weave.fastdp.identity).
        type: str
      published:
        description: What the peer published for this host with M(weave.fastdp.nonces)
          (V([{epoch, spi, sealed_nonce}])).
        type: list
        elements: dict
      switched_epoch:
        description: Accepted for symmetry with M(weave.fastdp.nonces); not used here.
        type: int
  retain:
    description: Underlay addresses of peers outside this run; their SAs are never touched.
    type: list
    elements: str
    default: []
  password:
    description: The mesh password (keep it in Ansible Vault). Never logged.
    type: str
  reqid:
    description: This mesh's reqid, the ownership marker of its SAs (and of its policies' templates).
    type: int
    required: true
  cipher:
    description: V(aes-gcm) is C(rfc4106(gcm(aes))), V(chacha20-poly1305) is
      C(rfc7539esp(chacha20,poly1305)); both take a 36-byte key (32 + 4-byte salt).
    type: str
    choices: [aes-gcm, chacha20-poly1305]
    default: aes-gcm
  replay_window:
    description: Replay window in packets (ESN), 1 to 4096.
    type: int
    default: 256
  purge:
    description: Remove this mesh's SAs of peers no longer declared (and not in O(retain)).
    type: bool
    default: true
"""

    VXLAN = r"""
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
"""

    MESH_INFO = r"""
options:
  mesh:
    description: The mesh name (its guard chains carry it).
    type: str
    required: true
  reqid:
    description: The mesh's XFRM reqid (on its SAs and policy templates).
    type: int
    required: true
  device:
    description: The mesh's VXLAN device.
    type: str
    required: true
  local_address:
    description: This host's underlay address.
    type: str
    required: true
  peers:
    description: The peers to report on.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Peer name.
        type: str
        required: true
      address:
        description: The peer's underlay address.
        type: str
        required: true
      overlay_address:
        description: The peer's overlay address (with or without prefix length); needed by
          O(verify).
        type: str
  verify:
    description: Send traffic to every peer and check that its ESP counters move.
    type: bool
    default: false
"""

    DATAPATH = r"""
options:
  nonces:
    description: The options of M(weave.fastdp.nonces).
    type: dict
    suboptions:
      mesh:
        description: Mesh name; binds every sealed nonce to this mesh.
        type: str
        required: true
      peer_name:
        description: This host's peer name.
        type: str
        required: true
      local_address:
        description: This host's underlay address (destination of its inbound SAs).
        type: str
        required: true
      epoch:
        description: The key epoch of the mesh. Bumping it rotates every key.
        type: int
        required: true
      peers:
        description: The peers that send to this host in this run.
        type: list
        elements: dict
        required: true
        suboptions:
          name:
            description: Peer name.
            type: str
            required: true
          public_key:
            description: The peer's X25519 public key (base64), from M(weave.fastdp.identity).
            type: str
          switched_epoch:
            description: The epoch of the peer's outbound SA to this host, once known.
            type: int
          lost_spis:
            description: SPIs of the peer's outbound SAs to this host that its kernel lost (its M(weave.fastdp.preflight)
              RV(weave.fastdp.preflight#module:lost_outbound)); each gets a fresh nonce and SPI, as
              a key is never installed twice.
            type: list
            elements: int
            default: []
      retain:
        description: Names of peers outside this run (C(--limit), later C(serial) batches) whose entries
          are left as they are.
        type: list
        elements: str
        default: []
      password:
        description: The mesh password (keep it in Ansible Vault). Never logged.
        type: str
        required: true
      purge:
        description: Drop the entries of peers no longer declared (and not in O(nonces.retain)).
        type: bool
        default: true
      retire:
        description:
        - Drop a peer's entries of earlier epochs once it has switched to O(nonces.epoch) (O(nonces.peers[].switched_epoch)).
          Until then they stay, so its old SA keeps working (make before break).
        type: bool
        default: false
      state_dir:
        description:
        - The host's root-only state directory (mode 0700, files 0600) that keeps its X25519 private
          key and, per key epoch, the nonces and SPIs of its inbound SAs.
        - It also keeps the X25519 shared secret with each peer public key seen (no more than the
          private key beside it can make), so a run that changes nothing does no X25519.
        - For each SA it installed, a digest of its key's inputs and a digest of the key (neither
          gives a key), so a run that changes nothing confirms each installed key with two SHA-256
          instead of deriving it again.
        - The private key and shared secrets never leave it; nonces leave it only sealed for the peer
          they serve.
        type: path
        default: /var/lib/weave-fastdp
      netns:
        description:
        - Name of a network namespace (as in C(ip netns), under C(/run/netns)) to act in, for example
          a host's container namespace or a lab host. The namespace must exist.
        - Omit to act in the namespace the module runs in.
        type: str
  guards:
    description: The options of M(weave.fastdp.guards); with O(nonces), each peer's O(guards.peers[].inbound_spis)
      are those of the O(nonces) step (by peer O(guards.peers[].name)).
    type: dict
    suboptions:
      mesh:
        description: The mesh name, part of the chain names (at most 17 characters, as iptables chain
          names have at most 28).
        type: str
        required: true
      state:
        description: C(absent) removes the mesh's chains and every jump to them, IPv4 and IPv6.
        type: str
        choices:
        - present
        - absent
        default: present
      local_address:
        description: This host's underlay address; its family picks iptables or ip6tables. Required
          when O(guards.state=present).
        type: str
      port:
        description: The UDP tunnel port.
        type: int
        default: 6784
      mark:
        description: The packet mark bit (mark and mask), one bit, clear of Kubernetes' C(0x4000)/C(0x8000).
          An integer or a string like C(0x20000).
        type: raw
        default: 131072
      peers:
        description: The peers of this run.
        type: list
        elements: dict
        default: []
        suboptions:
          name:
            description: Peer name (for messages).
            type: str
          address:
            description: The peer's underlay address.
            type: str
            required: true
          inbound_spis:
            description: SPIs of the inbound SAs from this peer; ESP carrying them is marked. Empty
              drops all tunnel traffic from the peer.
            type: list
            elements: raw
            default: []
      retain:
        description: Underlay addresses of peers outside this run (C(--limit)); their rules are left
          as they are.
        type: list
        elements: str
        default: []
      purge:
        description: Remove the rules of peers that are neither in O(guards.peers) nor in O(guards.retain).
        type: bool
        default: true
      netns:
        description:
        - Name of a network namespace (as in C(ip netns), under C(/run/netns)) to act in, for example
          a host's container namespace or a lab host. The namespace must exist.
        - Omit to act in the namespace the module runs in.
        type: str
  inbound_sas:
    description: The options of M(weave.fastdp.xfrm_state) for O(weave.fastdp.xfrm_state#module:direction=inbound),
      without C(state) and C(direction); what V(present) requires is required.
    type: dict
    suboptions:
      retire:
        description: Outbound only the newest epoch each peer published (the last step of a key rotation).
        type: bool
        default: false
      mesh:
        description: Mesh name (bound into every sealed nonce). Required with O(weave.fastdp.xfrm_state#module:state=present).
        type: str
        required: true
      peer_name:
        description: This host's peer name (HKDF info of the keys it receives with).
        type: str
        required: true
      local_address:
        description: This host's underlay address.
        type: str
        required: true
      epoch:
        description:
        - The mesh's current key epoch. Its SAs are wanted even before their nonces exist, so that
          check mode reports them; omit to converge only the epochs already known.
        type: int
      peers:
        description: The peers of this run.
        type: list
        elements: dict
        suboptions:
          name:
            description: Peer name.
            type: str
            required: true
          address:
            description: The peer's underlay address.
            type: str
            required: true
          public_key:
            description: The peer's X25519 public key (base64) from M(weave.fastdp.identity).
            type: str
          published:
            description: What the peer published for this host with M(weave.fastdp.nonces) (V([{epoch,
              spi, sealed_nonce}])).
            type: list
            elements: dict
          switched_epoch:
            description: Accepted for symmetry with M(weave.fastdp.nonces); not used here.
            type: int
        required: true
      retain:
        description: Underlay addresses of peers outside this run; their SAs are never touched.
        type: list
        elements: str
        default: &id001 []
      password:
        description: The mesh password (keep it in Ansible Vault). Never logged.
        type: str
        required: true
      reqid:
        description: This mesh's reqid, the ownership marker of its SAs (and of its policies' templates).
        type: int
        required: true
      cipher:
        description: V(aes-gcm) is C(rfc4106(gcm(aes))), V(chacha20-poly1305) is C(rfc7539esp(chacha20,poly1305));
          both take a 36-byte key (32 + 4-byte salt).
        type: str
        choices: &id002
        - aes-gcm
        - chacha20-poly1305
        default: aes-gcm
      replay_window:
        description: Replay window in packets (ESN), 1 to 4096.
        type: int
        default: 256
      purge:
        description: Remove this mesh's SAs of peers no longer declared (and not in O(inbound_sas.retain)).
        type: bool
        default: true
      state_dir:
        description:
        - The host's root-only state directory (mode 0700, files 0600) that keeps its X25519 private
          key and, per key epoch, the nonces and SPIs of its inbound SAs.
        - It also keeps the X25519 shared secret with each peer public key seen (no more than the
          private key beside it can make), so a run that changes nothing does no X25519.
        - For each SA it installed, a digest of its key's inputs and a digest of the key (neither
          gives a key), so a run that changes nothing confirms each installed key with two SHA-256
          instead of deriving it again.
        - The private key and shared secrets never leave it; nonces leave it only sealed for the peer
          they serve.
        type: path
        default: /var/lib/weave-fastdp
      netns:
        description:
        - Name of a network namespace (as in C(ip netns), under C(/run/netns)) to act in, for example
          a host's container namespace or a lab host. The namespace must exist.
        - Omit to act in the namespace the module runs in.
        type: str
  vxlan:
    description: The options of M(weave.fastdp.vxlan).
    type: dict
    suboptions:
      name:
        description: The device name (at most 15 characters), the mesh's ownership marker.
        type: str
        required: true
      state:
        description: C(absent) removes the device with its addresses and FDB entries.
        type: str
        choices:
        - present
        - absent
        default: present
      vni:
        description: VXLAN network identifier, 1 to 16777215. Required when O(vxlan.state=present).
        type: int
      port:
        description: UDP tunnel port (Weave's fastdp uses 6784).
        type: int
        default: 6784
      local:
        description: This host's underlay address (IPv4 or IPv6), the source of tunnel packets. Required
          when O(vxlan.state=present).
        type: str
      underlay_interface:
        description: The interface the underlay address is on; its MTU bounds the overlay MTU. Default
          the interface holding O(vxlan.local).
        type: str
      mtu:
        description: The overlay MTU. Default the largest the underlay allows with VXLAN and ESP.
        type: int
      addresses:
        description: Overlay addresses of the device, C(address/prefix). The whole set; others are
          removed (IPv6 link-local addresses are left to the kernel).
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
            description: The peer's underlay address (one of O(vxlan.peers)).
            type: str
            required: true
      mac:
        description: The device's MAC address (unicast); unset, the kernel's random one is kept.
        type: str
      neighbours:
        description: Permanent ARP (IPv4) or NDP (IPv6) entries on the device, a peer's overlay address
          and the MAC of its device.
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
        description: Remove FDB entries of peers that are neither in O(vxlan.peers) nor in O(vxlan.retain),
          and permanent neighbours that are not in O(vxlan.neighbours) (unless behind a retained peer).
        type: bool
        default: true
      bridge:
        description:
        - A bridge to enslave the device to. An empty string releases it from any master.
        - Omit to leave the device's master as it is.
        type: str
      netns:
        description:
        - Name of a network namespace (as in C(ip netns), under C(/run/netns)) to act in, for example
          a host's container namespace or a lab host. The namespace must exist.
        - Omit to act in the namespace the module runs in.
        type: str
  outbound_sas:
    description: The options of M(weave.fastdp.xfrm_state) for O(weave.fastdp.xfrm_state#module:direction=outbound),
      without C(state) and C(direction); what V(present) requires is required.
    type: dict
    suboptions:
      retire:
        description: Outbound only the newest epoch each peer published (the last step of a key rotation).
        type: bool
        default: false
      mesh:
        description: Mesh name (bound into every sealed nonce). Required with O(weave.fastdp.xfrm_state#module:state=present).
        type: str
        required: true
      peer_name:
        description: This host's peer name (HKDF info of the keys it receives with).
        type: str
        required: true
      local_address:
        description: This host's underlay address.
        type: str
        required: true
      epoch:
        description:
        - The mesh's current key epoch. Its SAs are wanted even before their nonces exist, so that
          check mode reports them; omit to converge only the epochs already known.
        type: int
      peers:
        description: The peers of this run.
        type: list
        elements: dict
        suboptions:
          name:
            description: Peer name.
            type: str
            required: true
          address:
            description: The peer's underlay address.
            type: str
            required: true
          public_key:
            description: The peer's X25519 public key (base64) from M(weave.fastdp.identity).
            type: str
          published:
            description: What the peer published for this host with M(weave.fastdp.nonces) (V([{epoch,
              spi, sealed_nonce}])).
            type: list
            elements: dict
          switched_epoch:
            description: Accepted for symmetry with M(weave.fastdp.nonces); not used here.
            type: int
        required: true
      retain:
        description: Underlay addresses of peers outside this run; their SAs are never touched.
        type: list
        elements: str
        default: *id001
      password:
        description: The mesh password (keep it in Ansible Vault). Never logged.
        type: str
        required: true
      reqid:
        description: This mesh's reqid, the ownership marker of its SAs (and of its policies' templates).
        type: int
        required: true
      cipher:
        description: V(aes-gcm) is C(rfc4106(gcm(aes))), V(chacha20-poly1305) is C(rfc7539esp(chacha20,poly1305));
          both take a 36-byte key (32 + 4-byte salt).
        type: str
        choices: *id002
        default: aes-gcm
      replay_window:
        description: Replay window in packets (ESN), 1 to 4096.
        type: int
        default: 256
      purge:
        description: Remove this mesh's SAs of peers no longer declared (and not in O(outbound_sas.retain)).
        type: bool
        default: true
      state_dir:
        description:
        - The host's root-only state directory (mode 0700, files 0600) that keeps its X25519 private
          key and, per key epoch, the nonces and SPIs of its inbound SAs.
        - It also keeps the X25519 shared secret with each peer public key seen (no more than the
          private key beside it can make), so a run that changes nothing does no X25519.
        - For each SA it installed, a digest of its key's inputs and a digest of the key (neither
          gives a key), so a run that changes nothing confirms each installed key with two SHA-256
          instead of deriving it again.
        - The private key and shared secrets never leave it; nonces leave it only sealed for the peer
          they serve.
        type: path
        default: /var/lib/weave-fastdp
      netns:
        description:
        - Name of a network namespace (as in C(ip netns), under C(/run/netns)) to act in, for example
          a host's container namespace or a lab host. The namespace must exist.
        - Omit to act in the namespace the module runs in.
        type: str
  verify:
    description: The options of M(weave.fastdp.mesh_info) but O(weave.fastdp.mesh_info#module:verify),
      always on; traffic to every peer must move the pair's ESP counters. Broken pairs are reported
      in RV(verify.broken), not failed on (a peer may still be converging).
    type: dict
    suboptions:
      mesh:
        description: The mesh name (its guard chains carry it).
        type: str
        required: true
      reqid:
        description: The mesh's XFRM reqid (on its SAs and policy templates).
        type: int
        required: true
      device:
        description: The mesh's VXLAN device.
        type: str
        required: true
      local_address:
        description: This host's underlay address.
        type: str
        required: true
      peers:
        description: The peers to report on.
        type: list
        elements: dict
        required: true
        suboptions:
          name:
            description: Peer name.
            type: str
            required: true
          address:
            description: The peer's underlay address.
            type: str
            required: true
          overlay_address:
            description: The peer's overlay address (with or without prefix length); needed by O(weave.fastdp.mesh_info#module:verify).
            type: str
      netns:
        description:
        - Name of a network namespace (as in C(ip netns), under C(/run/netns)) to act in, for example
          a host's container namespace or a lab host. The namespace must exist.
        - Omit to act in the namespace the module runs in.
        type: str
"""
