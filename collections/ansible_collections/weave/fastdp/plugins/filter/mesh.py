# Copyright (c) weave.fastdp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters that turn the play's hostvars into one host's view of its peers (documented
one file per filter beside this one, as ansible-doc -t filter reads them)."""

from __future__ import annotations

import hashlib

from ansible_collections.weave.fastdp.plugins.module_utils import inet
from ansible_collections.weave.fastdp.plugins.module_utils.fingerprint import fingerprint
from ansible_collections.weave.fastdp.plugins.module_utils.xfrm_policies import outbound_policies


def mesh_peers(hostvars, play_hosts, group_hosts, me):
    """This host's peers: every other host of the mesh group that runs in this play batch
    (``ansible_play_batch``: the whole play unless it runs in ``serial`` batches).

    Each peer: name, host, address (underlay), overlay_address, public_key (once the identity
    task ran), published (what the peer published for this host: [{epoch, spi, sealed_nonce}])
    and switched_epoch (the newest epoch of the peer's outbound SA to this host, once known),
    lost_spis (the SPIs of the peer's outbound SAs to this host its kernel lost, which this
    host must give a fresh nonce and SPI: the peer never installs a key twice).
    Hosts of the group outside the batch (``--limit``, other ``serial`` batches) are not peers
    of this run: see mesh_retained."""
    own = hostvars[me]["_fastdp_self"]["peer_name"]
    peers = []
    for host in play_hosts:
        if host == me or host not in group_hosts:
            continue
        facts = hostvars[host]
        peer = dict(facts["_fastdp_self"])
        nonces = facts.get("_fastdp_nonces") or {}
        peer["published"] = (nonces.get("published") or {}).get(own, [])
        outbound = facts.get("_fastdp_outbound") or {}
        peer["switched_epoch"] = (outbound.get("outbound_epochs") or {}).get(own)
        preflight = facts.get("_fastdp_preflight") or {}
        peer["lost_spis"] = (preflight.get("lost_outbound") or {}).get(own, [])
        peers.append(peer)
    return peers


def mesh_retained(hostvars, play_hosts, group_hosts, me):
    """Underlay addresses and peer names of mesh hosts outside this batch: left as they are."""
    outside = [h for h in group_hosts if h != me and h not in play_hosts]
    return {
        "names": [hostvars[h].get("fastdp_peer_name", h) for h in outside],
        "addresses": [hostvars[h]["fastdp_underlay_address"] for h in outside
                      if "fastdp_underlay_address" in hostvars[h]],
    }


def vxlan_mac(mesh, address):
    """The MAC of the mesh's VXLAN device on the host of this underlay address: locally
    administered unicast, from a hash of both, so every peer knows it without asking."""
    digest = bytearray(hashlib.sha256(f"weave.fastdp/{mesh}/{inet.spelled(address)}".encode())
                       .digest()[:6])
    digest[0] = digest[0] & 0xFC | 0x02
    return digest.hex(":")


def vxlan_macs(peers):
    """The vxlan module's ``macs``: each peer's device MAC, behind the peer."""
    return [{"mac": p["vxlan_mac"], "peer": p["address"]} for p in peers]


def vxlan_neighbours(peers):
    """The vxlan module's ``neighbours``: each peer's overlay address, at its device MAC."""
    return [{"address": p["overlay_address"].split("/")[0], "mac": p["vxlan_mac"]}
            for p in peers if p.get("overlay_address")]


def pick(record, *names):
    """Only the named keys of a peer record: what one module takes of it."""
    return {name: record.get(name) for name in names}


class FilterModule:
    def filters(self):
        return {"mesh_peers": mesh_peers, "mesh_retained": mesh_retained,
                "outbound_policies": outbound_policies, "pick": pick,
                "fingerprint": fingerprint, "vxlan_mac": vxlan_mac, "vxlan_macs": vxlan_macs,
                "vxlan_neighbours": vxlan_neighbours}
