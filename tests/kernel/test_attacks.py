"""Attacks on the guards of a converged mesh, on a real kernel (ESP), on a lab of its own: h1-h3
of three distributions (Debian 11, 12 and 13, each with its own iptables, legacy backend), h4
outside the mesh. Each test asserts what crossed the wire and the counter that moved, and shows
first that its frame is taken when the defence is off. The tests run in file order, each on the
state the previous left; the spoofed plaintext frames from a peer's and a non-peer's address,
the foreign ACCEPTs in the filter table and the local user's datagram are also tested, faster,
in tests/netns/test_guard_attacks.py.

- Tunnel traffic from a non-peer, decrypted by a foreign SA (another owner's reqid): dropped
  and counted by the strict inbound guard, and by the mesh's inbound XFRM policy alone.
- A local unprivileged user's datagram to a peer's tunnel port: never encrypted (the SA's
  counter stays), nothing on the wire, dropped and counted by the guard.
- Foreign rules ahead of the guards in mangle INPUT, OUTPUT (the jump moved below a subnet
  ACCEPT by a reload) and POSTROUTING, and ACCEPTs on top of filter INPUT and OUTPUT: spoofed
  plaintext still never reaches the device, the status names each displaced jump, and the next
  converge reports a change on that host only and puts the jumps first again.
- After all of it, every pair carries its traffic, only as ESP.
"""

from __future__ import annotations

import itertools
import re
import secrets

import pytest
from ansible_collections.weave.fastdp.plugins.module_utils.guards import guard_state

from lab.attacks import plaintext_vxlan, send_frames, user_datagram
from lab.capture import TUNNEL_PORT, capture
from lab.hosts import overlay_address
from lab.modules import run_module
from lab.smoke import ping
from lab.state import converge, mesh_hosts, mesh_lab, xfrm_states

pytestmark = pytest.mark.kernel(seconds=260)  # wall time in a guest (measured), to balance the guests
DEVICE, VNI = "wf-weave", 4242  # the role's defaults
FOREIGN_REQID, FOREIGN_SPI = 99, 0x99990001
TUNNEL = f"udp port {TUNNEL_PORT}"
INNER_SRC = "203.0.113.99"  # the spoofed frames' inner source: no host's, so counted exactly


@pytest.fixture(scope="module")
def mesh():
    """The mesh h1-h3 converged once; h4 is no peer."""
    with mesh_lab("wfatk", platforms=["debian11", "debian12", "debian13"]) as lab:
        lab.first_converge = converge(lab)
        yield lab


def device_mac(lab, host) -> str:
    return lab.exec(host, "cat", f"/sys/class/net/{DEVICE}/address").stdout.strip()


def xfrm_stat(lab, host, name) -> int:
    return int(re.search(rf"{name}\s+(\d+)", lab.exec(host, "cat", "/proc/net/xfrm_stat").stdout)[1])


def sa_packets(lab, host, src, dst, reqid=None) -> int:
    """Packets of the host's SAs src->dst (of ``reqid``, default any), from ``ip -s``."""
    return sum(int(re.search(r"(\d+)\(packets\)", sa["text"])[1])
               for sa in xfrm_states(lab, host) if (sa["src"], sa["dst"]) == (src.address, dst.address)
               and reqid in (None, sa["reqid"]))


def reqid(lab) -> int:
    """The mesh's reqid: that of h1's SA from h2 (h1 may hold another owner's SAs too)."""
    h1, h2, _ = mesh_hosts(lab)
    return next(sa["reqid"] for sa in xfrm_states(lab, h1)
                if (sa["src"], sa["dst"]) == (h2.address, h1.address))


def counters(host, peer=None) -> dict:
    state = guard_state("weave", netns=host.netns)
    return state["*"] if peer is None else state[peer.address]


def mangle_hook(lab, host, hook) -> list[str]:
    return [line for line in lab.exec(host, "iptables-save", "-t", "mangle").stdout.splitlines()
            if line.startswith(f"-A {hook} ")]


def broken(lab, host) -> list[str]:
    """What the status of the host's pairs (weave.fastdp.mesh_info, run in its namespace: SSH
    costs seconds per run in the guest and proves nothing more here) says is wrong."""
    peers = [{"name": p.name, "address": p.address, "overlay_address": f"{overlay_address(p)}/24"}
             for p in mesh_hosts(lab) if p != host]
    result = run_module("mesh_info", {
        "mesh": "weave", "reqid": reqid(lab), "device": DEVICE, "local_address": host.address,
        "peers": peers, "netns": host.netns})
    return [f"{row['peer']}: {m}" for row in result["peers"] for m in row["missing"]]


def inbound_policy(lab, host, verb) -> None:
    lab.exec(host, "ip", "xfrm", "policy", verb, "src", "0.0.0.0/0", "dst", host.address,
             "proto", "udp", "dport", TUNNEL_PORT, "dir", "in",
             *(["tmpl", "src", "0.0.0.0", "dst", host.address, "proto", "esp",
                "reqid", reqid(lab), "mode", "transport"] if verb == "add" else []))


def test_the_mesh_converged_with_guards_first_and_its_inbound_policy(mesh):
    assert mesh.first_converge.returncode == 0, mesh.first_converge
    for h in mesh_hosts(mesh):
        for hook, chain in (("INPUT", "IN"), ("OUTPUT", "OUT"), ("POSTROUTING", "PST")):
            assert mangle_hook(mesh, h, hook)[0] == f"-A {hook} -j FASTDP-weave-{chain}", h.name
        assert "FASTDP" not in mesh.exec(h, "iptables-save", "-t", "filter").stdout
        policy = mesh.exec(h, "ip", "xfrm", "policy", "show", "dir", "in").stdout
        assert f"dst {h.address}/32 proto udp dport {TUNNEL_PORT}" in policy, policy
    assert broken(mesh, mesh_hosts(mesh)[0]) == []


def test_tunnel_traffic_a_foreign_sa_decrypted_from_a_non_peer_is_dropped_and_counted(mesh):
    h1, h4 = mesh.hosts[0], mesh.hosts[3]
    key = "0x" + secrets.token_bytes(36).hex()
    for host in (h1, h4):  # another owner's SA h4 -> h1, on both ends
        mesh.exec(host, "ip", "xfrm", "state", "add", "src", h4.address, "dst", h1.address,
                  "proto", "esp", "spi", hex(FOREIGN_SPI), "reqid", FOREIGN_REQID,
                  "mode", "transport", "aead", "rfc4106(gcm(aes))", key, 128)
    mesh.exec(h4, "ip", "xfrm", "policy", "add", "src", f"{h4.address}/32", "dst",
              f"{h1.address}/32", "proto", "udp", "dport", TUNNEL_PORT, "dir", "out", "tmpl",
              "src", h4.address, "dst", h1.address, "proto", "esp", "reqid", FOREIGN_REQID,
              "mode", "transport")
    # A valid VXLAN frame for h1's device, sent from a socket on h4: its policy encrypts it.
    frame = plaintext_vxlan(mesh, h1, h4.address, vni=VNI, inner_dst_mac=device_mac(mesh, h1),
                            inner_src=INNER_SRC, inner_dst=overlay_address(h1))
    payload = frame[14 + 20 + 8:]  # what follows the Ethernet, IPv4 and UDP headers

    def send() -> tuple[int, int, int, int]:
        """Three datagrams: (ESP of the foreign SA on h1's wire, plaintext tunnel packets
        there, packets the foreign SA decrypted, frames h1's device took)."""
        decrypted = sa_packets(mesh, h1, h4, h1, FOREIGN_REQID)
        send = (f"import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                f"for _ in range(3): s.sendto({payload!r}, ({h1.address!r}, {TUNNEL_PORT}))")
        with capture(mesh, h1, f"host {h4.address}") as wire, \
                capture(mesh, h1, f"src {INNER_SRC}", iface=DEVICE) as taken:
            mesh.exec(h4, "python3", "-c", send)
        return (wire.count(f"esp and src {h4.address}"), wire.count(TUNNEL),
                sa_packets(mesh, h1, h4, h1, FOREIGN_REQID) - decrypted,
                taken.count(f"src {INNER_SRC}"))

    dropped = counters(h1)["plaintext_dropped"]
    assert send() == (3, 0, 3, 0), "ESP on the wire, decrypted, and not taken"
    assert counters(h1)["plaintext_dropped"] == dropped + 3, "the strict guard dropped them"

    # Positive control: without the guard's inbound jump and the inbound policy, it is taken.
    mesh.exec(h1, "iptables", "-t", "mangle", "-D", "INPUT", "-j", "FASTDP-weave-IN")
    inbound_policy(mesh, h1, "delete")
    assert send() == (3, 0, 3, 3)
    # The second line alone: the mesh's inbound policy (the jump is still gone).
    inbound_policy(mesh, h1, "add")
    mismatch = xfrm_stat(mesh, h1, "XfrmInTmplMismatch")
    assert send() == (3, 0, 3, 0)
    assert xfrm_stat(mesh, h1, "XfrmInTmplMismatch") == mismatch + 3
    assert "h2: guard first in mangle INPUT: no jump" in broken(mesh, h1)


def test_a_local_users_datagram_to_a_peers_tunnel_port_is_never_encrypted(mesh):
    h1, h2, _ = mesh_hosts(mesh)
    sent = sa_packets(mesh, h1, h1, h2)
    with capture(mesh, h1, f"src {h1.address} and dst {h2.address}") as wire:
        assert ping(mesh, h1, h2), "control: the overlay, a local socket's ping, goes as ESP"
    assert wire.count("esp") > 0 and wire.count(TUNNEL) == 0
    assert sa_packets(mesh, h1, h1, h2) > sent

    sent, wide = sa_packets(mesh, h1, h1, h2), counters(h1)
    with capture(mesh, h1, f"src {h1.address} and dst {h2.address}") as wire:
        said = user_datagram(mesh, h1, h2.address, count=3)
    assert sa_packets(mesh, h1, h1, h2) == sent, "not encrypted to the peer"
    assert wire.count("esp") == 0 and wire.count(TUNNEL) == 0, "nothing left, in clear or not"
    assert counters(h1)["sockets_skipped"] == wide["sockets_skipped"] + 3
    assert counters(h1)["untransformed_dropped"] == wide["untransformed_dropped"] + 3
    assert said.count("Operation not permitted") == 3, said


def test_rules_ahead_of_the_guards_let_nothing_in_and_the_next_converge_puts_the_jumps_first(mesh):
    h1, h2, h3 = mesh_hosts(mesh)
    for chain in ("INPUT", "OUTPUT"):  # filter: where firewalls put their ACCEPTs
        mesh.exec(h2, "iptables", "-I", chain, "1", "-p", "udp", "--dport", TUNNEL_PORT,
                  "-j", "ACCEPT")
    for chain in ("INPUT", "POSTROUTING"):
        mesh.exec(h2, "iptables", "-t", "mangle", "-I", chain, "1", "-p", "udp", "--dport",
                  TUNNEL_PORT, "-j", "ACCEPT")
    table = mesh.exec(h2, "iptables-save", "-t", "mangle").stdout
    jump = "-A OUTPUT -j FASTDP-weave-OUT\n"
    mesh.exec(h2, "iptables-restore", "-T", "mangle",  # a reload puts a subnet ACCEPT first
              input=table.replace(jump, f"-A OUTPUT -d 198.51.100.0/24 -j ACCEPT\n{jump}"))
    assert {m for m in broken(mesh, h2) if "guard first" in m} == {
        f"{p}: guard first in mangle {hook}: behind {rule}" for p in ("h1", "h3")
        for hook, rule in (("INPUT", "-p udp -m udp --dport 6784 -j ACCEPT"),
                           ("OUTPUT", "-d 198.51.100.0/24 -j ACCEPT"),
                           ("POSTROUTING", "-p udp -m udp --dport 6784 -j ACCEPT"))}

    def spoof() -> tuple[int, int]:
        """Three plaintext VXLAN frames from h3 as h1 to h2: (seen on h2's wire, frames h2's
        device took)."""
        frame = plaintext_vxlan(mesh, h2, h1.address, vni=VNI, inner_dst_mac=device_mac(mesh, h2),
                                inner_src=INNER_SRC, inner_dst=overlay_address(h2))
        with capture(mesh, h2, f"{TUNNEL} and src {h1.address}") as wire, \
                capture(mesh, h2, f"src {INNER_SRC}", iface=DEVICE) as taken:
            send_frames(mesh, h3, [frame] * 3)
        return wire.count(TUNNEL), taken.count(f"src {INNER_SRC}")

    mismatch = xfrm_stat(mesh, h2, "XfrmInTmplMismatch")
    assert spoof() == (3, 0), "displaced in mangle, the inbound policy still drops them"
    assert xfrm_stat(mesh, h2, "XfrmInTmplMismatch") == mismatch + 3
    for a, b in ((h1, h2), (h2, h1)):
        with capture(mesh, h2, f"host {a.address} and host {b.address}") as wire:
            assert ping(mesh, a, b)
        assert wire.count("esp") > 0 and wire.count(TUNNEL) == 0

    run = converge(mesh)
    assert run.returncode == 0, run
    assert run.recap["h2"]["changed"] > 0 and run.recap["h3"]["changed"] == 0, run.recap
    assert run.recap["h1"]["changed"] > 0, "h1's inbound jump, removed above, is back too"
    for host in (h1, h2):
        for hook, chain in (("INPUT", "IN"), ("OUTPUT", "OUT"), ("POSTROUTING", "PST")):
            rules = mangle_hook(mesh, host, hook)
            assert rules[0] == f"-A {hook} -j FASTDP-weave-{chain}", (host.name, rules)
    assert len(mangle_hook(mesh, h2, "INPUT")) == 2, "the foreign rule stays, behind"
    assert broken(mesh, h2) == [] and broken(mesh, h1) == []

    dropped = counters(h2, h1)["plaintext_dropped"]
    assert spoof() == (3, 0)
    assert counters(h2, h1)["plaintext_dropped"] == dropped + 3, "the guard itself, first again"


def test_every_pair_still_carries_its_traffic_only_as_esp(mesh):
    for a, b in itertools.permutations(mesh_hosts(mesh), 2):
        with capture(mesh, a, f"host {a.address} and host {b.address}") as wire:
            assert ping(mesh, a, b), f"{a.name} -> {b.name}"
        assert wire.count(f"esp and src {a.address}") > 0 and wire.count(TUNNEL) == 0
