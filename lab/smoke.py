"""The lab's smoke scenario: Weave's encrypted fast datapath made by hand between two hosts.

VXLAN (VNI 42, UDP 6784) over the underlay, ESP transport SAs with rfc4106(gcm(aes)) both
ways, an out policy selecting UDP marked 0x20000/0x20000 and an iptables mangle OUTPUT rule
putting that mark on tunnel packets. Passes when a ping crosses the overlay and a capture on
the underlay holds ESP both ways and nothing to UDP 6784. Needs ESP: run it in the guest.
"""

from __future__ import annotations

import re
import secrets
import signal
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from lab.capture import TUNNEL_PORT, capture
from lab.hosts import Lab, LabHost, overlay_address

VXLAN_DEVICE = "vxlan42"
VNI = 42
MARK = "0x20000"
REQID = 1  # the same on the SAs and the policy templates: a mismatch silently drops all
AEAD = "rfc4106(gcm(aes))"
OVERLAY_MTU = 1376


def add_vxlan(lab: Lab, host: LabHost, peer: LabHost, *, mtu: int = OVERLAY_MTU,
              dev: str = VXLAN_DEVICE, vni: int = VNI, overlay: str | None = None) -> None:
    """A VXLAN device sending everything to ``peer`` (no learning, all-zero FDB entry);
    ``overlay`` is its ADDRESS/PREFIX (default the host's overlay address in a /24)."""
    lab.exec(host, "ip", "link", "add", dev, "type", "vxlan", "id", vni, "dstport", TUNNEL_PORT,
             "local", host.address, "dev", host.iface, "nolearning")
    lab.exec(host, "bridge", "fdb", "append", "00:00:00:00:00:00", "dev", dev,
             "dst", peer.address)
    lab.exec(host, "ip", "addr", "add", overlay or f"{overlay_address(host)}/24", "dev", dev)
    lab.exec(host, "ip", "link", "set", dev, "mtu", mtu, "up")


def add_sa(lab: Lab, host: LabHost, src: LabHost, dst: LabHost, spi: int, key: bytes, *,
           aead: str = AEAD) -> None:
    """The ESP transport SA src->dst, as installed on ``host`` (one of the two ends); ``key``
    is the AEAD's key and 4-byte salt (36 bytes for AES-256-GCM and ChaCha20-Poly1305)."""
    lab.exec(host, "ip", "xfrm", "state", "add", "src", src.address, "dst", dst.address,
             "proto", "esp", "spi", hex(spi), "reqid", REQID, "mode", "transport",
             "aead", aead, "0x" + key.hex(), 128, "replay-window", 256, "flag", "esn")


def add_out_policy(lab: Lab, src: LabHost, dst: LabHost, spi: int) -> None:
    """Marked UDP src->dst goes through the SA: the mark, not the port, selects it (the
    VXLAN driver leaves the port out of the flow)."""
    lab.exec(src, "ip", "xfrm", "policy", "add", "src", f"{src.address}/32",
             "dst", f"{dst.address}/32", "proto", "udp", "dir", "out",
             "mark", MARK, "mask", MARK,
             "tmpl", "src", src.address, "dst", dst.address, "proto", "esp", "spi", hex(spi),
             "reqid", REQID, "mode", "transport")


def mark_tunnel_traffic(lab: Lab, src: LabHost, dst: LabHost) -> None:
    lab.exec(src, "iptables", "-w", "-t", "mangle", "-A", "OUTPUT", "-p", "udp",
             "-d", f"{dst.address}/32", "--dport", TUNNEL_PORT,
             "-j", "MARK", "--set-xmark", f"{MARK}/{MARK}")


def ping(lab: Lab, src: LabHost, dst: LabHost, count: int = 3) -> bool:
    """True when at least one echo reply crossed the overlay."""
    return lab.exec(src, "ping", "-c", count, "-i", "0.2", "-W", 2, overlay_address(dst),
                    check=False).returncode == 0


class ContinuousPing:
    """``ping -i 0.01`` from ``src`` to ``dst`` across the overlay while the block runs; then
    ``sent`` and ``lost``, the numbers (from 1) of the echo requests that got no reply."""

    def __init__(self, src: LabHost, dst: LabHost):
        self.argv = ["ip", "netns", "exec", src.netns, "ping", "-i", "0.01",
                     overlay_address(dst)]
        self.sent, self.lost = 0, []

    def __enter__(self):
        self._output = tempfile.TemporaryFile("w+")  # a pipe would fill and stall ping
        self._ping = subprocess.Popen(self.argv, stdout=self._output, text=True)
        return self

    def __exit__(self, *exc):
        self._ping.send_signal(signal.SIGINT)
        self._ping.wait()
        self._output.seek(0)
        output = self._output.read()
        self._output.close()
        self.sent = int(re.search(r"(\d+) packets transmitted", output)[1])
        self.lost = unanswered(output, self.sent)


def unanswered(output: str, sent: int) -> list[int]:
    """The echo requests of ``ping`` output (one line per reply) that got no reply, numbered
    from 1, leaving out the last: ping stops without waiting for its reply. icmp_seq wraps
    at 65536 (11 minutes at 100 a second); replies come in order, so the wraps are undone."""
    answered, wraps, previous = set(), 0, 0
    for seq in map(int, re.findall(r"icmp_seq=(\d+)", output)):
        if seq < previous - 32768:
            wraps += 1
        previous = seq
        answered.add(wraps * 65536 + seq)
    return [n for n in range(1, sent) if n not in answered]


@dataclass
class SmokeResult:
    ping: bool
    esp_out: int
    esp_in: int
    plaintext: int

    @property
    def passed(self) -> bool:
        return self.ping and self.esp_out > 0 and self.esp_in > 0 and self.plaintext == 0


def run_smoke(*, mismatched_key: bool = False, name: str = "wfsmoke",
              log: Callable[[str], None] = print) -> SmokeResult:
    """``mismatched_key`` gives the receiving end of h1->h2 a different key than the sender:
    the scenario must then report failure."""
    with Lab(count=2, name=name, sshd=False) as lab:
        a, b = lab.hosts
        log(f"lab {name}: {a.netns} {a.address}, {b.netns} {b.address}")
        for host, peer in ((a, b), (b, a)):
            add_vxlan(lab, host, peer)
        log(f"vxlan: VNI {VNI}, UDP {TUNNEL_PORT}, overlay {overlay_address(a)} <-> "
            f"{overlay_address(b)}")
        for src, dst, spi in ((a, b, 0x101), (b, a, 0x102)):
            key = secrets.token_bytes(36)
            add_sa(lab, src, src, dst, spi, key)
            wrong = mismatched_key and src is a
            add_sa(lab, dst, src, dst, spi, secrets.token_bytes(36) if wrong else key)
            add_out_policy(lab, src, dst, spi)
            mark_tunnel_traffic(lab, src, dst)
            log(f"esp: {src.name}->{dst.name} spi {spi:#x} reqid {REQID} {AEAD}"
                + (" (receiver has a different key)" if wrong else ""))
        with capture(lab, a) as cap:
            reached = ping(lab, a, b)
        log(f"ping {overlay_address(a)} -> {overlay_address(b)}: {'ok' if reached else 'FAILED'}")
        result = SmokeResult(
            ping=reached,
            esp_out=cap.count(f"esp and src {a.address} and dst {b.address}"),
            esp_in=cap.count(f"esp and src {b.address} and dst {a.address}"),
            plaintext=cap.count(f"udp port {TUNNEL_PORT}"),
        )
        log(f"capture on {a.netns} {a.iface}: ESP {a.name}->{b.name} {result.esp_out}, "
            f"{b.name}->{a.name} {result.esp_in}, UDP {TUNNEL_PORT} {result.plaintext}")
    log(f"smoke: {'PASS' if result.passed else 'FAIL'}")
    return result
