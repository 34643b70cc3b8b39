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


@pytest.mark.parametrize("name", ["../x", "x/../../etc", "/abs", ".hidden", "", "a" * 18, "a b"])
def test_a_path_like_or_too_long_mesh_name_is_refused_before_any_host_changes(name):
    """The finding: the mesh name was checked only at the guards step, after the identity
    module had made state_dir from it (`../x` escaped the state directory)."""
    (error,) = validate(_mesh(name=name), _members(), _max_mtu)
    assert error.startswith(f"mesh: fastdp_mesh_name {name!r} must be 1 to 17 letters"), error


@pytest.mark.parametrize("name", ["a->b", "h/1", "h 1", "", "-h", "h\x001"])
def test_a_peer_name_that_could_blur_the_key_inputs_is_refused(name):
    errors = validate(_mesh(), _members((1, "peer_name", name)), _max_mtu)
    assert errors == [(f"h2: fastdp_peer_name {name!r} must be 1 to 253 letters, digits, '_', "
                       "'.', ':' or '-', the first a letter or digit")], errors


def test_names_a_mesh_uses_are_accepted():
    members = _members((0, "peer_name", "node-1.example.com"), (1, "peer_name", "h_2"))
    assert validate(_mesh(name="weave-prod.1"), members, _max_mtu) == []
