"""What an attacker on the underlay can do: put frames on a lab host's wire.

The socket is opened inside the host's network namespace and keeps sending from there after
the namespace is left, so no extra process (and no slow scapy import in the guest) is needed.
"""

from __future__ import annotations

import socket

from lab.hosts import Lab, LabHost

ESP_HEADER = 14 + 20  # Ethernet + IPv4 (no options) before the ESP header's SPI


def send_frames(lab: Lab, host: LabHost | str, frames: list[bytes]) -> None:
    """Each frame as-is (Ethernet header included) out of the host's underlay interface."""
    from ansible_collections.weave.fastdp.plugins.module_utils.netns import entered

    h = lab.host(host)
    with entered(h.netns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        sock.bind((h.iface, 0))
        for frame in frames:
            sock.send(frame)
    finally:
        sock.close()


def esp_sequence(frame: bytes) -> int:
    return int.from_bytes(frame[ESP_HEADER + 4:ESP_HEADER + 8], "big")


def flip_bit(frame: bytes, bit: int) -> bytes:
    """The frame with one bit of its ESP sequence number flipped (bit 0: least significant).
    The sequence number is authenticated, so the ICV no longer verifies; flipping a high bit
    moves the packet ahead of the replay window, so it reaches the integrity check."""
    out = bytearray(frame)
    byte = ESP_HEADER + 7 - bit // 8
    out[byte] ^= 1 << (bit % 8)
    return bytes(out)


def plaintext_vxlan(lab: Lab, to: LabHost | str, src: str, *, vni: int, inner_dst_mac: str,
                    inner_src: str, inner_dst: str, port: int = 6784) -> bytes:
    """One plaintext VXLAN frame for ``to``'s underlay, from the outer address ``src`` (any:
    spoofed), carrying an ICMP echo from ``inner_src`` to ``inner_dst`` at ``inner_dst_mac``
    (the receiving device's MAC, so that the device takes it). The VXLAN header has only the
    I flag (0x08), and the inner source MAC is no device's (a device refuses a frame from
    another remote than the one its FDB holds for that MAC): a valid frame, which the device
    accepts when nothing drops it first."""
    from scapy.layers.inet import ICMP, IP, UDP  # scapy takes seconds to import in the guest
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN

    h = lab.host(to)
    mac = lab.exec(h, "cat", f"/sys/class/net/{h.iface}/address").stdout.strip()
    return bytes(Ether(dst=mac, src="02:00:5e:00:53:01")
                 / IP(src=src, dst=h.address) / UDP(sport=40000, dport=port)
                 / VXLAN(flags=0x08, vni=vni)
                 / Ether(dst=inner_dst_mac, src="02:00:5e:00:53:fe")
                 / IP(src=inner_src, dst=inner_dst) / ICMP())


def user_datagram(lab: Lab, host: LabHost | str, dst: str, port: int = 6784, *,
                  uid: int = 65534, count: int = 1) -> str:
    """``count`` UDP datagrams to ``dst``:``port`` from an unprivileged user's socket
    (``uid``, nobody by default) on ``host``; what the sends said (a dropped one: EPERM)."""
    import sys

    send = (f"import socket\ns = socket.socket(socket.AF_INET6 if ':' in {dst!r} else "
            f"socket.AF_INET, socket.SOCK_DGRAM)\nfor _ in range({count}):\n"
            f"    try: s.sendto(b'not the kernel' * 8, ({dst!r}, {port}))\n"
            "    except OSError as e: print(e)")  # a dropped datagram: EPERM
    return lab.exec(host, "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                    sys.executable, "-I", "-c", send).stdout
