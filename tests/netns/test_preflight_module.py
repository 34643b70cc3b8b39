"""The preflight module on a bare namespace of the host kernel (which has VXLAN and xt_policy
but no ESP): the underlay facts come from the kernel, the missing part is named, and the
default underlay address is the default route's interface's."""

import subprocess

import pytest

from lab.modules import run_module

pytestmark = pytest.mark.netns


def preflight(netns, **args):
    return run_module("preflight", {"netns": netns, "fail_on_missing": False,
                                    "state_dir": "/nonexistent/wf-state", **args})


def test_names_esp_as_missing_and_nothing_else_on_this_kernel(netns):
    result = preflight(netns, underlay_address="198.51.100.11")
    assert set(result["missing"]) == {"esp"}, result["missing"]
    assert "lacks ESP" in result["missing"]["esp"]
    assert result["recorded_epoch"] is None


def test_a_missing_part_fails_the_run_naming_it(netns):
    failed = run_module("preflight", {"netns": netns, "underlay_address": "198.51.100.11"},
                        expect_failure=True)
    assert "cannot run the encrypted fast datapath: esp:" in failed["msg"]


def test_underlay_facts_are_the_kernel_s_own(netns):
    subprocess.run(["ip", "-n", netns, "link", "set", "eth0", "mtu", "1400"], check=True)
    result = preflight(netns, underlay_address="2001:DB8:0::11", probe=False)
    assert result["missing"] == {}
    assert (result["underlay_address"], result["underlay_interface"], result["underlay_mtu"]) \
        == ("2001:db8::11", "eth0", 1400)


def test_default_underlay_is_the_default_route_s_interface(netns):
    assert "no default route" in preflight(netns, probe=False)["missing"]["underlay"]
    subprocess.run(["ip", "-n", netns, "route", "add", "default", "via", "198.51.100.1"],
                   check=True)
    result = preflight(netns, probe=False)
    assert (result["underlay_address"], result["underlay_interface"]) == ("198.51.100.11", "eth0")


def test_an_address_not_on_the_host_is_named(netns):
    missing = preflight(netns, underlay_address="198.51.100.99", probe=False)["missing"]
    assert missing == {"underlay": "fastdp_underlay_address 198.51.100.99 is not an address of "
                                   "this host"}
