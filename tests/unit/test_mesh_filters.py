"""A host's peers are the other hosts of its batch; everything else of the mesh is retained
(left exactly as it is): that is what makes --limit and serial batches safe."""

import pytest
from ansible_collections.weave.fastdp.plugins.filter.mesh import (
    mesh_peers,
    mesh_retained,
    outbound_policies,
    vxlan_mac,
    vxlan_macs,
    vxlan_neighbours,
)

pytestmark = pytest.mark.unit

GROUP = ["h1", "h2", "h3", "h4"]


def hostvars(*converged):
    """h1..h4 at 198.51.100.11..14; the ``converged`` ones have run this play's first tasks."""
    out = {}
    for i, host in enumerate(GROUP, start=11):
        out[host] = {"fastdp_underlay_address": f"198.51.100.{i}"}
        if host in converged:
            out[host]["_fastdp_self"] = {"name": host, "peer_name": host,
                                         "address": f"198.51.100.{i}"}
            out[host]["_fastdp_nonces"] = {"published": {
                other: [{"epoch": 1, "spi": 0x1000 + i, "sealed_nonce": "x"}]
                for other in GROUP if other != host}}
            out[host]["_fastdp_outbound"] = {"outbound_epochs": {"h1": 1}}
    return out


def test_peers_are_the_other_hosts_of_the_batch_with_what_they_published_for_this_host():
    peers = mesh_peers(hostvars("h1", "h2"), ["h1", "h2"], GROUP, "h1")
    assert [p["name"] for p in peers] == ["h2"]
    assert peers[0]["published"] == [{"epoch": 1, "spi": 0x1000 + 12, "sealed_nonce": "x"}]
    assert peers[0]["switched_epoch"] == 1


def test_hosts_outside_the_batch_are_retained_not_peers():
    # serial: h3 and h4 converged in an earlier batch, h1 and h2 now: h3, h4 are untouched
    facts = hostvars("h1", "h2", "h3", "h4")
    assert [p["name"] for p in mesh_peers(facts, ["h1", "h2"], GROUP, "h1")] == ["h2"]
    retained = mesh_retained(facts, ["h1", "h2"], GROUP, "h1")
    assert retained == {"names": ["h3", "h4"], "addresses": ["198.51.100.13", "198.51.100.14"]}


def test_a_host_outside_the_group_is_never_a_peer():
    facts = hostvars("h1", "h2")
    assert mesh_peers(facts, ["h1", "h2"], ["h1"], "h1") == []


def test_outbound_policy_per_peer_marks_and_uses_the_newest_sa_with_the_mesh_reqid():
    policies = outbound_policies({"h2": {"address": "198.51.100.12", "spi": 0x1234}},
                                 "198.51.100.11", "0x20000", 77)
    assert policies == [{"src": "198.51.100.11", "dst": "198.51.100.12", "proto": "udp",
                         "direction": "out", "mark": 0x20000, "mask": 0x20000,
                         "template": {"src": "198.51.100.11", "dst": "198.51.100.12",
                                      "spi": 0x1234, "reqid": 77}}]


def test_each_host_vxlan_mac_is_unicast_local_and_known_to_its_peers_without_asking():
    mac = vxlan_mac("weave", "198.51.100.11")
    first = int(mac[:2], 16)
    assert first & 0x01 == 0 and first & 0x02, "unicast and locally administered"
    assert mac == vxlan_mac("weave", "198.51.100.11")
    assert vxlan_mac("weave", "2001:DB8:0::1") == vxlan_mac("weave", "2001:db8::1")
    assert len({mac, vxlan_mac("weave", "198.51.100.12"), vxlan_mac("other", "198.51.100.11")}) == 3


def test_the_vxlan_module_gets_each_peer_mac_behind_its_address_and_at_its_overlay_address():
    peers = [{"address": "198.51.100.12", "overlay_address": "203.0.113.2/24", "vxlan_mac": "m2"},
             {"address": "198.51.100.13", "overlay_address": "", "vxlan_mac": "m3"}]
    assert vxlan_macs(peers) == [{"mac": "m2", "peer": "198.51.100.12"},
                                 {"mac": "m3", "peer": "198.51.100.13"}]
    assert vxlan_neighbours(peers) == [{"address": "203.0.113.2", "mac": "m2"}]
