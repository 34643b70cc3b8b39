"""xfrm_policy and xfrm_state on the host kernel, in a bare network namespace: policies work
here; SAs do not (no ESP, no GCM), so xfrm_state must name what is missing, and bad input must
fail naming the field before anything changes."""

import copy
import json
import subprocess

import pytest

from lab.modules import run_module

pytestmark = pytest.mark.netns

REQID = 4242
LOCAL, PEER, OTHER = "198.51.100.11", "198.51.100.12", "198.51.100.13"


def _policy(dst=PEER, spi=0x1234ABCD):
    return {"src": LOCAL, "dst": dst, "proto": "udp", "direction": "out", "mark": 0x20000,
            "mask": 0x20000, "template": {"src": LOCAL, "dst": dst, "spi": spi, "reqid": REQID}}


def _run(netns, policies, **kw):
    args = {"reqid": REQID, "policies": policies, "netns": netns}
    for name in ("retain", "purge"):
        if name in kw:
            args[name] = kw.pop(name)
    return run_module("xfrm_policy", args, **kw)


def _ip_policies(netns):
    return subprocess.run(["ip", "-n", netns, "xfrm", "policy"], capture_output=True, text=True,
                          check=True).stdout


def _foreign(netns, dst, reqid=99):
    subprocess.run(["ip", "-n", netns, "xfrm", "policy", "add", "src", f"{LOCAL}/32",
                    "dst", f"{dst}/32", "proto", "udp", "dir", "out", "mark", "0x20000", "mask",
                    "0x20000", "tmpl", "src", LOCAL, "dst", dst, "proto", "esp", "spi", "0x999",
                    "reqid", str(reqid), "mode", "transport"], check=True)


def test_converge_check_mode_predicts_then_rerun_changes_nothing(netns):
    wanted = [_policy(PEER), _policy(OTHER, 0x5678)]
    predicted = _run(netns, wanted, check=True, diff=True)
    assert predicted["changed"] and len(predicted["changes"]) == 2
    assert _ip_policies(netns) == "", "check mode changed the kernel"
    done = _run(netns, wanted, diff=True)
    assert done["changes"] == predicted["changes"]
    assert done["diff"]["prepared"].splitlines() == done["changes"]
    assert done["changes"][0] == (
        "+ out policy 198.51.100.11/32 -> 198.51.100.12/32 udp: out 198.51.100.11/32 -> "
        "198.51.100.12/32 udp mark 0x20000/0x20000 priority 0 tmpl 198.51.100.11 -> "
        "198.51.100.12 esp spi 0x1234abcd reqid 4242 transport")
    shown = _ip_policies(netns)
    assert "spi 0x1234abcd reqid 4242" in shown and "spi 0x00005678 reqid 4242" in shown
    for check in (True, False):
        again = _run(netns, wanted, check=check)
        assert not again["changed"] and again["changes"] == []
    assert _ip_policies(netns) == shown


def test_template_switch_is_an_update_in_place(netns):
    _run(netns, [_policy(spi=0x1000)])
    index = _index(netns)
    before = _ip_policies(netns)
    predicted = _run(netns, [_policy(spi=0x2000)], check=True)
    assert _ip_policies(netns) == before
    done = _run(netns, [_policy(spi=0x2000)])
    assert done["changes"] == predicted["changes"] and len(done["changes"]) == 1
    assert done["changes"][0].startswith("~ out policy 198.51.100.11/32 -> 198.51.100.12/32 udp")
    assert "spi 0x00001000 reqid 4242 transport -> tmpl" in done["changes"][0]
    assert "spi 0x00002000" in _ip_policies(netns) and "spi 0x00001000" not in _ip_policies(netns)
    assert _index(netns) == index, "replaced instead of updated in place"


def _index(netns):
    from ansible_collections.weave.fastdp.plugins.module_utils.xfrm import XfrmSocket

    with XfrmSocket(netns) as xfrm:
        (policy,) = xfrm.policies()
    return policy.index


def test_purge_removes_ours_and_keeps_foreign_and_retained(netns):
    _run(netns, [_policy(PEER), _policy(OTHER, 0x5678)])
    _foreign(netns, "198.51.100.14")
    kept = _run(netns, [], purge=False)
    assert not kept["changed"]
    done = _run(netns, [], retain=[OTHER])
    assert len(done["changes"]) == 1 and done["changes"][0].startswith(
        "- out policy 198.51.100.11/32 -> 198.51.100.12/32 udp")
    shown = _ip_policies(netns)
    assert "reqid 99" in shown and f"dst {OTHER}" in shown and f"dst {PEER}/32" not in shown
    _run(netns, [])
    assert "reqid 4242" not in _ip_policies(netns) and "reqid 99" in _ip_policies(netns)


def test_a_foreign_policy_in_a_wanted_place_is_an_error_and_untouched(netns):
    _foreign(netns, PEER)
    before = _ip_policies(netns)
    failed = _run(netns, [_policy(PEER)], expect_failure=True)
    assert "policies[0]: a policy of another owner holds its place" in failed["msg"]
    assert _ip_policies(netns) == before


@pytest.mark.parametrize(("path", "value", "named"), [
    (("src",), "198.51.100.300", "policies[1].src"),
    (("dst",), "198.51.100.12/24", "policies[1].dst"),
    (("proto",), "sctpish", "policies[1].proto"),
    (("template", "src"), "nowhere", "policies[1].template.src"),
    (("template", "spi"), 0, "policies[1].template.spi"),
    (("template", "spi"), 255, "policies[1].template.spi"),
    (("template", "reqid"), 7, "policies[1].template.reqid"),
])
def test_bad_input_names_the_field_and_changes_nothing(netns, path, value, named):
    _run(netns, [_policy(PEER)])
    before = _ip_policies(netns)
    bad = copy.deepcopy(_policy(OTHER))
    target = bad
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    failed = _run(netns, [_policy(PEER, 0x4444), bad], expect_failure=True)
    assert failed["msg"].startswith(f"{named}: "), failed["msg"]
    assert _ip_policies(netns) == before


# --- xfrm_state --------------------------------------------------------------------------

PASSWORD = "correct horse battery staple"


@pytest.fixture
def receiver(netns, tmp_path):
    """This host (LOCAL) with its identity and the nonce of epoch 1 for the peer h2 (PEER)."""
    from ansible_collections.weave.fastdp.plugins.module_utils import keys
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    state_dir = str(tmp_path / "state")
    run_module("identity", {"peer_name": "h1", "state_dir": state_dir})
    peer = {"name": "h2", "address": PEER,
            "public_key": keys.public_key_text(X25519PrivateKey.generate())}
    run_module("nonces", {"mesh": "lab", "peer_name": "h1", "local_address": LOCAL, "epoch": 1,
                          "peers": [{"name": "h2", "public_key": peer["public_key"]}],
                          "password": PASSWORD, "state_dir": state_dir, "netns": netns})
    args = {"direction": "inbound", "mesh": "lab", "peer_name": "h1", "local_address": LOCAL,
            "epoch": 1, "peers": [peer], "password": PASSWORD, "reqid": REQID,
            "state_dir": state_dir, "netns": netns}
    return args


def _ip_states(netns):
    return subprocess.run(["ip", "-n", netns, "xfrm", "state"], capture_output=True, text=True,
                          check=True).stdout


def _state_files(args):
    from pathlib import Path

    return {p.name: p.read_bytes() for p in Path(args["state_dir"]).iterdir()}


def test_xfrm_state_names_what_this_kernel_lacks(netns, receiver):
    predicted = run_module("xfrm_state", receiver, check=True)
    assert predicted["changed"] and predicted["changes"][0].startswith("+ inbound SA from h2 (epoch 1)")
    failed = run_module("xfrm_state", receiver, expect_failure=True)
    assert "the kernel lacks ESP (esp4/esp6, CONFIG_INET_ESP) and the AEAD rfc4106(gcm(aes))" \
        in failed["msg"], failed["msg"]
    assert _ip_states(netns) == ""
    chacha = run_module("xfrm_state", {**receiver, "cipher": "chacha20-poly1305"},
                        expect_failure=True)
    assert "the AEAD rfc7539esp(chacha20,poly1305)" in chacha["msg"]


def test_a_real_run_records_each_peers_shared_secret_and_check_mode_records_nothing(netns, receiver):
    from ansible_collections.weave.fastdp.plugins.module_utils import keys
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    h2 = receiver["peers"][0]
    recorded = json.loads(_state_files(receiver)["shared-secrets.json"])
    assert list(recorded["peers"]) == [h2["public_key"]]
    files = _state_files(receiver)
    h3 = {"name": "h3", "address": OTHER,
          "public_key": keys.public_key_text(X25519PrivateKey.generate())}
    run_module("nonces", {**{k: receiver[k] for k in ("mesh", "peer_name", "local_address",
                                                      "password", "state_dir", "netns")},
                          "epoch": 1, "peers": [{"name": p["name"], "public_key": p["public_key"]}
                                                for p in (h2, h3)]}, check=True)
    predicted = run_module("xfrm_state", {**receiver, "peers": [h2, h3]}, check=True)
    assert predicted["changed"]
    assert _state_files(receiver) == files


@pytest.mark.parametrize(("change", "named"), [
    ({"local_address": "198.51.100"}, "local_address: "),
    ({"password": ""}, "password: "),
    ({"password": None}, "missing: password"),
    ({"cipher": "des"}, "value of cipher must be one of"),
    ({"replay_window": 0}, "replay_window: "),
    ({"peers": [{"name": "h2", "address": "not-an-address"}]}, "peers[0].address: "),
    ({"peers": [{"name": "h2", "address": LOCAL}]}, "peers[0].address: 198.51.100.11 (h2) is this host's own"),
    ({"peers": [{"name": "h2", "address": PEER}, {"name": "h2", "address": OTHER}]},
     "peers[1].name: h2 is declared twice"),
    ({"peers": [{"name": "h2", "address": "2001:db8::12"}]},
     "peers[0].address: 2001:db8::12 is not of the address family of local_address"),
    ({"peers": [{"name": "h2", "address": PEER, "public_key": "not base64"}]},
     "peers[0] (h2): not a base64 X25519 public key"),
    ({"peers": [{"name": "h2", "address": PEER, "published": [{"epoch": 1, "spi": 200}]}]},
     "peers[0].published[0].spi: "),
    ({"direction": "outbound", "peers": [{"name": "h2", "address": PEER, "published": [
        {"epoch": 1, "spi": 0x1234, "sealed_nonce": "AAAA"}]}]}, "peers[0] (h2): "),
])
def test_xfrm_state_bad_input_names_the_field_and_changes_nothing(netns, receiver, change, named):
    files = _state_files(receiver)
    args = {**receiver, **change}
    if change.get("peers") and "public_key" not in change["peers"][0]:
        for peer in args["peers"]:
            peer.setdefault("public_key", receiver["peers"][0]["public_key"])
    args = {k: v for k, v in args.items() if v is not None}
    failed = run_module("xfrm_state", args, expect_failure=True)
    assert named in failed["msg"], failed["msg"]
    assert _ip_states(netns) == "" and _state_files(receiver) == files
    assert PASSWORD not in str(failed)
