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
