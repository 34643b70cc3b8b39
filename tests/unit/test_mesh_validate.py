"""Bad inventories fail on the controller, naming host and variable, before any host changes."""

import pytest
from ansible_collections.weave.fastdp.plugins.module_utils.mesh import validate

pytestmark = pytest.mark.unit


def _mesh(**over):
    return {"name": "weave", "cipher": "aes-gcm", "password": "s3cret", "overlay_prefix": "203.0.113.0/24",
            "epoch": 2, "mtu": None, **over}


def _members(*changes):
    members = [{"host": f"h{i}", "peer_name": f"h{i}", "underlay_address": f"198.51.100.1{i}",
                "overlay_address": f"203.0.113.{i}/24", "underlay_mtu": 1500, "recorded_epoch": None}
               for i in (1, 2, 3)]
    for index, field, value in changes:
        members[index][field] = value
    return members


def _max_mtu(address, underlay_mtu):
    return underlay_mtu - 84


def test_a_good_mesh_has_no_errors():
    assert validate(_mesh(), _members(), _max_mtu) == []


@pytest.mark.parametrize("mesh,changes,expected", [
    ({}, [(2, "underlay_address", "198.51.100.11")],
     "h3: fastdp_underlay_address 198.51.100.11 is also h1's"),
    ({}, [(1, "peer_name", "h1")], "h2: fastdp_peer_name h1 is also h1's"),
    ({}, [(2, "overlay_address", "203.0.114.3/24")],
     "h3: fastdp_overlay_address 203.0.114.3/24 is outside the mesh's fastdp_overlay_prefix"),
    ({}, [(2, "overlay_address", "203.0.113.3/16")], "h3: fastdp_overlay_address 203.0.113.3/16 is outside"),
    ({"mtu": 1420}, [], "fastdp_mtu 1420 leaves no room for VXLAN and ESP over an underlay MTU of 1500: at most 1416"),
    ({"password": ""}, [], "mesh: fastdp_password is missing"),
    ({"cipher": "aes-cbc"}, [], "mesh: fastdp_cipher 'aes-cbc' is not one of"),
    ({"epoch": 1}, [(0, "recorded_epoch", 2)], "h1: fastdp_key_epoch 1 is lower than the epoch 2"),
    ({}, [(0, "underlay_address", "198.51.100.300")], "h1: fastdp_underlay_address '198.51.100.300' is not"),
], ids=["duplicate-underlay", "duplicate-peer-name", "overlay-outside-prefix", "overlay-other-prefix-length",
        "mtu-too-large", "missing-password", "unknown-cipher", "epoch-lowered", "malformed-underlay"])
def test_a_bad_inventory_names_host_and_variable(mesh, changes, expected):
    errors = validate(_mesh(**mesh), _members(*changes), _max_mtu)
    assert any(expected in e for e in errors), errors
