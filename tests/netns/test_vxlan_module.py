"""The vxlan module on lab hosts: overlay ping over IPv4 and IPv6 underlays, check mode that
predicts, a second run that changes nothing, a clean removal, unicast that reaches its peer
alone, bad input that changes nothing."""

import json
import re

import pytest

from lab.capture import capture
from lab.modules import run_module

pytestmark = pytest.mark.netns

VNI = 42


def overlay(host, prefix="203.0.113"):
    return f"{prefix}.{host.name.removeprefix('h')}"


def args(host, peers, six=False, **over):
    return {"name": "wf-test", "vni": VNI, "local": host.address6 if six else host.address,
            "underlay_interface": host.iface, "addresses": [f"{overlay(host)}/24"],
            "peers": [p.address6 if six else p.address for p in peers], "netns": host.netns,
            **over}


def links(lab, host):
    """``ip -d link`` without the parts the kernel changes on its own."""
    return re.sub(r"\d+: |link-netnsid \d+|NO-CARRIER,|state \w+", "",
                  lab.exec(host, "ip", "-d", "link").stdout)


def ping(lab, src, dst):
    return lab.exec(src, "ping", "-c", "2", "-i", "0.2", "-W", "2", overlay(dst),
                    check=False).returncode == 0


def test_overlay_ping_check_mode_idempotence_and_removal(lab_factory):
    lab = lab_factory(count=2, sshd=False)
    a, b = lab.hosts
    clean = {h.name: links(lab, h) for h in lab.hosts}
    predicted = run_module("vxlan", args(a, [b]), check=True)
    assert predicted["changed"] and links(lab, a) == clean["h1"], "check mode changed nothing"
    made = run_module("vxlan", args(a, [b]), diff=True)
    assert made["changes"] == predicted["changes"]
    assert made["diff"]["before"] == "" and "fdb 00:00:00:00:00:00 dst 198.51.100.12" in \
        made["diff"]["after"]
    run_module("vxlan", args(b, [a]))
    detail = lab.exec(a, "ip", "-d", "link", "show", "wf-test").stdout
    assert "vxlan id 42" in detail and "dstport 6784" in detail and "nolearning" not in detail
    assert "mtu 1416" in detail
    assert ping(lab, a, b)
    for check in (True, False):
        again = run_module("vxlan", args(a, [b]), check=check)
        assert not again["changed"] and again["changes"] == []
    gone = run_module("vxlan", {"name": "wf-test", "state": "absent", "netns": a.netns})
    assert gone["changed"] and gone["device"] is None
    assert links(lab, a) == clean["h1"]
    assert not run_module("vxlan", {"name": "wf-test", "state": "absent",
                                    "netns": a.netns})["changed"]


def overlay_frames_received(lab, host) -> int:
    stats = json.loads(lab.exec(host, "ip", "-j", "-s", "link", "show", "wf-test").stdout)
    return stats[0]["stats64"]["rx"]["packets"]


def test_unicast_reaches_its_peer_alone_and_learned_entries_are_no_change(lab_factory):
    lab = lab_factory(count=3, sshd=False)
    a, b, c = lab.hosts
    for host in lab.hosts:
        run_module("vxlan", args(host, [p for p in lab.hosts if p is not host]))
    assert ping(lab, a, b), "the first echo, flooded to every peer, taught b and a each other"
    before = overlay_frames_received(lab, c)
    lab.exec(a, "ping", "-c", "40", "-i", "0.01", "-W", "2", overlay(b))
    assert overlay_frames_received(lab, c) - before < 10, "80 frames a <-> b, flooded to c"
    learned = lab.exec(a, "bridge", "fdb", "show", "dev", "wf-test").stdout
    assert re.search(rf"^(?!00:00:00:00:00:00)\S+ dst {b.address} (?!.*permanent)", learned,
                     re.MULTILINE), learned
    for check in (True, False):
        assert run_module("vxlan", args(a, [b, c]), check=check)["changes"] == []


def mac(host) -> str:
    return f"02:00:00:00:00:{int(host.name.removeprefix('h')):02x}"


def declared(host, peers, **over):
    """The device with its own MAC, and each peer's MAC and overlay address, as the role does."""
    return args(host, peers, **{"mac": mac(host),
                                "macs": [{"mac": mac(p), "peer": p.address} for p in peers],
                                "neighbours": [{"address": overlay(p), "mac": mac(p)}
                                               for p in peers], **over})


# The inner Ethernet type of a VXLAN packet: UDP header 8 + VXLAN header 8 + two MACs 12.
INNER_ARP_OR_IPV4 = "udp port 6784 and (udp[28:2] = 0x0806 or udp[28:2] = 0x0800)"


def test_declared_peers_are_reached_without_arp_and_without_flooding(lab_factory):
    lab = lab_factory(count=3, sshd=False)
    a, b, c = lab.hosts
    for host in lab.hosts:
        run_module("vxlan", declared(host, [p for p in lab.hosts if p is not host]))
    assert lab.exec(b, "cat", "/sys/class/net/wf-test/address").stdout.strip() == mac(b)
    assert re.search(rf"^{overlay(b)} lladdr {mac(b)} PERMANENT",
                     lab.exec(a, "ip", "neigh", "show", "dev", "wf-test").stdout, re.MULTILINE)
    assert f"{mac(b)} dst {b.address} self permanent" in \
        lab.exec(a, "bridge", "fdb", "show", "dev", "wf-test").stdout
    with capture(lab, c, INNER_ARP_OR_IPV4) as at_c:
        lab.exec(a, "ping", "-c", "20", "-i", "0.01", "-W", "2", overlay(b))
    assert at_c.count("") == 0, "a's first frames to b (ARP, then unknown unicast) reached c"
    for check in (True, False):
        assert run_module("vxlan", declared(a, [b, c]), check=check)["changes"] == []


def test_a_peer_left_out_loses_its_mac_and_neighbour_and_a_new_mac_is_set_in_place(lab_factory):
    lab = lab_factory(count=3, sshd=False)
    a, b, c = lab.hosts
    run_module("vxlan", declared(a, [b, c]))
    index = lab.exec(a, "cat", "/sys/class/net/wf-test/ifindex").stdout
    over = {"mac": "02:00:00:00:01:01"}
    predicted = run_module("vxlan", declared(a, [b], **over), check=True)
    made = run_module("vxlan", declared(a, [b], **over))
    assert predicted["changes"] == made["changes"] == [
        f"remove neigh {overlay(c)} lladdr {mac(c)}",
        f"remove fdb 00:00:00:00:00:00 dst {c.address}",
        f"remove fdb {mac(c)} dst {c.address}",
        f"set address 02:00:00:00:01:01 (was {mac(a)})"]
    assert made["device"]["neighbours"] == [{"address": overlay(b), "mac": mac(b)}]
    assert lab.exec(a, "cat", "/sys/class/net/wf-test/ifindex").stdout == index
    assert overlay(c) not in lab.exec(a, "ip", "neigh", "show", "dev", "wf-test").stdout


def test_a_device_made_without_learning_learns_in_place(lab_factory):
    lab = lab_factory(count=2, sshd=False)
    a, b = lab.hosts
    run_module("vxlan", args(a, [b]))
    lab.exec(a, "ip", "link", "set", "wf-test", "type", "vxlan", "nolearning")
    index = lab.exec(a, "cat", "/sys/class/net/wf-test/ifindex").stdout
    predicted = run_module("vxlan", args(a, [b]), check=True)
    made = run_module("vxlan", args(a, [b]))
    assert predicted["changes"] == made["changes"] == ["set learning (was nolearning)"]
    assert not made["recreated"]
    assert lab.exec(a, "cat", "/sys/class/net/wf-test/ifindex").stdout == index
    assert "nolearning" not in lab.exec(a, "ip", "-d", "link", "show", "wf-test").stdout


def test_peers_mtu_and_vni_change_as_declared(lab_factory):
    lab = lab_factory(count=2, sshd=False)
    a, b = lab.hosts
    extra = "198.51.100.99"
    run_module("vxlan", {**args(a, [b]), "peers": [b.address, extra, "198.51.100.98"]})
    changed = run_module("vxlan", args(a, [b], mtu=1400, retain=["198.51.100.98"]))
    assert changed["changes"] == [f"remove fdb 00:00:00:00:00:00 dst {extra}",
                                  "set mtu 1416 -> 1400"] and not changed["recreated"]
    assert changed["device"]["mtu"] == 1400 and changed["max_mtu"] == 1416
    fdb = lab.exec(a, "bridge", "fdb", "show", "dev", "wf-test").stdout
    assert extra not in fdb and b.address in fdb and "198.51.100.98" in fdb
    recreated = run_module("vxlan", args(a, [b], vni=43, mtu=1400))
    assert recreated["recreated"] and "vni 42 -> 43" in recreated["changes"][0]
    assert "vxlan id 43" in lab.exec(a, "ip", "-d", "link", "show", "wf-test").stdout


def test_ipv6_underlay_carries_the_overlay(lab_factory):
    lab = lab_factory(count=2, sshd=False)
    a, b = lab.hosts
    for host, peer in ((a, b), (b, a)):
        made = run_module("vxlan", args(host, [peer], six=True))
        assert made["device"]["mtu"] == made["max_mtu"] == 1396
    assert f"local {a.address6}" in lab.exec(a, "ip", "-d", "link", "show", "wf-test").stdout
    assert ping(lab, a, b)
    assert not run_module("vxlan", args(a, [b], six=True))["changed"]


@pytest.mark.parametrize(("over", "message"), [
    ({"mtu": 1417}, ("mtu: 1417 leaves no room for VXLAN and ESP over eth0's MTU 1500: "
                    "the largest allowed value is 1416")),
    ({"underlay_interface": "eth9"}, "underlay_interface: eth9 does not exist"),
    ({"vni": 1 << 24}, "vni: "),
    ({"port": 0}, "port: "),
    ({"local": "198.51.100.77"}, "local: 198.51.100.77 is not an address of this host"),
    ({"bridge": "nobr"}, "bridge: nobr does not exist"),
    ({"mac": "01:00:5e:00:00:01"}, "mac: '01:00:5e:00:00:01' is not a unicast MAC address"),
    ({"neighbours": [{"address": "203.0.113.300", "mac": "02:00:00:00:00:02"}]},
     "neighbours[0].address: '203.0.113.300' is not an IP address"),
])
def test_bad_input_fails_naming_the_field_and_changes_nothing(lab_factory, over, message):
    lab = lab_factory(count=1, sshd=False)
    (a,) = lab.hosts
    before = links(lab, a)
    if "local" in over:
        over = {**over, "underlay_interface": None}
    failed = run_module("vxlan", args(a, [], **over), expect_failure=True)
    assert failed["msg"].startswith(message)
    assert links(lab, a) == before
