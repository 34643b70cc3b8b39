"""The state of every pair, the way `weave status connections` reports it.

A pair is "encrypted fastdp" when this host has an inbound SA from the peer, an outbound SA to
it and an outbound policy whose template uses that SA; otherwise it is "incomplete" and says
which part is missing. Counters come from the kernel's SA dump.
"""

from __future__ import annotations

import ipaddress
import os
import select
import socket
import struct
import time
from dataclasses import asdict, dataclass, field

from ansible_collections.weave.fastdp.plugins.module_utils import arguments
from ansible_collections.weave.fastdp.plugins.module_utils.guards import GuardError, guard_state
from ansible_collections.weave.fastdp.plugins.module_utils.netns import NetnsError, entered
from ansible_collections.weave.fastdp.plugins.module_utils.rtnl import Rtnl
from ansible_collections.weave.fastdp.plugins.module_utils.xfrm import XfrmError, XfrmSocket

ARGUMENT_SPEC = {
    "mesh": {"type": "str", "required": True},
    "reqid": {"type": "int", "required": True},
    "device": {"type": "str", "required": True},
    "local_address": {"type": "str", "required": True},
    "peers": {"type": "list", "elements": "dict", "required": True, "options": {
        "name": {"type": "str", "required": True},
        "address": {"type": "str", "required": True},
        "overlay_address": {"type": "str"},
    }},
    "verify": {"type": "bool", "default": False},
    **arguments.NETNS,
}


@dataclass
class SAView:
    """What the status needs of one SA (never its key)."""

    src: str
    dst: str
    spi: int
    bytes: int = 0
    packets: int = 0
    replay_errors: int = 0
    integrity_errors: int = 0


@dataclass
class PeerStatus:
    peer: str
    address: str
    mode: str
    missing: list[str] = field(default_factory=list)
    spi_in: int | None = None
    spi_out: int | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    packets_out: int = 0
    replay_errors: int = 0
    integrity_errors: int = 0
    mtu: int | None = None


def pair_status(peers, local_address, sas: list[SAView], policy_spis: dict[str, int],
                guarded: set[str], mtu: int | None) -> list[dict]:
    """``policy_spis``: peer address -> SPI of the outbound policy's template;
    ``guarded``: peer addresses the guard chains cover."""
    rows = []
    for peer in peers:
        address = peer["address"]
        inbound = [sa for sa in sas if sa.src == address and sa.dst == local_address]
        outbound = {sa.spi: sa for sa in sas if sa.src == local_address and sa.dst == address}
        policy_spi = policy_spis.get(address)
        missing = []
        if not inbound:
            missing.append("inbound SA")
        if not outbound:
            missing.append("outbound SA")
        if policy_spi is None:
            missing.append("outbound policy")
        elif outbound and policy_spi not in outbound:
            missing.append(f"outbound SA for the policy's SPI {policy_spi:#010x}")
        if address not in guarded:
            missing.append("guard rules")
        used_out = outbound.get(policy_spi)
        newest_in = max(inbound, key=lambda sa: sa.packets, default=None)
        rows.append(PeerStatus(
            peer=peer["name"], address=address,
            mode="encrypted fastdp" if not missing else "incomplete",
            missing=missing,
            spi_in=newest_in.spi if newest_in else None,
            spi_out=policy_spi,
            bytes_in=sum(sa.bytes for sa in inbound), packets_in=sum(sa.packets for sa in inbound),
            bytes_out=used_out.bytes if used_out else 0,
            packets_out=used_out.packets if used_out else 0,
            replay_errors=sum(sa.replay_errors for sa in inbound),
            integrity_errors=sum(sa.integrity_errors for sa in inbound),
            mtu=mtu,
        ))
    return [asdict(r) for r in rows]


COLUMNS = [("peer", "PEER"), ("address", "ADDRESS"), ("mode", "MODE"), ("spi_in", "SPI IN"),
           ("spi_out", "SPI OUT"), ("packets_in", "PKTS IN"), ("packets_out", "PKTS OUT"),
           ("bytes_in", "BYTES IN"), ("bytes_out", "BYTES OUT"), ("replay_errors", "REPLAY"),
           ("integrity_errors", "INTEGRITY"), ("mtu", "MTU")]


def table(rows: list[dict]) -> str:
    def cell(row, key):
        value = row[key]
        if key.startswith("spi") and value is not None:
            return f"{value:#010x}"
        if key == "mode" and row["missing"]:
            return f"incomplete (no {', '.join(row['missing'])})"
        return "-" if value is None else str(value)

    cells = [[title for _key, title in COLUMNS]] + [[cell(r, k) for k, _title in COLUMNS]
                                                    for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells)


# --- reading the kernel -------------------------------------------------------------------

@dataclass
class Observed:
    """One look at the host: the mesh's SAs (by reqid), its outbound policies' SPIs, the peers
    its guard chains cover and the VXLAN device's MTU."""

    sas: list[SAView]
    policy_spis: dict[str, int]
    guarded: set[str]
    mtu: int | None


def observe(*, reqid: int, mesh: str, device: str, local_address: str,
            netns: str | None) -> Observed:
    """One SA dump, one policy dump, one iptables-save, one link lookup."""
    with XfrmSocket(netns) as xfrm:
        sas = [SAView(sa.src, sa.dst, sa.spi, sa.bytes, sa.packets, sa.replay_errors,
                      sa.integrity_failures) for sa in xfrm.sas() if sa.reqid == reqid]
        policy_spis = {t.dst: t.spi for p in xfrm.policies() if p.dir == "out"
                       for t in p.templates if t.reqid == reqid}
    ipv = ipaddress.ip_address(local_address).version
    guarded = {peer for peer in guard_state(mesh, ipv, netns) if peer != "*"}
    return Observed(sas, policy_spis, guarded, link_mtu(device, netns))


def link_mtu(device: str, netns: str | None) -> int | None:
    with entered(netns), Rtnl() as rtnl:
        link = rtnl.link(name=device)
    return link.mtu if link else None


# --- verification: traffic to every peer must move its ESP counters -----------------------

def echo(targets: list[str], *, attempts: int = 5, first_wait: float = 0.5) -> set[str]:
    """ICMP echo to each target over raw sockets (root); the targets that answered. Several
    attempts, since the first packet to a peer waits for ARP across the overlay; each resends
    to the targets still silent, then waits twice as long as the one before (0.5 to 8 s, 15.5 s
    in all, spent only while a target is silent). With 20 lab hosts verifying at once on 2
    emulated CPUs the answers took up to 3.2 s, beyond the 2 s the echo used to wait."""
    answered = set()
    ident = os.getpid() & 0xFFFF
    socks = {4: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
             6: socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)}
    try:
        for seq in range(attempts):
            for target in targets:
                if target not in answered:
                    version = ipaddress.ip_address(target).version
                    try:
                        socks[version].sendto(_echo_request(version, ident, seq), (target, 0))
                    except OSError:  # no route to the overlay: the pair is reported broken
                        continue
            deadline = time.monotonic() + first_wait * 2 ** seq
            while (left := deadline - time.monotonic()) > 0 and answered != set(targets):
                ready, _writable, _errored = select.select(list(socks.values()), [], [], left)
                for sock in ready:
                    data, source = sock.recvfrom(2048)
                    if _is_echo_reply(data, sock.family, ident):
                        answered.add(ipaddress.ip_address(source[0]).compressed)
            if answered == set(targets):
                break
    finally:
        for sock in socks.values():
            sock.close()
    return answered


def _echo_request(version: int, ident: int, seq: int) -> bytes:
    kind = 8 if version == 4 else 128  # ICMPv6: the kernel fills in the checksum
    payload = b"weave.fastdp verify"
    header = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
    if version == 6:
        return header + payload
    return struct.pack("!BBHHH", kind, 0, _checksum(header + payload), ident, seq) + payload


def _is_echo_reply(data: bytes, family: int, ident: int) -> bool:
    if family == socket.AF_INET:
        data = data[(data[0] & 0x0F) * 4:]  # raw IPv4 sockets deliver the IP header
        reply = 0
    else:
        reply = 129
    return len(data) >= 8 and data[0] == reply and struct.unpack("!H", data[4:6])[0] == ident


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def diagnose(row: dict, before: dict | None, answered: bool) -> str | None:
    """Why a pair is broken, from its status row after the echo and the row before it; None
    when the echo was answered and the pair's ESP counters moved both ways."""
    if row["missing"]:
        return f"incomplete: no {', '.join(row['missing'])}"
    before = before or {}
    moved = {k: row[k] - before.get(k, 0) for k in
             ("packets_out", "packets_in", "integrity_errors", "replay_errors")}
    if moved["integrity_errors"]:
        return ("key mismatch: the inbound SA's integrity check failed "
                f"{moved['integrity_errors']} times (different password or stale nonces)")
    if not moved["packets_out"]:
        return ("no traffic went through the outbound SA: missing or mismatched outbound "
                "policy (mark, reqid or SPI)")
    if not answered or not moved["packets_in"]:
        return ("ESP went out but nothing came back over ESP: ESP (IP protocol 50) blocked on "
                "the path (cloud firewall?) or a key mismatch at the peer (see its status)")
    return None


# --- the step: read every pair, and with verify, send traffic and see what moved ------------

def report(module, p: dict) -> dict:
    """The rows of every pair; with ``verify``, ``broken`` names each pair whose echo went
    unanswered or whose ESP counters did not move, and why. Changes nothing."""

    def rows():
        seen = observe(reqid=p["reqid"], mesh=p["mesh"], device=p["device"],
                       local_address=p["local_address"], netns=p["netns"])
        return pair_status(p["peers"], p["local_address"], seen.sas, seen.policy_spis,
                           seen.guarded, seen.mtu)

    broken = []
    try:
        before = rows()
        if p["verify"]:
            overlay = {peer["name"]: (peer["overlay_address"] or "").split("/")[0]
                       for peer in p["peers"]}
            with entered(p["netns"]):
                answered = echo([a for a in overlay.values() if a])
            after = rows()
            for row, old in zip(after, before):
                why = diagnose(row, old, overlay[row["peer"]] in answered)
                if why:
                    broken.append(f"{row['peer']} ({row['address']}): {why}")
            before = after
    except (XfrmError, GuardError, NetnsError, OSError) as exc:
        raise arguments.Failed(str(exc)) from exc
    return {"changed": False, "peers": before, "table": table(before), "broken": broken}
