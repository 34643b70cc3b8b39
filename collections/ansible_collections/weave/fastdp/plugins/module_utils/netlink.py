"""A plain netlink socket, framed with struct after the kernel's include/uapi/linux/netlink.h.

pyroute2 runs every message through an asyncio loop and decodes every attribute of it: at a
thousand objects that cost ten times the kernel's own tools. Here the caller packs and unpacks
its message bodies; this frames the requests, reads the answers (a dump's up to NLMSG_DONE)
and turns a refusal into NetlinkError with the kernel's extended ack message.

    with entered(netns), Netlink(NETLINK_XFRM) as nl:
        bodies = nl.request(XFRM_MSG_GETPOLICY, NLM_F_DUMP)
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: typing.Self came with Python 3.11
    from typing_extensions import Self

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_CAPPED = 0x100  # NLMSG_ERROR: only the request's header is echoed
NLM_F_ACK_TLVS = 0x200  # NLMSG_ERROR, NLMSG_DONE: extended ack attributes follow
NLM_F_REPLACE = 0x100  # a new object: replace an existing one
NLM_F_EXCL = 0x200  # ... or refuse if one exists
NLM_F_CREATE = 0x400  # ... create it if none exists
NLM_F_APPEND = 0x800  # ... add it to the end of the list (an FDB entry's destination)
NLM_F_DUMP = 0x300
NLA_TYPE_MASK = 0x3FFF  # an attribute's type without the nested/byte-order flags
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NLMSGERR_ATTR_MSG = 1
# The kernel makes dump datagrams of at most 32 KiB; one recv takes a whole datagram.
RECV_BYTES = 1 << 16

nlmsghdr = struct.Struct("=IHHII")  # length, type, flags, seq, pid
nlmsgerr = struct.Struct("=i")  # -errno (0: an ack); the request's header follows
nlattr = struct.Struct("=HH")  # length, type; the payload follows, padded to 4 bytes


class NetlinkError(OSError):
    """The kernel refused a request: ``errno`` and its extended ack ``message`` (or "")."""

    def __init__(self, code: int, message: str = ""):
        super().__init__(code, os.strerror(code))
        self.message = message

    def __str__(self) -> str:
        if self.message and self.message != self.strerror:
            return f"{self.strerror} ({self.message})"
        return self.strerror


def attr(attr_type: int, payload: bytes) -> bytes:
    """One attribute (struct nlattr, the payload, padding to 4 bytes)."""
    return nlattr.pack(nlattr.size + len(payload), attr_type) + payload + bytes(-len(payload) % 4)


def attributes(data, offset: int = 0, only: tuple[int, ...] = ()) -> dict:
    """The attributes in ``data`` from ``offset`` on: type -> payload (a slice of ``data``).
    With ``only``, those types alone, read up to the last of them: a dump of thousands of
    messages decodes what it uses, not every attribute after it."""
    found = {}
    while offset + nlattr.size <= len(data):
        length, attr_type = nlattr.unpack_from(data, offset)
        if length < nlattr.size:
            raise NetlinkError(errno.EBADMSG, f"attribute of length {length}")
        attr_type &= NLA_TYPE_MASK
        if not only or attr_type in only:
            found[attr_type] = data[offset + nlattr.size:offset + length]
            if len(found) == len(only):
                break
        offset += (length + 3) & ~3
    return found


def messages(data, seq: int) -> Iterator[tuple[int, memoryview]]:
    """(type, body) of each message in one datagram that answers request ``seq``.
    NLMSG_ERROR (an ack if its errno is 0) or NLMSG_DONE with an errno raises NetlinkError."""
    view = memoryview(data)
    offset = 0
    while offset + nlmsghdr.size <= len(view):
        length, msg_type, flags, msg_seq, _pid = nlmsghdr.unpack_from(view, offset)
        if length < nlmsghdr.size:
            raise NetlinkError(errno.EBADMSG, f"message of length {length}")
        body = view[offset + nlmsghdr.size:offset + length]
        offset += (length + 3) & ~3
        if msg_seq != seq:
            continue
        if msg_type in (NLMSG_ERROR, NLMSG_DONE) and len(body) >= nlmsgerr.size:
            (error,) = nlmsgerr.unpack_from(body)
            if error:
                raise NetlinkError(-error, _ext_ack(body, msg_type, flags))
        yield msg_type, body


def _ext_ack(body, msg_type: int, flags: int) -> str:
    """The kernel's message in an error: its attributes follow the errno and, in NLMSG_ERROR,
    the request (only its header when NLM_F_CAPPED)."""
    if not flags & NLM_F_ACK_TLVS:
        return ""
    offset = nlmsgerr.size
    if msg_type == NLMSG_ERROR:
        echoed = nlmsghdr.size if flags & NLM_F_CAPPED else nlmsghdr.unpack_from(body, offset)[0]
        offset += (echoed + 3) & ~3
    text = attributes(body, offset).get(NLMSGERR_ATTR_MSG)
    return bytes(text).split(b"\0", 1)[0].decode(errors="replace") if text else ""


class Netlink:
    """One netlink socket of ``protocol`` (NETLINK_*), opened in the current network namespace
    (it stays there). Errors echo only the request's header and carry the kernel's message."""

    def __init__(self, protocol: int):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  protocol)
        self.sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        self.sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        self.seq = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def request(self, msg_type: int, flags: int = 0, body: bytes = b"") -> list[memoryview]:
        """Send one request; the bodies of its answers: a dump's up to NLMSG_DONE, else the
        one reply (none for NLM_F_ACK). Answers to an earlier request, left unread after an
        error, are skipped by their sequence number."""
        self.seq += 1
        self.sock.send(nlmsghdr.pack(nlmsghdr.size + len(body), msg_type, NLM_F_REQUEST | flags,
                                     self.seq, 0) + body)
        answers = []
        while True:
            for answer_type, answer in messages(self.sock.recv(RECV_BYTES), self.seq):
                if answer_type in (NLMSG_DONE, NLMSG_ERROR):
                    return answers
                answers.append(answer)
                if flags & NLM_F_DUMP != NLM_F_DUMP:
                    return answers
