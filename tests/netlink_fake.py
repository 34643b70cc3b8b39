"""A stand-in for the kernel's end of a netlink socket: module_utils.netlink.Netlink opens a
FakeSocket (``install``), which records what is sent and answers each recv with the next of the
datagrams it was given. ``message`` and ``error`` build those datagrams byte by byte after
include/uapi/linux/netlink.h, independently of module_utils.netlink."""

from __future__ import annotations

import struct

from ansible_collections.weave.fastdp.plugins.module_utils import netlink


class FakeSocket:
    def __init__(self, datagrams):
        self.datagrams = list(datagrams)
        self.sent, self.options, self.closed = [], {}, False

    def setsockopt(self, level, name, value):
        self.options[(level, name)] = value

    def send(self, data):
        self.sent.append(bytes(data))
        return len(data)

    def recv(self, size):
        assert size >= 32768, "a dump datagram may be 32 KiB"
        return self.datagrams.pop(0)

    def close(self):
        self.closed = True


def install(monkeypatch, *datagrams) -> FakeSocket:
    """The next netlink socket opened is a FakeSocket answering with ``datagrams``."""
    fake = FakeSocket(datagrams)
    monkeypatch.setattr(netlink.socket, "socket", lambda *args: fake)
    return fake


def message(msg_type, body=b"", *, seq, flags=0x2):
    """One netlink message (struct nlmsghdr, body, padding to 4 bytes); flags NLM_F_MULTI."""
    return struct.pack("=IHHII", 16 + len(body), msg_type, flags, seq, 4321) + body + bytes(
        -len(body) % 4)


def done(seq, errno=0):
    return message(3, struct.pack("=i", -errno), seq=seq)


def error(seq, errno, text=None, request=b"\0" * 16):
    """NLMSG_ERROR: errno (0: an ack), the request's header (NETLINK_CAP_ACK) and, with
    ``text``, the extended ack NLMSGERR_ATTR_MSG (flags NLM_F_CAPPED | NLM_F_ACK_TLVS)."""
    body = struct.pack("=i", -errno) + request[:16]
    if text is None:
        return message(2, body, seq=seq, flags=0x100)
    msg = text.encode() + b"\0"
    attr = struct.pack("=HH", 4 + len(msg), 1) + msg + bytes(-len(msg) % 4)
    return message(2, body + attr, seq=seq, flags=0x300)
