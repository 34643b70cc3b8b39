"""Filters that turn the play's hostvars into one host's view of its peers."""

from __future__ import annotations


def mesh_peers(hostvars, play_hosts, group_hosts, me):
    """This host's peers: every other host of the mesh group that runs in this play batch
    (``ansible_play_batch``: the whole play unless it runs in ``serial`` batches).

    Each peer: name, host, address (underlay), overlay_address, public_key (once the identity
    task ran), published (what the peer published for this host: [{epoch, spi, sealed_nonce}])
    and switched_epoch (the newest epoch of the peer's outbound SA to this host, once known).
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


def outbound_policies(outbound_spis, local_address, mark, reqid):
    """The outbound policy towards each peer: its marked tunnel traffic goes through the SA of
    the newest epoch the peer published (``outbound_spis``: {peer: {address, spi}})."""
    mark = int(mark, 0) if isinstance(mark, str) else int(mark)
    return [{"src": local_address, "dst": sa["address"], "proto": "udp", "direction": "out",
             "mark": mark, "mask": mark,
             "template": {"src": local_address, "dst": sa["address"], "spi": sa["spi"],
                          "reqid": int(reqid)}}
            for _, sa in sorted(outbound_spis.items())]


def guard_peers(peers, inbound_spis):
    """Each peer with the SPIs of its inbound SAs here (two during a key rotation)."""
    return [{"name": p["name"], "address": p["address"], "inbound_spis": inbound_spis.get(p["name"], [])}
            for p in peers]


def pick(record, *names):
    """Only the named keys of a peer record: what one module takes of it."""
    return {name: record.get(name) for name in names}


class FilterModule:
    def filters(self):
        return {"mesh_peers": mesh_peers, "mesh_retained": mesh_retained,
                "outbound_policies": outbound_policies, "guard_peers": guard_peers, "pick": pick}
