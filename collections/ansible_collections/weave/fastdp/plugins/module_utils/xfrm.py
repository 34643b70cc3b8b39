"""The kernel's XFRM SAs and policies over NETLINK_XFRM, on pyroute2's netlink machinery.

pyroute2 0.9 has no XFRM SA/policy messages, so they are declared here after the kernel's
include/uapi/linux/xfrm.h: fixed structs as pyroute2 ``nlmsg`` field lists with explicit padding
(byte-exact: xfrm_usersa_info 224 bytes, xfrm_userpolicy_info 168, xfrm_user_tmpl 64), attributes
as ``nla`` classes. The kernel reports them as plain dataclasses (SA, Policy) that compare what
matters and never show a key: ``repr``/``str`` leave it out, ``fingerprint`` names it.

    with XfrmSocket(netns="lab-h1") as xfrm:
        sas, policies = xfrm.sas(), xfrm.policies()
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import os
import socket
from dataclasses import dataclass, field
from typing import ClassVar, Self

from ansible_collections.weave.fastdp.plugins.module_utils.netns import entered

try:  # pyroute2 is needed on the host only, so the controller can import the dataclasses
    from pyroute2.netlink import (
        NETLINK_XFRM,
        NLM_F_ACK,
        NLM_F_CREATE,
        NLM_F_DUMP,
        NLM_F_EXCL,
        NLM_F_REQUEST,
        nla,
        nlmsg,
        nlmsg_base,
        nlmsg_decoder_generic,
        nlmsg_encoder_generic,
    )
    from pyroute2.netlink.exceptions import NetlinkError
    from pyroute2.netlink.marshal import Marshal
    from pyroute2.netlink.nlsocket import AsyncNetlinkSocket, NetlinkSocket
except ImportError:  # pragma: no cover - reported when a socket is opened
    nlmsg = nla = nlmsg_base = object
    nlmsg_encoder_generic = nlmsg_decoder_generic = object
    NetlinkSocket = AsyncNetlinkSocket = Marshal = object
    NetlinkError = OSError

XFRM_MSG_NEWSA = 0x10
XFRM_MSG_DELSA = 0x11
XFRM_MSG_GETSA = 0x12
XFRM_MSG_NEWPOLICY = 0x13
XFRM_MSG_DELPOLICY = 0x14
XFRM_MSG_GETPOLICY = 0x15
XFRM_MSG_UPDPOLICY = 0x19
# XFRM_MSG_UPDSA (0x1a) only updates lifetimes, encapsulation and the output mark of an SA:
# nothing this collection compares, so a changed SA is always deleted and added again.
XFRM_MSG_UPDSA = 0x1A

XFRM_STATE_ESN = 128
XFRM_INF = 0xFFFFFFFFFFFFFFFF
XFRMA_REPLAY_ESN_MAX = 4096  # packets: the kernel's limit on an ESN replay bitmap
IPPROTO_ESP = 50
MODES = {0: "transport", 1: "tunnel"}
DIRECTIONS = {0: "in", 1: "out", 2: "fwd"}
PROTOCOLS = {0: "any", 1: "icmp", 6: "tcp", 17: "udp", 50: "esp", 58: "ipv6-icmp"}
# AEAD name -> key bytes (cipher key + 4-byte salt), as RFC 4106 / RFC 7634 define them.
AEAD_KEY_BYTES = {"rfc4106(gcm(aes))": 36, "rfc7539esp(chacha20,poly1305)": 36}
ICV_BITS = 128
ESP_MISSING = "ESP (esp4/esp6, CONFIG_INET_ESP)"


class XfrmError(Exception):
    """A request the kernel refused, or an SA/policy that cannot be built (names the field)."""


# --- wire format ----------------------------------------------------------------------------

def _selector(prefix: str = "sel_") -> tuple:
    """struct xfrm_selector, 56 bytes."""
    return tuple((f"{prefix}{name}" if not name.startswith("__") else name, fmt) for name, fmt in (
        ("daddr", "16s"), ("saddr", "16s"),
        ("dport", ">H"), ("dport_mask", ">H"), ("sport", ">H"), ("sport_mask", ">H"),
        ("family", "H"), ("prefixlen_d", "B"), ("prefixlen_s", "B"), ("proto", "B"),
        ("__pad", "3x"), ("ifindex", "i"), ("user", "I")))


_LIFETIME_CFG = tuple((f"lft_{name}", "Q") for name in (  # struct xfrm_lifetime_cfg, 64 bytes
    "soft_byte_limit", "hard_byte_limit", "soft_packet_limit", "hard_packet_limit",
    "soft_add_expires_seconds", "hard_add_expires_seconds",
    "soft_use_expires_seconds", "hard_use_expires_seconds"))
_LIFETIME_CUR = tuple((f"curlft_{name}", "Q") for name in (  # struct xfrm_lifetime_cur, 32
    "bytes", "packets", "add_time", "use_time"))
_NO_LIMITS = {name: XFRM_INF for name, _ in _LIFETIME_CFG if "limit" in name}

_ATTRS = (
    (1, "XFRMA_ALG_AUTH", "hex"),
    (2, "XFRMA_ALG_CRYPT", "xfrm_algo"),
    (5, "XFRMA_TMPL", "xfrm_user_tmpls"),
    (9, "XFRMA_LTIME_VAL", "hex"),
    (10, "XFRMA_REPLAY_VAL", "hex"),
    (15, "XFRMA_LASTUSED", "uint64"),
    (18, "XFRMA_ALG_AEAD", "xfrm_algo_aead"),
    (21, "XFRMA_MARK", "xfrm_mark"),
    (23, "XFRMA_REPLAY_ESN_VAL", "xfrm_replay_state_esn"),
)


class xfrm_user_tmpl(nlmsg_base, nlmsg_encoder_generic, nlmsg_decoder_generic):
    """struct xfrm_user_tmpl, 64 bytes (an element of XFRMA_TMPL, no header of its own)."""

    header = None
    fields = (("daddr", "16s"), ("spi", ">I"), ("proto", "B"), ("__pad", "3x"),
              ("family", "H"), ("__pad", "2x"), ("saddr", "16s"), ("reqid", "I"),
              ("mode", "B"), ("share", "B"), ("optional", "B"), ("__pad", "x"),
              ("aalgos", "I"), ("ealgos", "I"), ("calgos", "I"))


class _xfrm_attrs:
    """The XFRMA_* attributes of SA and policy messages."""

    nla_map = _ATTRS

    class xfrm_algo(nla):
        """struct xfrm_algo without a key (the probe's null cipher)."""

        fields = (("alg_name", "64s"), ("alg_key_len", "I"))

    class xfrm_mark(nla):
        fields = (("v", "I"), ("m", "I"))

    class xfrm_algo_aead(nla):
        """struct xfrm_algo_aead: 72 bytes, then the key."""

        fields = (("alg_name", "64s"), ("alg_key_len", "I"), ("alg_icv_len", "I"))

        def encode(self):
            nla.encode(self)
            _append_tail(self, self["key"])

        def decode(self):
            nla.decode(self)
            self["key"] = bytes(self.data[self.offset + 76:self.offset + self.length])

    class xfrm_replay_state_esn(nla):
        """struct xfrm_replay_state_esn: 24 bytes, then bmp_len 32-bit bitmap words."""

        fields = (("bmp_len", "I"), ("oseq", "I"), ("seq", "I"), ("oseq_hi", "I"),
                  ("seq_hi", "I"), ("replay_window", "I"))

        def encode(self):
            nla.encode(self)
            _append_tail(self, bytes(4 * self["bmp_len"]))

    class xfrm_user_tmpls(nla):
        """XFRMA_TMPL: one or more struct xfrm_user_tmpl back to back."""

        fields = ()

        def encode(self):
            nla.encode(self)
            tail = bytearray()
            for value in self["templates"]:
                tmpl = xfrm_user_tmpl()
                tmpl.update(value)
                tmpl.encode()
                tail += tmpl.data
            _append_tail(self, bytes(tail))

        def decode(self):
            nla.decode(self)
            self["templates"] = []
            for offset in range(self.offset + 4, self.offset + self.length, 64):
                tmpl = xfrm_user_tmpl(self.data, offset=offset)
                tmpl.decode()
                self["templates"].append(dict(tmpl))


def _append_tail(attr, tail: bytes) -> None:
    """Variable-length tail of an attribute (key, bitmap, templates) after its fixed fields."""
    attr.data.extend(tail)
    attr.length = attr["header"]["length"] = attr["header"]["length"] + len(tail)
    attr.data[attr.offset:attr.offset + 2] = attr.length.to_bytes(2, "little")


class xfrm_usersa_info(_xfrm_attrs, nlmsg):
    """struct xfrm_usersa_info, 224 bytes (NEWSA, UPDSA; the dump's answers)."""

    fields = _selector() + (
        ("id_daddr", "16s"), ("id_spi", ">I"), ("id_proto", "B"), ("__pad", "3x"),
        ("saddr", "16s"),
    ) + _LIFETIME_CFG + _LIFETIME_CUR + (
        ("stats_replay_window", "I"), ("stats_replay", "I"), ("stats_integrity_failed", "I"),
        ("seq", "I"), ("reqid", "I"), ("family", "H"), ("mode", "B"), ("replay_window", "B"),
        ("flags", "B"), ("__pad", "7x"))


class xfrm_usersa_id(_xfrm_attrs, nlmsg):
    """struct xfrm_usersa_id, 24 bytes (DELSA, GETSA of one SA)."""

    fields = (("daddr", "16s"), ("spi", ">I"), ("family", "H"), ("proto", "B"), ("__pad", "x"))


class xfrm_userpolicy_info(_xfrm_attrs, nlmsg):
    """struct xfrm_userpolicy_info, 168 bytes (NEWPOLICY, UPDPOLICY; the dump's answers)."""

    fields = _selector() + _LIFETIME_CFG + _LIFETIME_CUR + (
        ("priority", "I"), ("index", "I"), ("dir", "B"), ("action", "B"), ("flags", "B"),
        ("share", "B"), ("__pad", "4x"))


class xfrm_userpolicy_id(_xfrm_attrs, nlmsg):
    """struct xfrm_userpolicy_id, 64 bytes (DELPOLICY, GETPOLICY of one policy)."""

    fields = _selector() + (("index", "I"), ("dir", "B"), ("__pad", "3x"))


class _MarshalXfrm(Marshal):
    msg_map: ClassVar[dict] = {XFRM_MSG_NEWSA: xfrm_usersa_info, XFRM_MSG_NEWPOLICY: xfrm_userpolicy_info}


class _AsyncXfrmNetlink(AsyncNetlinkSocket):
    marshal_class = _MarshalXfrm


class _XfrmNetlink(NetlinkSocket):
    async_class = _AsyncXfrmNetlink


# --- what the kernel holds, as values ------------------------------------------------------

def _family(address: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def _pack_address(address: str) -> bytes:
    return ipaddress.ip_address(address).packed.ljust(16, b"\0")


def _unpack_address(raw: bytes, family: int) -> str:
    if family == socket.AF_INET6:
        return str(ipaddress.IPv6Address(raw[:16]))
    return str(ipaddress.IPv4Address(raw[:4]))


@dataclass(frozen=True)
class Selector:
    """Which packets: addresses with prefix lengths, protocol and ports (0: any)."""

    src: str
    dst: str
    src_len: int
    dst_len: int
    proto: int = 0
    sport: int = 0
    dport: int = 0

    @classmethod
    def any(cls, family_of: str) -> Selector:
        zero = "::" if _family(family_of) == socket.AF_INET6 else "0.0.0.0"
        return cls(zero, zero, 0, 0)

    def fields(self, prefix: str = "sel_") -> dict:
        return {f"{prefix}daddr": _pack_address(self.dst), f"{prefix}saddr": _pack_address(self.src),
                f"{prefix}dport": self.dport, f"{prefix}dport_mask": 0xFFFF if self.dport else 0,
                f"{prefix}sport": self.sport, f"{prefix}sport_mask": 0xFFFF if self.sport else 0,
                f"{prefix}family": _family(self.dst), f"{prefix}prefixlen_d": self.dst_len,
                f"{prefix}prefixlen_s": self.src_len, f"{prefix}proto": self.proto}

    @classmethod
    def from_fields(cls, msg, prefix: str = "sel_") -> Selector:
        family = msg[f"{prefix}family"]
        return cls(_unpack_address(msg[f"{prefix}saddr"], family),
                   _unpack_address(msg[f"{prefix}daddr"], family),
                   msg[f"{prefix}prefixlen_s"], msg[f"{prefix}prefixlen_d"], msg[f"{prefix}proto"],
                   msg[f"{prefix}sport"], msg[f"{prefix}dport"])

    def __str__(self) -> str:
        text = f"{self.src}/{self.src_len} -> {self.dst}/{self.dst_len}"
        if self.proto:
            text += f" {PROTOCOLS.get(self.proto, self.proto)}"
        if self.sport or self.dport:
            text += f" sport {self.sport} dport {self.dport}"
        return text


@dataclass(frozen=True, kw_only=True)
class SA:
    """An XFRM state. Equality covers everything that matters, not the counters; ``repr`` and
    ``str`` never show the key (see ``fingerprint``)."""

    src: str
    dst: str
    spi: int
    reqid: int
    aead: str | None
    key: bytes = field(repr=False)
    icv_bits: int = ICV_BITS
    replay_window: int = 256
    esn: bool = True
    proto: int = IPPROTO_ESP
    mode: str = "transport"
    mark: int = 0
    mask: int = 0
    selector: Selector | None = None
    bytes: int = field(default=0, compare=False)
    packets: int = field(default=0, compare=False)
    replay_errors: int = field(default=0, compare=False)
    integrity_failures: int = field(default=0, compare=False)

    @property
    def fingerprint(self) -> str:
        """Names the key without showing it: the first 8 hex digits of its SHA-256."""
        return "sha256:" + hashlib.sha256(self.key).hexdigest()[:8]

    def __str__(self) -> str:
        mark = f" mark {self.mark:#x}/{self.mask:#x}" if self.mark or self.mask else ""
        return (f"{self.src} -> {self.dst} spi {self.spi:#010x} reqid {self.reqid} "
                f"{PROTOCOLS.get(self.proto, self.proto)} {self.mode} {self.aead} icv "
                f"{self.icv_bits} replay-window {self.replay_window}{' esn' if self.esn else ''}"
                f"{mark} key {self.fingerprint}")


def esp_transport_sa(*, src: str, dst: str, spi: int, reqid: int, aead: str, key: bytes,
                     replay_window: int) -> SA:
    """The SA this collection installs: ESP transport, ICV 128, ESN, no mark, a selector that
    only names the family. Raises XfrmError naming the field that is wrong."""
    for name, address in (("src", src), ("dst", dst)):
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise XfrmError(f"{name}: {address!r} is not an IP address") from None
    if _family(src) != _family(dst):
        raise XfrmError(f"dst: {dst} is not of the same address family as src {src}")
    check_spi(spi)
    if aead not in AEAD_KEY_BYTES:
        raise XfrmError(f"aead: {aead!r} is not one of {sorted(AEAD_KEY_BYTES)}")
    if len(key) != AEAD_KEY_BYTES[aead]:
        raise XfrmError(f"key: {len(key)} bytes, {aead} takes {AEAD_KEY_BYTES[aead]} "
                        "(cipher key and 4-byte salt)")
    check_replay_window(replay_window)
    return SA(src=src, dst=dst, spi=spi, reqid=reqid, aead=aead, key=key,
              replay_window=replay_window, selector=Selector.any(dst))


def check_replay_window(replay_window: int) -> None:
    if not 1 <= replay_window <= XFRMA_REPLAY_ESN_MAX:
        raise XfrmError(f"replay_window: {replay_window} is outside 1..{XFRMA_REPLAY_ESN_MAX}")


def check_spi(spi: int) -> None:
    if not 0x100 <= spi <= 0xFFFFFFFF:
        raise XfrmError(f"spi: {spi:#x} is zero, reserved (1-255) or not 32 bits")


@dataclass(frozen=True, kw_only=True)
class Template:
    """The transform a policy asks for: the SA (src, dst, SPI, reqid) it goes through."""

    src: str
    dst: str
    spi: int
    reqid: int
    proto: int = IPPROTO_ESP
    mode: str = "transport"

    def __str__(self) -> str:
        return (f"tmpl {self.src} -> {self.dst} {PROTOCOLS.get(self.proto, self.proto)} spi "
                f"{self.spi:#010x} reqid {self.reqid} {self.mode}")


@dataclass(frozen=True, kw_only=True)
class Policy:
    """An XFRM policy. The kernel knows it by (selector, dir, mark/mask); ``index`` is the
    kernel's number for it and not compared."""

    selector: Selector
    dir: str
    templates: tuple[Template, ...] = ()
    mark: int = 0
    mask: int = 0
    priority: int = 0
    index: int = field(default=0, compare=False)

    @property
    def identity(self) -> tuple:
        return (self.dir, self.selector, self.mark, self.mask)

    def __str__(self) -> str:
        mark = f" mark {self.mark:#x}/{self.mask:#x}" if self.mark or self.mask else ""
        return " ".join([f"{self.dir} {self.selector}{mark} priority {self.priority}",
                         *map(str, self.templates)])


# --- encoding and decoding ---------------------------------------------------------------

def _mark_attr(mark: int, mask: int) -> list:
    return [["XFRMA_MARK", {"v": mark, "m": mask}]] if mark or mask else []


def encode_sa(sa: SA) -> xfrm_usersa_info:
    """The NEWSA body of ``sa`` (ESN: replay window in XFRMA_REPLAY_ESN_VAL, the header's 0)."""
    msg = xfrm_usersa_info()
    msg.update((sa.selector or Selector.any(sa.dst)).fields())
    msg.update(_NO_LIMITS)
    msg.update({"id_daddr": _pack_address(sa.dst), "id_spi": sa.spi, "id_proto": sa.proto,
                "saddr": _pack_address(sa.src), "reqid": sa.reqid, "family": _family(sa.dst),
                "mode": _mode_number(sa.mode), "replay_window": 0 if sa.esn else sa.replay_window,
                "flags": XFRM_STATE_ESN if sa.esn else 0})
    attrs = [["XFRMA_ALG_AEAD", {"alg_name": sa.aead.encode(), "alg_key_len": len(sa.key) * 8,
                                 "alg_icv_len": sa.icv_bits, "key": sa.key}]]
    if sa.esn:
        attrs.append(["XFRMA_REPLAY_ESN_VAL", {"bmp_len": (sa.replay_window + 31) // 32,
                                               "replay_window": sa.replay_window}])
    msg["attrs"] = attrs + _mark_attr(sa.mark, sa.mask)
    return msg


def decode_sa(msg) -> SA:
    aead = msg.get_attr("XFRMA_ALG_AEAD")
    esn = msg.get_attr("XFRMA_REPLAY_ESN_VAL")
    mark = msg.get_attr("XFRMA_MARK") or {"v": 0, "m": 0}
    family = msg["family"]
    return SA(
        src=_unpack_address(msg["saddr"], family), dst=_unpack_address(msg["id_daddr"], family),
        spi=msg["id_spi"], reqid=msg["reqid"], proto=msg["id_proto"],
        mode=MODES.get(msg["mode"], str(msg["mode"])),
        aead=aead["alg_name"].rstrip(b"\0").decode() if aead else None,
        key=aead["key"] if aead else b"", icv_bits=aead["alg_icv_len"] if aead else 0,
        replay_window=esn["replay_window"] if esn else msg["replay_window"],
        esn=bool(msg["flags"] & XFRM_STATE_ESN), mark=mark["v"], mask=mark["m"],
        selector=Selector.from_fields(msg),
        bytes=msg["curlft_bytes"], packets=msg["curlft_packets"],
        replay_errors=msg["stats_replay"], integrity_failures=msg["stats_integrity_failed"])


def encode_sa_id(sa: SA) -> xfrm_usersa_id:
    msg = xfrm_usersa_id()
    msg.update({"daddr": _pack_address(sa.dst), "spi": sa.spi, "family": _family(sa.dst),
                "proto": sa.proto})
    msg["attrs"] = _mark_attr(sa.mark, sa.mask)
    return msg


def encode_policy(policy: Policy) -> xfrm_userpolicy_info:
    msg = xfrm_userpolicy_info()
    msg.update(policy.selector.fields())
    msg.update(_NO_LIMITS)
    msg.update({"priority": policy.priority, "index": policy.index,
                "dir": _dir_number(policy.dir), "action": 0, "flags": 0, "share": 0})
    templates = [{"daddr": _pack_address(t.dst), "spi": t.spi, "proto": t.proto,
                  "family": _family(t.dst), "saddr": _pack_address(t.src), "reqid": t.reqid,
                  "mode": _mode_number(t.mode), "share": 0, "optional": 0,
                  "aalgos": 0xFFFFFFFF, "ealgos": 0xFFFFFFFF, "calgos": 0xFFFFFFFF}
                 for t in policy.templates]
    msg["attrs"] = ([["XFRMA_TMPL", {"templates": templates}]] if templates else []) + \
        _mark_attr(policy.mark, policy.mask)
    return msg


def decode_policy(msg) -> Policy:
    tmpls = msg.get_attr("XFRMA_TMPL")
    mark = msg.get_attr("XFRMA_MARK") or {"v": 0, "m": 0}
    templates = tuple(
        Template(src=_unpack_address(t["saddr"], t["family"]),
                 dst=_unpack_address(t["daddr"], t["family"]), spi=t["spi"], reqid=t["reqid"],
                 proto=t["proto"], mode=MODES.get(t["mode"], str(t["mode"])))
        for t in (tmpls["templates"] if tmpls else []))
    return Policy(selector=Selector.from_fields(msg), dir=DIRECTIONS.get(msg["dir"], str(msg["dir"])),
                  templates=templates, mark=mark["v"], mask=mark["m"],
                  priority=msg["priority"], index=msg["index"])


def encode_policy_id(policy: Policy) -> xfrm_userpolicy_id:
    msg = xfrm_userpolicy_id()
    msg.update(policy.selector.fields())
    msg.update({"index": 0, "dir": _dir_number(policy.dir)})
    msg["attrs"] = _mark_attr(policy.mark, policy.mask)
    return msg


def _mode_number(mode: str) -> int:
    return {v: k for k, v in MODES.items()}[mode]


def _dir_number(direction: str) -> int:
    return {v: k for k, v in DIRECTIONS.items()}[direction]


# --- the socket ---------------------------------------------------------------------------

class XfrmSocket:
    """NETLINK_XFRM in a network namespace (None: the current one).

    ``sas()`` and ``policies()`` are one dump each; changes are acknowledged requests that
    raise XfrmError naming the object (never its key) and the kernel's reason."""

    def __init__(self, netns: str | None = None):
        if NetlinkSocket is object:
            raise XfrmError("pyroute2 is not installed on this host")
        try:
            with entered(netns):
                self._nl = _XfrmNetlink(family=NETLINK_XFRM, ext_ack=True)
                self._nl.bind()
        except OSError as exc:
            if exc.errno in (errno.EPROTONOSUPPORT, errno.ENOENT):
                raise XfrmError("the kernel has no xfrm_user (NETLINK_XFRM): "
                                "CONFIG_XFRM_USER is missing") from None
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._nl.close()

    def _dump(self, msg_type: int) -> list:
        return list(self._nl.nlm_request(nlmsg(), msg_type, NLM_F_REQUEST | NLM_F_DUMP))

    def sas(self) -> list[SA]:
        return [decode_sa(m) for m in self._dump(XFRM_MSG_GETSA)]

    def policies(self) -> list[Policy]:
        return [decode_policy(m) for m in self._dump(XFRM_MSG_GETPOLICY)]

    def _send(self, msg, msg_type: int, flags: int) -> None:
        tuple(self._nl.nlm_request(msg, msg_type, NLM_F_REQUEST | NLM_F_ACK | flags))

    def _request(self, msg, msg_type: int, flags: int, what: str) -> None:
        try:
            self._send(msg, msg_type, flags)
        except NetlinkError as exc:
            raise XfrmError(f"{what}: {_reason(exc)}") from None

    def add_sa(self, sa: SA) -> None:
        try:
            self._send(encode_sa(sa), XFRM_MSG_NEWSA, NLM_F_CREATE | NLM_F_EXCL)
        except NetlinkError as exc:
            if exc.code in (errno.ENOSYS, errno.EPROTONOSUPPORT):
                raise XfrmError(f"add SA {sa}: {self._lacking(sa, exc.code)}") from None
            raise XfrmError(f"add SA {sa}: {_reason(exc)}") from None

    def _lacking(self, sa: SA, code: int) -> str:
        """What the kernel lacks for ``sa``, refused with ``code``: ENOSYS names an unknown
        algorithm (checked first), EPROTONOSUPPORT a missing ESP type. After ENOSYS the same SA
        with the null cipher (nearly always built in) tells whether ESP is missing too; if it
        could be made it is removed at once."""
        missing = []
        if code == errno.ENOSYS:
            null_cipher = encode_sa(sa)
            null_cipher["attrs"] = [a for a in null_cipher["attrs"] if a[0] != "XFRMA_ALG_AEAD"]
            null_cipher["attrs"].append(
                ["XFRMA_ALG_CRYPT", {"alg_name": b"ecb(cipher_null)", "alg_key_len": 0}])
            try:
                self._send(null_cipher, XFRM_MSG_NEWSA, NLM_F_CREATE | NLM_F_EXCL)
                self.delete_sa(sa)
            except NetlinkError as exc:
                if exc.code == errno.EPROTONOSUPPORT:
                    missing.append(ESP_MISSING)
            missing.append(f"the AEAD {sa.aead} (its crypto modules)")
        else:
            missing.append(ESP_MISSING)
        return "the kernel lacks " + " and ".join(missing)

    def delete_sa(self, sa: SA) -> None:
        self._request(encode_sa_id(sa), XFRM_MSG_DELSA, 0, f"delete SA {sa}")

    def add_policy(self, policy: Policy) -> None:
        self._request(encode_policy(policy), XFRM_MSG_NEWPOLICY, NLM_F_CREATE | NLM_F_EXCL,
                      f"add policy {policy}")

    def update_policy(self, policy: Policy) -> None:
        """Switch a policy's templates in place (UPDPOLICY): no packet goes unprotected."""
        self._request(encode_policy(policy), XFRM_MSG_UPDPOLICY, 0, f"update policy {policy}")

    def delete_policy(self, policy: Policy) -> None:
        self._request(encode_policy_id(policy), XFRM_MSG_DELPOLICY, 0, f"delete policy {policy}")


def esp_probe(aead: str) -> None:
    """Add and remove an ESP transport SA with ``aead`` (127.0.0.1, SPI 0x100) in the current
    network namespace: raises XfrmError naming what the kernel lacks (xfrm_user, ESP, the AEAD).
    Run it in a throwaway namespace (module_utils.preflight.probe does)."""
    sa = esp_transport_sa(src="127.0.0.1", dst="127.0.0.1", spi=0x100, reqid=0, aead=aead,
                          key=bytes(AEAD_KEY_BYTES[aead]), replay_window=32)
    with XfrmSocket() as xfrm:
        xfrm.add_sa(sa)
        xfrm.delete_sa(sa)


def _reason(exc) -> str:
    reason = os.strerror(exc.code)
    if len(exc.args) > 1 and exc.args[1] and exc.args[1] != reason:
        reason += f" ({exc.args[1]})"  # the kernel's extended ack message
    return reason
