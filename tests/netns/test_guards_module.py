"""The guards module on lab hosts: with an out policy but no SA (the host kernel cannot make
one) no tunnel packet leaves in clear and the counters say why; plaintext VXLAN spoofing a
peer is dropped and counted; check mode predicts, a second run changes nothing, removal
leaves exactly what was there, foreign rules survive; IPv6 underlays."""

import re
import sys

import pytest
from ansible_collections.weave.fastdp.plugins.module_utils.guards import guard_state

from lab.capture import capture
from lab.modules import run_module

pytestmark = pytest.mark.netns

MARK = "0x20000"
REQID = 7
SPI = {"h1": 0x1001, "h2": 0x1002}  # inbound SPI of each host, from its peer


def underlay(host, six):
    return host.address6 if six else host.address


def guard_args(host, peers, six=False):
    return {"mesh": "test", "local_address": underlay(host, six), "netns": host.netns,
            "peers": [{"name": p.name, "address": underlay(p, six),
                       "inbound_spis": [SPI[host.name]]} for p in peers]}


def vxlan(host, peer, six=False):
    run_module("vxlan", {"name": "wf-test", "vni": 42, "local": underlay(host, six),
                         "addresses": [f"203.0.113.{host.name[1:]}/24"],
                         "peers": [underlay(peer, six)], "netns": host.netns})


def out_policy(lab, src, dst, six=False):
    """The policy the xfrm module would make, towards an SA that does not exist."""
    s, d = underlay(src, six), underlay(dst, six)
    bits = 128 if six else 32
    lab.exec(src, "ip", "xfrm", "policy", "add", "src", f"{s}/{bits}", "dst", f"{d}/{bits}",
             "proto", "udp", "dir", "out", "mark", MARK, "mask", MARK,
             "tmpl", "src", s, "dst", d, "proto", "esp", "spi", hex(SPI[dst.name]),
             "reqid", REQID, "mode", "transport")


def ping(lab, src, dst):
    return lab.exec(src, "ping", "-c", "3", "-i", "0.2", "-W", "1", f"203.0.113.{dst.name[1:]}",
                    check=False).returncode == 0


def xfrm_stat(lab, host, name):
    return int(re.search(rf"{name}\s+(\d+)", lab.exec(host, "cat", "/proc/net/xfrm_stat").stdout)[1])


def saved(lab, host, tool="iptables"):
    """Every rule and user chain of a full iptables-save, by table (the tables themselves and
    their built-in chains may stay once made)."""
    table, found = None, []
    for line in lab.exec(host, f"{tool}-save").stdout.splitlines():
        if line.startswith("*"):
            table = line
        elif line.startswith("-A") or re.match(r":\S+ - ", line):
            found.append(f"{table} {line.split(' [')[0] if line.startswith(':') else line}")
    return found


def test_fail_closed_spoof_dropped_idempotent_and_clean_removal(lab_factory):
    lab = lab_factory(count=3, sshd=False)
    a, b, spoofer = lab.hosts
    lab.exec(a, "iptables", "-N", "FOREIGN")
    lab.exec(a, "iptables", "-A", "FOREIGN", "-j", "RETURN")
    lab.exec(a, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
    clean = saved(lab, a)
    links = lab.exec(a, "ip", "-d", "link").stdout

    predicted = run_module("guards", guard_args(a, [b]), check=True)
    assert predicted["changed"] and saved(lab, a) == clean, "check mode changed nothing"
    made = run_module("guards", guard_args(a, [b]), diff=True)
    assert made["commands"] == predicted["commands"]
    assert "rules" not in predicted  # only in diff mode
    assert "iptables mangle: -A OUTPUT -j FASTDP-test-OUT" in made["rules"]
    assert made["commands"].count("iptables -I OUTPUT 1 -j FASTDP-test-OUT") == 2  # filter, mangle
    assert "iptables mangle: -A OUTPUT -j FASTDP-test-OUT" in made["diff"]["after"]
    for check in (True, False):
        assert not run_module("guards", guard_args(a, [b]), check=check)["changed"]
    run_module("guards", guard_args(b, [a]))
    for host, peer in ((a, b), (b, a)):
        vxlan(host, peer)
        out_policy(lab, host, peer)

    # An out policy but no SA: nothing leaves in clear; XFRM says it had no state.
    no_states = xfrm_stat(lab, a, "XfrmOutNoStates")
    with capture(lab, a, "udp port 6784") as cap_a, capture(lab, b, "udp port 6784") as cap_b:
        assert not ping(lab, a, b)
        assert not ping(lab, b, a)
    assert cap_a.count("udp port 6784") == 0 and cap_b.count("udp port 6784") == 0
    assert guard_state("test", netns=a.netns)[b.address]["tunnel_marked"] > 0
    assert xfrm_stat(lab, a, "XfrmOutNoStates") > no_states

    # Without the policy, the marked packets are dropped by the guard instead.
    lab.exec(a, "ip", "xfrm", "policy", "flush")
    with capture(lab, a, "udp port 6784") as cap_a:
        assert not ping(lab, a, b)
    assert cap_a.count("udp port 6784") == 0
    assert guard_state("test", netns=a.netns)[b.address]["untransformed_dropped"] > 0

    # Plaintext VXLAN from the third host, spoofing b's address, is dropped by a's guard.
    before = guard_state("test", netns=a.netns)[b.address]["plaintext_dropped"]
    inject = (
        "from scapy.all import IP, UDP, Ether, ICMP, send; from scapy.layers.vxlan import VXLAN;"
        f"send(IP(src='{b.address}', dst='{a.address}')/UDP(sport=40000, dport=6784)/"
        "VXLAN(vni=42)/Ether()/IP(src='203.0.113.2', dst='203.0.113.1')/ICMP(), count=3,"
        " verbose=False)")
    lab.exec(spoofer, sys.executable, "-c", inject)
    assert guard_state("test", netns=a.netns)[b.address]["plaintext_dropped"] >= before + 3

    # Removal: no device, chain or rule of ours; the foreign rule and chain are as they were.
    run_module("vxlan", {"name": "wf-test", "state": "absent", "netns": a.netns})
    gone = run_module("guards", {"mesh": "test", "state": "absent", "netns": a.netns})
    assert gone["changed"]
    assert saved(lab, a) == clean
    assert lab.exec(a, "ip", "-d", "link").stdout == links
    assert not run_module("guards", {"mesh": "test", "state": "absent",
                                     "netns": a.netns})["changed"]


def test_two_meshes_do_not_collide_and_bad_input_changes_nothing(lab_factory):
    lab = lab_factory(count=2, sshd=False)
    a, b = lab.hosts
    run_module("guards", guard_args(a, [b]))
    other = {**guard_args(a, [b]), "mesh": "other", "port": 6785, "mark": "0x40000"}
    assert run_module("guards", other)["changed"]
    assert not run_module("guards", guard_args(a, [b]))["changed"]
    before = saved(lab, a)
    for bad, field in (({"mark": "0x4000"}, "mark"), ({"port": 70000}, "port"),
                       ({"local_address": "198.51.100.300"}, "local_address"),
                       ({"mesh": "a-mesh-name-too-long"}, "mesh")):
        failed = run_module("guards", {**guard_args(a, [b]), **bad}, expect_failure=True)
        assert failed["msg"].startswith(f"{field}:")
    assert saved(lab, a) == before
    run_module("guards", {"mesh": "test", "state": "absent", "netns": a.netns})
    assert any("FASTDP-other-IN" in line for line in saved(lab, a))
    assert not any("FASTDP-test-" in line for line in saved(lab, a))


def test_ipv6_underlay(lab_factory):
    lab = lab_factory(count=2, sshd=False)
    a, b = lab.hosts
    clean = saved(lab, a, "ip6tables")
    for host, peer in ((a, b), (b, a)):
        vxlan(host, peer, six=True)
    assert ping(lab, a, b), "the IPv6 underlay carries the overlay before any guard"
    for host, peer in ((a, b), (b, a)):
        made = run_module("guards", guard_args(host, [peer], six=True))
        assert all(line.startswith("ip6tables ") for line in made["commands"])
    assert not run_module("guards", guard_args(a, [b], six=True))["changed"]
    with capture(lab, a, "udp port 6784") as cap:
        assert not ping(lab, a, b)
    assert cap.count("udp port 6784") == 0
    state = guard_state("test", ipv=6, netns=a.netns)
    assert state[b.address6]["tunnel_marked"] > 0
    assert state[b.address6]["untransformed_dropped"] > 0
    run_module("guards", {"mesh": "test", "state": "absent", "netns": a.netns})
    assert saved(lab, a, "ip6tables") == clean
