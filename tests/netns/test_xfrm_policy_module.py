"""xfrm_policy on the host kernel (policies need no ESP), in a bare network namespace."""

import copy
import secrets
import subprocess

import pytest

from lab.modules import run_module

pytestmark = pytest.mark.netns

REQID = 4242
LOCAL, PEER, OTHER = "198.51.100.11", "198.51.100.12", "198.51.100.13"


@pytest.fixture
def netns():
    """A bare namespace (policies need no interface). The lab's ``netns`` fixture adds a dummy
    link, which this host kernel cannot make."""
    name = f"wfp{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


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
