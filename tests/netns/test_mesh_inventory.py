"""A bad inventory fails before any host changes, naming the host and the variable to fix.

Runs ``playbooks/site.yml`` over SSH against lab hosts on this machine's kernel: validation
comes before anything that needs ESP, so every case reaches its own error here. A good
inventory then fails closed, naming the part this kernel lacks.
"""


import pytest

from lab.hosts import Lab
from lab.modules import run_module
from lab.playbook import host_vars_inventory, run_playbook
from lab.state import snapshot

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def lab():
    with Lab(count=3, name="wfinv", sshd=True) as lab:
        yield lab


CASES = {
    "duplicate underlay address": (
        {"h2": {"fastdp_underlay_address": "198.51.100.11"}}, {},
        "h2: fastdp_underlay_address 198.51.100.11 is also h1's"),
    "duplicate peer name": (
        {"h3": {"fastdp_peer_name": "h1"}}, {},
        "h3: fastdp_peer_name h1 is also h1's"),
    "overlay address outside the prefix": (
        {"h3": {"fastdp_overlay_address": "198.51.100.203/24"}}, {},
        ("h3: fastdp_overlay_address 198.51.100.203/24 is outside the mesh's "
        "fastdp_overlay_prefix 203.0.113.0/24")),
    "MTU too large": (
        {}, {"fastdp_mtu": 1450},
        ("h1: fastdp_mtu 1450 leaves no room for VXLAN and ESP over an underlay MTU of 1500: "
        "at most 1416")),
    "missing password": (
        {}, {"fastdp_password": ""},
        "mesh: fastdp_password is missing or empty"),
    "unknown cipher": (
        {}, {"fastdp_cipher": "aes-cbc"},
        "fastdp_cipher must be one of: aes-gcm, chacha20-poly1305, got: aes-cbc"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_inventory_fails_naming_host_and_field_and_changes_nothing(lab, case):
    host_vars, extra_vars, message = CASES[case]
    before = snapshot(lab)
    inventories = (host_vars_inventory(lab, "bad", host_vars),) if host_vars else ()
    run = run_playbook(lab, "site.yml", inventories=inventories, extra_vars=extra_vars)
    assert run.returncode != 0, run
    assert message in run.output, run
    assert "cannot run the encrypted fast datapath" not in run.output, "validation comes first"
    assert snapshot(lab) == before


def test_a_lowered_key_epoch_fails_naming_the_host_that_uses_a_higher_one(lab):
    h1 = lab.hosts[0]
    run_module("nonces", {"mesh": "weave", "peer_name": "h1", "local_address": h1.address,
                          "epoch": 3, "peers": [{"name": "h2"}], "password": "x",
                          "state_dir": str(lab.state_dir(h1)), "netns": h1.netns})
    try:
        before = snapshot(lab)
        run = run_playbook(lab, "site.yml", extra_vars={"fastdp_key_epoch": 2})
        assert run.returncode != 0, run
        assert ("h1: fastdp_key_epoch 2 is lower than the epoch 3 this host already uses"
                in run.output), run
        assert snapshot(lab) == before
    finally:
        (lab.state_dir(h1) / "inbound.json").unlink()


def test_a_kernel_without_esp_fails_closed_naming_the_missing_part(lab):
    before = snapshot(lab)
    run = run_playbook(lab, "site.yml")
    assert run.returncode != 0, run
    for h in lab.hosts:
        assert f"{h.name} cannot run the encrypted fast datapath: esp:" in run.output, run
    assert "the kernel lacks ESP" in run.output
    assert all(r["changed"] == 0 for r in run.recap.values()), run.recap
    assert snapshot(lab) == before
