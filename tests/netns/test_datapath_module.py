"""The datapath module (several modules' steps in one run) on the host kernel, in a bare
network namespace: nonces, guards and the VXLAN device for real, SAs only in check mode (no ESP
here). The guards mark exactly the SPIs the nonces step made; a re-run changes nothing; a step
that fails stops the run, naming itself, and the steps after it make nothing. The preflight
finds a recorded inbound half settled only while the kernel holds all it makes."""

import subprocess
from pathlib import Path

import pytest
from ansible_collections.weave.fastdp.plugins.module_utils import keys
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from lab.modules import run_module

pytestmark = pytest.mark.netns

LOCAL, PEER = "198.51.100.11", "198.51.100.12"
COMMON = {"mesh": "lab", "peer_name": "h1", "local_address": LOCAL, "epoch": 1,
          "password": "correct horse battery staple"}


@pytest.fixture
def inbound_half(netns, tmp_path):
    """The inbound half's options for this host (LOCAL, with its identity) and the peer h2."""
    state_dir = str(tmp_path / "state")
    run_module("identity", {"peer_name": "h1", "state_dir": state_dir})
    public_key = keys.public_key_text(X25519PrivateKey.generate())
    return {
        "nonces": {**COMMON, "peers": [{"name": "h2", "public_key": public_key}],
                   "state_dir": state_dir, "netns": netns},
        "guards": {"mesh": "lab", "local_address": LOCAL, "netns": netns,
                   "peers": [{"name": "h2", "address": PEER}]},
        "vxlan": {"name": "wf-lab", "vni": 42, "local": LOCAL, "addresses": ["203.0.113.1/24"],
                  "peers": [PEER], "netns": netns},
        "inbound_sas": {**COMMON, "peers": [{"name": "h2", "address": PEER,
                                            "public_key": public_key}],
                        "reqid": 7, "state_dir": state_dir, "netns": netns},
    }


def ip(netns, *argv):
    return subprocess.run(["ip", "-n", netns, *argv], capture_output=True, text=True, check=True).stdout


def test_guards_mark_the_spi_the_nonces_step_made_and_a_rerun_changes_nothing(netns, inbound_half):
    steps = {k: v for k, v in inbound_half.items() if k != "inbound_sas"}
    first = run_module("datapath", steps)
    assert first["changed"] and all(first[step]["changed"] for step in steps)
    (spi,) = first["nonces"]["inbound_spis"]["h2"]
    assert any(f"--espspi {spi} " in c and f"-s {PEER}/32" in c for c in first["guards"]["commands"])
    assert "00:00:00:00:00:00 dst 198.51.100.12" in subprocess.run(
        ["bridge", "-n", netns, "fdb", "show", "dev", "wf-lab"], capture_output=True,
        text=True, check=True).stdout
    again = run_module("datapath", steps)
    assert not again["changed"] and not any(again[step]["changed"] for step in steps)
    assert again["nonces"]["inbound_spis"]["h2"] == [spi]


def test_check_mode_predicts_the_inbound_sa_and_changes_nothing(netns, inbound_half):
    steps = {k: v for k, v in inbound_half.items() if k != "vxlan"}
    run_module("datapath", {"nonces": inbound_half["nonces"]})
    predicted = run_module("datapath", steps, check=True, diff=True)
    assert predicted["inbound_sas"]["changes"][0].startswith("+ inbound SA from h2 (epoch 1)")
    assert predicted["guards"]["changed"] and len(predicted["diff"]) == 3
    assert ip(netns, "xfrm", "state") == ""
    assert "FASTDP" not in subprocess.run(["ip", "netns", "exec", netns, "iptables-save"],
                                          capture_output=True, text=True, check=True).stdout


def test_a_failing_step_names_itself_and_the_vxlan_device_after_it_is_never_made(netns, inbound_half):
    failed = run_module("datapath", inbound_half, expect_failure=True)
    assert failed["msg"].startswith("inbound_sas: ") and "lacks ESP" in failed["msg"], failed["msg"]
    assert failed["guards"]["changed"], "the guards, before the SAs, are in place"
    assert "vxlan" not in failed and "wf-lab" not in ip(netns, "link", "show")
    assert ip(netns, "xfrm", "state") == ""


def test_the_verify_step_reports_a_pair_without_sas_as_broken_without_failing(netns, inbound_half):
    steps = {k: v for k, v in inbound_half.items() if k != "inbound_sas"}
    run_module("datapath", steps)
    verify = {"mesh": "lab", "reqid": 7, "device": "wf-lab", "local_address": LOCAL, "netns": netns,
              "peers": [{"name": "h2", "address": PEER, "overlay_address": "203.0.113.2/24"}]}
    result = run_module("datapath", {"verify": verify})
    assert not result["changed"]
    assert result["verify"]["broken"] == [
        f"h2 ({PEER}): incomplete: no inbound SA, outbound SA, outbound policy"]
    assert result["verify"]["peers"][0]["mtu"] is not None


def preflight(netns, state_dir, **args):
    return run_module("preflight", {"netns": netns, "state_dir": state_dir, "probe": False,
                                    "underlay_address": LOCAL, "password": COMMON["password"],
                                    **args})


def settled_inbound_half(netns, state_dir):
    return preflight(netns, state_dir)["settled_inbound_half"]


def test_the_preflight_finds_the_recorded_inbound_half_settled_until_the_kernel_lacks_a_part(
        netns, inbound_half):
    steps = {k: v for k, v in inbound_half.items() if k != "inbound_sas"}
    state_dir = steps["nonces"]["state_dir"]
    run_module("datapath", {**steps, "record": "fp-1"}, check=True)
    assert settled_inbound_half(netns, state_dir) is None, "check mode records nothing"
    first = run_module("datapath", {**steps, "record": "fp-1"})
    settled = settled_inbound_half(netns, state_dir)
    assert settled["fingerprint"] == "fp-1"
    assert settled["nonces"]["inbound_spis"] == first["nonces"]["inbound_spis"]
    published_spis = [e["spi"] for e in settled["nonces"]["published"]["h2"]]
    assert published_spis == first["nonces"]["inbound_spis"]["h2"]
    assert COMMON["password"] not in (Path(state_dir) / "inbound-half.json").read_text()
    ip(netns, "link", "del", "wf-lab")
    assert settled_inbound_half(netns, state_dir) is None
    assert "wf-lab" not in ip(netns, "link", "show"), "the check made nothing"


def test_a_settled_inbound_half_without_sas_proves_no_cipher_so_the_probes_still_run(
        netns, inbound_half):
    steps = {k: v for k, v in inbound_half.items() if k != "inbound_sas"}
    run_module("datapath", {**steps, "record": "fp-1"})
    result = preflight(netns, steps["nonces"]["state_dir"], probe=True, fail_on_missing=False)
    assert result["settled_inbound_half"]["cipher"] is None
    assert result["probed"] and "lacks ESP" in result["missing"]["esp"]
