"""Packet capture on a lab host's underlay: what really crossed the wire.

``count`` asks tcpdump itself (cheap, fine in the slow guest); ``packets`` parses the pcap
with scapy for tests that look inside packets.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import time
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

from lab.hosts import Lab, LabError, LabHost

TUNNEL_PORT = 6784  # Weave's fastdp VXLAN port
_serial = itertools.count(1)


class Capture:
    def __init__(self, path: Path):
        self.path = path

    def count(self, bpf: str) -> int:
        """Packets of the capture matching a tcpdump filter, e.g. ``esp and src 198.51.100.11``."""
        proc = subprocess.run(["tcpdump", "-n", "-r", str(self.path), bpf], check=True,
                              capture_output=True, text=True)
        return len(proc.stdout.splitlines())

    @cached_property
    def packets(self) -> list:
        """scapy packets; UDP 6784 decodes as VXLAN, so the overlay's frames are visible."""
        from scapy.layers.inet import UDP  # scapy takes seconds to import in the guest
        from scapy.layers.vxlan import VXLAN
        from scapy.packet import bind_layers
        from scapy.utils import rdpcap

        bind_layers(UDP, VXLAN, dport=TUNNEL_PORT)
        return list(rdpcap(str(self.path)))


@contextmanager
def capture(lab: Lab, host: LabHost | str | None, bpf: str = "", *, settle: float = 0.3):
    """Run tcpdump on the host's eth0 (``host=None``: on the lab's bridge, where every host's
    underlay traffic passes) for the duration of the block; yields a Capture whose results
    are complete once the block has exited. ``settle`` lets late packets arrive."""
    if host is None:
        where, iface, name = [], lab.bridge, "bridge"
    else:
        h = lab.host(host)
        where, iface, name = ["ip", "netns", "exec", h.netns], h.iface, h.name
    path = lab.work_dir / f"{name}-{next(_serial)}.pcap"
    # -Z root: tcpdump would drop to its own user, which cannot write the lab's work dir.
    proc = subprocess.Popen(
        [*where, "tcpdump", "-i", iface, "-n", "--immediate-mode", "-U", "-Z", "root",
         "-w", str(path), *([bpf] if bpf else [])],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()  # tcpdump says "listening on ..." once it captures
        if "listening on" not in line:
            proc.wait()
            raise LabError(f"tcpdump on {name} {iface}: {line}{proc.stderr.read()}")
        result = Capture(path)
        yield result
        time.sleep(settle)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.communicate()
