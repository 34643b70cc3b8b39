"""Attacks on the guards, on the host kernel (no ESP here: an out policy without an SA stands
for the tunnel), each asserting what crossed the wire and the counter that moved, with both
iptables backends (nf_tables and legacy: the lab hosts in the guest use legacy).

- Spoofed plaintext VXLAN from a peer's and from a non-peer's address: first accepted by the
  device with no guard (the positive control: the frame is valid), then dropped and counted
  by the guards, and by the mesh's inbound XFRM policy alone (the second line).
- Foreign ACCEPTs for the tunnel port on top of the filter table's INPUT and OUTPUT, and a
  firewall reload of the filter table: nothing gets past the guards, no re-run is needed.
- Foreign rules ahead of the guards' jumps in the mangle table itself: the hole is real
  (spoofed VXLAN reaches the device, but for the inbound policy), the status names each
  displaced jump, and the next run reports a change and puts the jumps back on top.
- A local unprivileged user's datagram to a peer's tunnel port: not marked, not sent to the
  tunnel's policy, dropped; the kernel's own VXLAN traffic, also of a local socket, still is.
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest
from ansible_collections.weave.fastdp.plugins.module_utils.guards import guard_state
from ansible_collections.weave.fastdp.plugins.module_utils.xfrm_policies import inbound_policy

from lab.attacks import plaintext_vxlan, send_frames, user_datagram
from lab.capture import capture
from lab.modules import run_module

pytestmark = pytest.mark.netns

MESH, DEVICE, VNI, REQID, MARK = "test", "wf-test", 42, 7, "0x20000"
SPI = {"h1": 0x1001, "h2": 0x1002}  # inbound SPI of each host, from its peer
TUNNEL = "udp port 6784"
INNER_SRC = "203.0.113.99"  # the spoofed frames' inner source: no host's, so counted exactly


@pytest.fixture(params=["nft", "legacy"])
def backend(request, tmp_path, monkeypatch):
    """The iptables backend every command of the test uses: the modules pick the backend of
    the ``iptables`` first on PATH, as on a host."""
    if request.param == "legacy":
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        for family in ("iptables", "ip6tables"):
            for verb in ("", "-save", "-restore"):
                (bin_dir / f"{family}{verb}").symlink_to(f"/usr/sbin/{family}-legacy{verb}")
        monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return request.param


def overlay(host) -> str:
    return f"203.0.113.{host.name[1:]}"


def mac(host) -> str:
    return f"02:00:5e:00:53:{int(host.name[1:]):02x}"


def device(lab, host, peer) -> None:
    """The mesh's device as the role makes it: the peer's overlay addresses (IPv4 and an IPv6
    link-local one) at its device's MAC, so a packet to it goes out at once, ARP-free."""
    run_module("vxlan", {"name": DEVICE, "vni": VNI, "local": host.address, "mac": mac(host),
                         "addresses": [f"{overlay(host)}/24"], "peers": [peer.address],
                         "macs": [{"mac": mac(peer), "peer": peer.address}],
                         "neighbours": [{"address": a, "mac": mac(peer)}
                                        for a in (overlay(peer), f"fe80::{peer.name[1:]}")],
                         "netns": host.netns})


def guards(host, peers, **extra) -> dict:
    return run_module("guards", {
        "mesh": MESH, "local_address": host.address, "reqid": REQID, "device": DEVICE,
        "netns": host.netns, "peers": [{"name": p.name, "address": p.address,
                                        "inbound_spis": [SPI[host.name]]} for p in peers]},
                      **extra)


def out_policy(lab, src, dst) -> None:
    """The policy the xfrm modules would make, towards an SA that does not exist here."""
    lab.exec(src, "ip", "xfrm", "policy", "add", "src", f"{src.address}/32",
             "dst", f"{dst.address}/32", "proto", "udp", "dir", "out", "mark", MARK, "mask", MARK,
             "tmpl", "src", src.address, "dst", dst.address, "proto", "esp",
             "spi", hex(SPI[dst.name]), "reqid", REQID, "mode", "transport")


def mesh_pair(lab, a, b) -> None:
    """a and b with the VXLAN device, the guards and the out policy each way."""
    for host, peer in ((a, b), (b, a)):
        device(lab, host, peer)
        guards(host, [peer])
        out_policy(lab, host, peer)


def rx(lab, host) -> int:
    link = json.loads(lab.exec(host, "ip", "-s", "-j", "link", "show", DEVICE).stdout)[0]
    return link["stats64"]["rx"]["packets"]


def xfrm_stat(lab, host, name) -> int:
    return int(re.search(rf"{name}\s+(\d+)", lab.exec(host, "cat", "/proc/net/xfrm_stat").stdout)[1])


def spoof(lab, attacker, victim, src, count=3) -> tuple[int, int]:
    """``count`` plaintext VXLAN frames from ``attacker`` to ``victim`` with the outer source
    ``src``: (frames of them seen on the victim's wire, frames of them the victim's device took,
    seen on the device)."""
    frame = plaintext_vxlan(lab, victim, src, vni=VNI, inner_dst_mac=mac(victim),
                            inner_src=INNER_SRC, inner_dst=overlay(victim))
    before = rx(lab, victim)
    with capture(lab, victim, f"{TUNNEL} and src {src}") as wire, \
            capture(lab, victim, f"src {INNER_SRC}", iface=DEVICE) as taken:
        send_frames(lab, attacker, [frame] * count)
    assert rx(lab, victim) - before >= taken.count(f"src {INNER_SRC}"), "the device's counter"
    return wire.count(f"{TUNNEL} and src {src}"), taken.count(f"src {INNER_SRC}")


def ping(lab, src, dst, *args) -> bool:
    return lab.exec(src, "ping", "-c", "2", "-i", "0.2", "-W", "1", *args, dst,
                    check=False).returncode == 0


def counters(host, peer=None) -> dict:
    state = guard_state(MESH, netns=host.netns)
    return state["*"] if peer is None else state[peer.address]


def test_spoofed_plaintext_vxlan_is_taken_without_guards_and_dropped_and_counted_with_them(
        lab_factory, backend):
    lab = lab_factory(count=3, sshd=False)
    a, b, attacker = lab.hosts
    device(lab, a, b)

    # Positive control: no guard, no policy; a valid frame, spoofed or not, reaches the device.
    assert spoof(lab, attacker, a, b.address) == (3, 3), "from the peer's address"
    assert spoof(lab, attacker, a, attacker.address) == (3, 3), "from a non-peer's address"

    guards(a, [b])
    peer, wide = counters(a, b)["plaintext_dropped"], counters(a)["plaintext_dropped"]
    assert spoof(lab, attacker, a, b.address) == (3, 0)
    assert counters(a, b)["plaintext_dropped"] == peer + 3, "dropped as the peer's plaintext"
    assert spoof(lab, attacker, a, attacker.address) == (3, 0)
    assert counters(a)["plaintext_dropped"] == wide + 3, "dropped as no peer's"
    assert not guards(a, [b])["changed"]

    # The second line: without any guard, the mesh's inbound XFRM policy alone drops both.
    run_module("guards", {"mesh": MESH, "state": "absent", "netns": a.netns})
    run_module("xfrm_policy", {"reqid": REQID, "netns": a.netns,
                               "policies": [inbound_policy(a.address, 6784, REQID)]})
    for src in (b.address, attacker.address):
        mismatch = xfrm_stat(lab, a, "XfrmInTmplMismatch")
        assert spoof(lab, attacker, a, src) == (3, 0), src
        assert xfrm_stat(lab, a, "XfrmInTmplMismatch") == mismatch + 3, src


def test_foreign_accepts_and_a_reload_of_the_filter_table_get_nothing_past_the_guards(
        lab_factory, backend):
    lab = lab_factory(count=3, sshd=False)
    a, b, attacker = lab.hosts
    mesh_pair(lab, a, b)
    for chain in ("INPUT", "OUTPUT"):
        lab.exec(a, "iptables", "-I", chain, "1", "-p", "udp", "--dport", "6784", "-j", "ACCEPT")
    # A firewall reload: the filter table written anew, a subnet ACCEPT on top of INPUT.
    lab.exec(a, "iptables-restore", input="*filter\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
             "-A INPUT -s 198.51.100.0/24 -j ACCEPT\n-A INPUT -p udp --dport 6784 -j ACCEPT\n"
             "-A OUTPUT -p udp --dport 6784 -j ACCEPT\nCOMMIT\n")
    assert "ACCEPT" in lab.exec(a, "iptables-save", "-t", "filter").stdout

    dropped = counters(a, b)["plaintext_dropped"]
    assert spoof(lab, attacker, a, b.address) == (3, 0)
    assert counters(a, b)["plaintext_dropped"] == dropped + 3

    no_states = xfrm_stat(lab, a, "XfrmOutNoStates")
    with capture(lab, a, TUNNEL) as wire:
        assert not ping(lab, a, overlay(b))
    assert wire.count(TUNNEL) == 0 and xfrm_stat(lab, a, "XfrmOutNoStates") > no_states, \
        "the tunnel traffic went to the policy (no SA here), none in clear"
    lab.exec(a, "ip", "xfrm", "policy", "flush")
    dropped = counters(a, b)["untransformed_dropped"]
    with capture(lab, a, TUNNEL) as wire:
        assert not ping(lab, a, overlay(b))
    assert wire.count(TUNNEL) == 0 and counters(a, b)["untransformed_dropped"] > dropped, \
        "no policy: the guard drops what the tunnel would not take"
    assert not guards(a, [b])["changed"], "nothing of the guards was displaced"


def displace(lab, host) -> None:
    """Foreign ACCEPTs on top of mangle INPUT and POSTROUTING, and the OUTPUT jump moved below
    a subnet ACCEPT by a reload of the whole mangle table (as iptables-save wrote it)."""
    for chain in ("INPUT", "POSTROUTING"):
        lab.exec(host, "iptables", "-t", "mangle", "-I", chain, "1", "-p", "udp", "--dport",
                 "6784", "-j", "ACCEPT")
    table = lab.exec(host, "iptables-save", "-t", "mangle").stdout
    jump = f"-A OUTPUT -j FASTDP-{MESH}-OUT\n"
    assert jump in table
    table = table.replace(jump, f"-A OUTPUT -d 198.51.100.0/24 -j ACCEPT\n{jump}")
    lab.exec(host, "iptables-restore", "-T", "mangle", input=table)


def status(a, b) -> dict:
    return run_module("mesh_info", {"mesh": MESH, "reqid": REQID, "device": DEVICE,
                                    "local_address": a.address, "netns": a.netns,
                                    "peers": [{"name": b.name, "address": b.address}]})["peers"][0]


def test_rules_ahead_of_the_jumps_in_mangle_are_reported_and_the_next_run_puts_the_jumps_first(
        lab_factory, backend):
    lab = lab_factory(count=3, sshd=False)
    a, b, attacker = lab.hosts
    mesh_pair(lab, a, b)
    assert not [m for m in status(a, b)["missing"] if m.startswith("guard first")]
    displace(lab, a)

    missing = status(a, b)["missing"]
    assert "guard first in mangle INPUT: behind -p udp -m udp --dport 6784 -j ACCEPT" in missing
    assert "guard first in mangle POSTROUTING: behind -p udp -m udp --dport 6784 -j ACCEPT" \
        in missing
    assert "guard first in mangle OUTPUT: behind -d 198.51.100.0/24 -j ACCEPT" in missing
    # The hole is real: spoofed VXLAN reaches the device...
    assert spoof(lab, attacker, a, b.address) == (3, 3)
    # ...but for the inbound policy, which no iptables rule can get ahead of.
    run_module("xfrm_policy", {"reqid": REQID, "netns": a.netns,
                               "policies": [inbound_policy(a.address, 6784, REQID)]})
    mismatch = xfrm_stat(lab, a, "XfrmInTmplMismatch")
    assert spoof(lab, attacker, a, b.address) == (3, 0)
    assert xfrm_stat(lab, a, "XfrmInTmplMismatch") == mismatch + 3
    lab.exec(a, "ip", "xfrm", "policy", "deleteall", "dir", "in")

    predicted = guards(a, [b], check=True)
    assert predicted["changed"]
    fixed = guards(a, [b])
    assert fixed["commands"] == predicted["commands"]
    for hook, chain in (("INPUT", "IN"), ("OUTPUT", "OUT"), ("POSTROUTING", "PST")):
        assert f"iptables -D {hook} -j FASTDP-{MESH}-{chain}" in fixed["commands"]
        assert f"iptables -I {hook} 1 -j FASTDP-{MESH}-{chain}" in fixed["commands"]
        rules = [line for line in lab.exec(a, "iptables-save", "-t", "mangle").stdout.splitlines()
                 if line.startswith(f"-A {hook} ")]
        assert rules[0] == f"-A {hook} -j FASTDP-{MESH}-{chain}", rules
        assert len(rules) == 2 and "ACCEPT" in rules[1], "the foreign rule stays, behind"
    assert not [m for m in status(a, b)["missing"] if m.startswith("guard first")]
    assert not guards(a, [b])["changed"]

    dropped = counters(a, b)["plaintext_dropped"]
    assert spoof(lab, attacker, a, b.address) == (3, 0)
    assert counters(a, b)["plaintext_dropped"] == dropped + 3
    lab.exec(a, "ip", "xfrm", "policy", "flush")
    with capture(lab, a, TUNNEL) as wire:
        assert not ping(lab, a, overlay(b))
    assert wire.count(TUNNEL) == 0


def test_a_local_users_datagram_is_neither_marked_nor_sent_to_the_tunnel(lab_factory, backend):
    lab = lab_factory(count=2, sshd=False)
    a, b = lab.hosts
    mesh_pair(lab, a, b)

    # Control: the kernel's VXLAN traffic is marked and goes to the policy, also when what it
    # carries comes from a local socket (ping's), IPv4 or IPv6 inside.
    for args, dst in (((), overlay(b)), (("-6",), f"fe80::2%{DEVICE}")):
        if args:  # ping -6 needs a link-local source that is no longer tentative
            deadline = time.monotonic() + 10
            while lab.exec(a, "ip", "-6", "addr", "show", "dev", DEVICE, "tentative").stdout:
                assert time.monotonic() < deadline, "duplicate address detection never ended"
                time.sleep(0.2)
        marked, skipped = counters(a, b)["tunnel_marked"], counters(a)["sockets_skipped"]
        no_states = xfrm_stat(lab, a, "XfrmOutNoStates")
        with capture(lab, a, TUNNEL) as wire:
            assert not ping(lab, a, dst, *args)
        assert counters(a, b)["tunnel_marked"] >= marked + 2, args
        assert counters(a)["sockets_skipped"] == skipped, args
        assert xfrm_stat(lab, a, "XfrmOutNoStates") >= no_states + 2, args
        assert wire.count(TUNNEL) == 0

    marked, wide = counters(a, b)["tunnel_marked"], counters(a)
    no_states = xfrm_stat(lab, a, "XfrmOutNoStates")
    with capture(lab, a, TUNNEL) as wire:
        said = user_datagram(lab, a, b.address, count=3)
    assert counters(a, b)["tunnel_marked"] == marked, "never marked for the peer's policy"
    assert xfrm_stat(lab, a, "XfrmOutNoStates") == no_states, "never sent to the policy"
    assert counters(a)["sockets_skipped"] == wide["sockets_skipped"] + 3
    assert counters(a)["untransformed_dropped"] == wide["untransformed_dropped"] + 3
    assert said.count("Operation not permitted") == 3, said  # the guard's drop, not XFRM's
    assert wire.count(TUNNEL) == 0, "and not in clear either"
