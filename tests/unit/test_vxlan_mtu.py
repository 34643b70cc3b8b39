"""Overlay MTU math and the VXLAN plan, without a kernel."""

import pytest
from ansible_collections.weave.fastdp.plugins.module_utils.vxlan import (
    ALL_ZEROS,
    Device,
    VxlanError,
    declared,
    max_overlay_mtu,
    plan,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("address", "underlay", "expected"), [
    ("198.51.100.11", 1500, 1416),  # the seed's number: 1500 - 50 VXLAN - 34 ESP
    ("2001:db8::11", 1500, 1396),   # 70 bytes of VXLAN over IPv6
    ("198.51.100.11", 9001, 8916),  # AWS jumbo frames: rounded down to a multiple of 4
    ("198.51.100.11", 1460, 1376),  # GCP: Weave's default overlay MTU
])
def test_max_overlay_mtu(address, underlay, expected):
    assert max_overlay_mtu(address, underlay) == expected
    assert expected % 4 == 0


def _params(**over):
    return {"name": "wf-weave", "state": "present", "vni": 4242, "port": 6784,
            "local": "198.51.100.11", "underlay_interface": "eth0", "mtu": None,
            "addresses": ["203.0.113.1/24"], "peers": ["198.51.100.12"], "macs": [], "mac": None,
            "neighbours": [], "retain": [], "purge": True, "bridge": None, "netns": None, **over}


@pytest.mark.parametrize(("over", "field"), [
    ({"vni": 0}, "vni"), ({"vni": 1 << 24}, "vni"), ({"port": 70000}, "port"),
    ({"local": "198.51.100.300"}, "local"), ({"peers": ["2001:db8::12"]}, "peers[0]"),
    ({"addresses": ["203.0.113.1"]}, "addresses[0]"), ({"name": "a-much-too-long-name"}, "name"),
    ({"macs": [{"mac": "02:00:00:00:00", "peer": "198.51.100.12"}]}, "macs[0].mac"),
    ({"retain": ["nope"]}, "retain[0]"), ({"peers": ["198.51.100.12", "nope"]}, "peers[1]"),
    ({"addresses": ["203.0.113.1/24", "203.0.113.300/24"]}, "addresses[1]"),
    ({"mac": "03:00:00:00:00:01"}, "mac"),
    ({"macs": [{"mac": "02:00:00:00:00:01", "peer": "198.51.100.99"}]}, "macs[0].peer"),
    ({"neighbours": [{"address": "nope", "mac": "02:00:00:00:00:01"}]}, "neighbours[0].address"),
    ({"neighbours": [{"address": "203.0.113.2", "mac": "01:00:00:00:00:01"}]},
     "neighbours[0].mac"),
])
def test_bad_input_names_the_field(over, field):
    with pytest.raises(VxlanError) as failed:
        declared(_params(**over))
    assert str(failed.value).startswith(f"{field}:")


def _device(**over):
    return Device(**{"name": "wf-weave", "vni": 4242, "port": 6784, "local": "198.51.100.11",
                     "underlay_interface": "eth0", "mtu": 1416,
                     "addresses": frozenset({"203.0.113.1/24"}),
                     "fdb": frozenset({(ALL_ZEROS, "198.51.100.12")}), **over})


def test_same_device_plans_nothing():
    assert plan(_device(), _device(), keep_peer=lambda a: False).steps == []


def test_mtu_and_fdb_change_in_place_and_retained_peers_stay():
    have = _device(fdb=frozenset({(ALL_ZEROS, "198.51.100.12"), (ALL_ZEROS, "198.51.100.13"),
                                  (ALL_ZEROS, "198.51.100.14")}))
    want = _device(mtu=1400, fdb=frozenset({(ALL_ZEROS, "198.51.100.12")}))
    result = plan(have, want, keep_peer=lambda a: a == "198.51.100.14")
    assert result.recreate is None
    assert result.changes == ["remove fdb 00:00:00:00:00:00 dst 198.51.100.13",
                              "set mtu 1416 -> 1400"]
    assert (ALL_ZEROS, "198.51.100.14") in result.after.fdb


@pytest.mark.parametrize("over", [{"vni": 7}, {"port": 4789}, {"local": "198.51.100.99"}])
def test_identity_change_recreates_and_says_why(over):
    result = plan(_device(), _device(**over), keep_peer=lambda a: False)
    assert result.recreate and next(iter(over)) in result.recreate
    assert result.changes[0].startswith("delete device wf-weave to recreate it")
    assert result.changes[1].startswith("create device wf-weave")


def test_absent_deletes_only_an_existing_device():
    assert plan(_device(), None, keep_peer=bool).changes == ["delete device wf-weave"]
    assert plan(None, None, keep_peer=bool).steps == []


def test_addresses_are_normalised_to_the_kernels_spelling():
    p = declared(_params(local="2001:DB8:0::11", peers=["2001:db8:0:0::12"],
                          addresses=["2001:DB8:1::1/64"]))
    assert (p["local"], p["peers"], p["addresses"]) == ("2001:db8::11", {"2001:db8::12"},
                                                        ["2001:db8:1::1/64"])


def test_a_macs_peer_is_one_of_peers_however_either_is_spelled():
    p = declared(_params(local="2001:db8::11", peers=["2001:DB8:0::12"], addresses=[],
                         macs=[{"mac": "02:AB:00:00:00:01", "peer": "2001:db8:0:0::12"}]))
    assert p["macs"] == [("02:ab:00:00:00:01", "2001:db8::12")]


def test_reported_peers_are_ordered_numerically_and_spelled_as_netlink_dumps_them():
    p = declared(_params(local="2001:db8::11",
                          peers=["2001:db8::10", "2001:DB8::9", "::ffff:c633:640c"]))
    mac = "02:00:00:00:00:09"
    device = Device("wf-weave", 4242, 6784, p["local"], "eth0",
                    fdb=frozenset({(ALL_ZEROS, a) for a in p["peers"]} | {(mac, "2001:db8::9")}))
    facts = device.facts()
    assert facts["peers"] == ["::ffff:198.51.100.12", "2001:db8::9", "2001:db8::10"]
    assert [(e["peer"], e["mac"]) for e in facts["fdb"]] == [
        ("::ffff:198.51.100.12", ALL_ZEROS), ("2001:db8::9", ALL_ZEROS), ("2001:db8::9", mac),
        ("2001:db8::10", ALL_ZEROS)]
