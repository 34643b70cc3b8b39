"""The kernel's XFRM SAs and policies over NETLINK_XFRM, on a plain netlink socket.

Messages are packed and unpacked with ``struct``, one layout per C struct of the kernel's
include/uapi/linux/xfrm.h (byte-exact: xfrm_usersa_info 224 bytes, xfrm_userpolicy_info 168,
xfrm_user_tmpl 64), and sent through module_utils.netlink: pyroute2 0.9 has no XFRM SA/policy
messages, and its generic socket and decoding made a dump of 1000 policies cost more than ten
times ``ip xfrm policy``. The kernel's SAs and policies are plain dataclasses (SA, Policy) that
compare what matters and never show a key: ``repr``/``str`` leave it out, ``fingerprint``
names it.

    with XfrmSocket(netns="lab-h1") as xfrm:
        sas, policies = xfrm.sas(), xfrm.policies()
"""

from __future__ import annotations

import errno
import functools
import hashlib
import socket
import struct
from dataclasses import dataclass, field

from ansible_collections.weave.fastdp.plugins.module_utils import inet
from ansible_collections.weave.fastdp.plugins.module_utils.compat import KW_ONLY, SLOTS
from ansible_collections.weave.fastdp.plugins.module_utils.netlink import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    Netlink,
    NetlinkError,
    attr,
    attributes,
)
from ansible_collections.weave.fastdp.plugins.module_utils.netns import entered

XFRM_MSG_NEWSA = 0x10
XFRM_MSG_DELSA = 0x11
XFRM_MSG_GETSA = 0x12
XFRM_MSG_NEWPOLICY = 0x13
XFRM_MSG_DELPOLICY = 0x14
XFRM_MSG_GETPOLICY = 0x15
XFRM_MSG_ALLOCSPI = 0x16
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
# struct layouts in native byte order ("="), no implicit alignment; ports and SPIs are in
# network order in the kernel's structs, so they go through socket.htons/htonl. Fields this
# collection neither writes nor reads are padding ("x": zero when packed, skipped when unpacked).

NETLINK_XFRM = 6
_CREATE = NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL  # a new SA or policy, never replacing one
XFRMA_ALG_AUTH = 1
XFRMA_ALG_CRYPT = 2
XFRMA_ALG_COMP = 3
XFRMA_TMPL = 5
XFRMA_ALG_AEAD = 18
XFRMA_MARK = 21
XFRMA_REPLAY_ESN_VAL = 23

# struct xfrm_selector, 56 bytes: daddr, saddr, dport, dport_mask, sport, sport_mask, family,
# prefixlen_d, prefixlen_s, proto; padding, ifindex, user (0 here).
_SELECTOR = "16s16sHHHHHBBB11x"
# struct xfrm_lifetime_cfg, 64 bytes: soft and hard byte and packet limits; expiry times (0).
_LIFETIME_CFG = "4Q32x"
# struct xfrm_usersa_info, 224 bytes: selector; id.daddr, id.spi, id.proto; saddr; lft;
# curlft.bytes, curlft.packets; stats.replay, stats.integrity_failed; reqid, family, mode,
# replay_window, flags.
xfrm_usersa_info = struct.Struct(
    "=" + _SELECTOR + "16sIB3x16s" + _LIFETIME_CFG + "QQ16x4xII4xIHBBB7x")
# struct xfrm_userspi_info, 232 bytes: an xfrm_usersa_info, then the SPI range min, max.
xfrm_userspi_info = struct.Struct(xfrm_usersa_info.format + "II")
# struct xfrm_usersa_id, 24 bytes: daddr, spi, family, proto.
xfrm_usersa_id = struct.Struct("=16sIHBx")
# struct xfrm_userpolicy_info, 168 bytes: selector; lft; priority, index, dir.
xfrm_userpolicy_info = struct.Struct("=" + _SELECTOR + _LIFETIME_CFG + "32xIIB7x")
# struct xfrm_userpolicy_id, 64 bytes: selector; dir (index 0: found by selector).
xfrm_userpolicy_id = struct.Struct("=" + _SELECTOR + "4xB3x")
# struct xfrm_user_tmpl, 64 bytes (XFRMA_TMPL holds one or more): id.daddr, id.spi, id.proto,
# family, saddr, reqid, mode, aalgos, ealgos, calgos.
xfrm_user_tmpl = struct.Struct("=16sIB3xH2x16sIB3xIII")
# struct xfrm_algo_aead, 72 bytes: alg_name, alg_key_len (bits), alg_icv_len; the key follows.
xfrm_algo_aead = struct.Struct("=64sII")
xfrm_algo = struct.Struct("=64sI")  # struct xfrm_algo without a key (the null cipher)
xfrm_mark = struct.Struct("=II")  # v, m
# struct xfrm_replay_state_esn, 24 bytes: bmp_len; replay_window; bmp_len 32-bit words follow.
xfrm_replay_state_esn = struct.Struct("=I16xI")
_NO_LIMITS = (XFRM_INF,) * 4


# --- what the kernel holds, as values ------------------------------------------------------

def _pack_address(address: str) -> bytes:
    return inet.packed(address).ljust(16, b"\0")


@functools.lru_cache(maxsize=4096)  # a dump names this host's address in every SA
def _unpack_address(raw: bytes, family: int) -> str:
    return inet.text(raw if family == socket.AF_INET6 else raw[:4])


@dataclass(frozen=True, **SLOTS)
class Selector:
    """Which packets: addresses with prefix lengths, protocol and ports (0: any)."""

    src: str
    dst: str
    src_len: int
    dst_len: int
    proto: int = 0
    sport: int = 0
    dport: int = 0

    @staticmethod
    def any(address: str) -> Selector:
        """The selector of every packet of ``address``'s family (an IP address). Shared: every
        SA of this collection carries one."""
        return _ANY_SELECTORS[inet.is_ipv6(address)]

    def packed(self) -> tuple:
        """The fields of struct xfrm_selector (_SELECTOR)."""
        return (_pack_address(self.dst), _pack_address(self.src),
                socket.htons(self.dport), 0xFFFF if self.dport else 0,
                socket.htons(self.sport), 0xFFFF if self.sport else 0,
                inet.family(self.dst), self.dst_len, self.src_len, self.proto)

    @staticmethod
    @functools.lru_cache(maxsize=4096)  # a dump repeats a few selectors (SAs: the zero one)
    def unpacked(values: tuple) -> Selector:
        (daddr, saddr, dport, _dport_mask, sport, _sport_mask, family, dst_len, src_len,
         proto) = values
        return Selector(_unpack_address(saddr, family), _unpack_address(daddr, family), src_len,
                        dst_len, proto, socket.ntohs(sport), socket.ntohs(dport))

    def __str__(self) -> str:
        text = f"{self.src}/{self.src_len} -> {self.dst}/{self.dst_len}"
        if self.proto:
            text += f" {PROTOCOLS.get(self.proto, self.proto)}"
        if self.sport or self.dport:
            text += f" sport {self.sport} dport {self.dport}"
        return text


_ANY_SELECTORS = {False: Selector("0.0.0.0", "0.0.0.0", 0, 0), True: Selector("::", "::", 0, 0)}


@dataclass(**KW_ONLY, **SLOTS)
class SA:
    """An XFRM state. Equality covers everything that matters, not the counters; ``repr`` and
    ``str`` never show the key (see ``fingerprint``). Never changed once made, yet not frozen:
    a frozen dataclass's ``__init__`` costs three times as much, paid for every SA of a dump
    and every wanted one (``dataclasses.replace`` makes a changed copy)."""

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
    # A larval SA (the kernel's XFRM_STATE_ACQ): an SPI held by XFRM_MSG_ALLOCSPI, no
    # algorithm and no key yet; it expires unless an SA is installed in its place.
    larval: bool = field(default=False, compare=False)

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
    only names the family, addresses spelled as the kernel spells them. Raises XfrmError
    naming the field that is wrong."""
    src, dst = inet.field("src", src, XfrmError), inet.field("dst", dst, XfrmError)
    if inet.is_ipv6(src) != inet.is_ipv6(dst):
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


@dataclass(frozen=True, **KW_ONLY, **SLOTS)
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


@dataclass(frozen=True, **KW_ONLY, **SLOTS)
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

def _mark_attr(mark: int, mask: int) -> bytes:
    return attr(XFRMA_MARK, xfrm_mark.pack(mark, mask)) if mark or mask else b""


def _mark(attrs: dict) -> tuple[int, int]:
    return xfrm_mark.unpack_from(attrs[XFRMA_MARK]) if XFRMA_MARK in attrs else (0, 0)


def encode_sa(sa: SA, algorithm: bytes | None = None) -> bytes:
    """The NEWSA body of ``sa`` (ESN: replay window in XFRMA_REPLAY_ESN_VAL, the header's 0).
    ``algorithm``, an attribute, stands in for its AEAD (XfrmSocket._lacking's null cipher)."""
    info = xfrm_usersa_info.pack(
        *(sa.selector or Selector.any(sa.dst)).packed(),
        _pack_address(sa.dst), socket.htonl(sa.spi), sa.proto, _pack_address(sa.src),
        *_NO_LIMITS, 0, 0, 0, 0,  # counters: bytes, packets, replay errors, integrity failures
        sa.reqid, inet.family(sa.dst), _mode_number(sa.mode), 0 if sa.esn else sa.replay_window,
        XFRM_STATE_ESN if sa.esn else 0)
    if algorithm is None:
        algorithm = attr(XFRMA_ALG_AEAD, xfrm_algo_aead.pack(
            sa.aead.encode(), len(sa.key) * 8, sa.icv_bits) + sa.key)
    esn = b""
    if sa.esn:
        words = (sa.replay_window + 31) // 32
        esn = attr(XFRMA_REPLAY_ESN_VAL,
                   xfrm_replay_state_esn.pack(words, sa.replay_window) + bytes(4 * words))
    return info + algorithm + esn + _mark_attr(sa.mark, sa.mask)


def decode_sa(body) -> SA:
    """An SA from the body of a NEWSA message (a dump's answer)."""
    values = xfrm_usersa_info.unpack_from(body)
    (daddr, spi, proto, saddr, _soft_bytes, _hard_bytes, _soft_packets, _hard_packets, nbytes,
     packets, replay_errors, integrity_failures, reqid, family, mode, replay_window,
     flags) = values[10:]
    attrs = attributes(body, xfrm_usersa_info.size)
    aead = attrs.get(XFRMA_ALG_AEAD)
    name, _key_bits, icv_bits = xfrm_algo_aead.unpack_from(aead) if aead else (None, 0, 0)
    if XFRMA_REPLAY_ESN_VAL in attrs:
        _bmp_len, replay_window = xfrm_replay_state_esn.unpack_from(attrs[XFRMA_REPLAY_ESN_VAL])
    mark, mask = _mark(attrs)
    return SA(
        src=_unpack_address(saddr, family), dst=_unpack_address(daddr, family),
        spi=socket.ntohl(spi), reqid=reqid, proto=proto, mode=MODES.get(mode) or str(mode),
        aead=name.split(b"\0", 1)[0].decode() if aead else None,
        key=bytes(aead[xfrm_algo_aead.size:]) if aead else b"", icv_bits=icv_bits,
        replay_window=replay_window, esn=bool(flags & XFRM_STATE_ESN), mark=mark, mask=mask,
        selector=Selector.unpacked(values[:10]), bytes=nbytes, packets=packets,
        replay_errors=replay_errors, integrity_failures=integrity_failures,
        larval=not any(a in attrs for a in (XFRMA_ALG_AUTH, XFRMA_ALG_CRYPT, XFRMA_ALG_COMP,
                                            XFRMA_ALG_AEAD)))


def encode_alloc_spi(*, src: str, dst: str, reqid: int, low: int, high: int) -> bytes:
    """The ALLOCSPI body: an ESP transport SA from ``src`` to ``dst`` with ``reqid`` whose SPI
    the kernel picks in ``low``..``high``, unique towards ``dst``."""
    return xfrm_userspi_info.pack(
        *Selector.any(dst).packed(), _pack_address(dst), 0, IPPROTO_ESP, _pack_address(src),
        *_NO_LIMITS, 0, 0, 0, 0, reqid, inet.family(dst), _mode_number("transport"), 0, 0,
        low, high)


def encode_sa_id(sa: SA) -> bytes:
    return (xfrm_usersa_id.pack(_pack_address(sa.dst), socket.htonl(sa.spi), inet.family(sa.dst),
                                sa.proto) + _mark_attr(sa.mark, sa.mask))


def encode_policy(policy: Policy) -> bytes:
    info = xfrm_userpolicy_info.pack(*policy.selector.packed(), *_NO_LIMITS, policy.priority,
                                     policy.index, _dir_number(policy.dir))
    templates = b"".join(
        xfrm_user_tmpl.pack(_pack_address(t.dst), socket.htonl(t.spi), t.proto, inet.family(t.dst),
                            _pack_address(t.src), t.reqid, _mode_number(t.mode),
                            0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)  # any algorithm
        for t in policy.templates)
    return (info + (attr(XFRMA_TMPL, templates) if templates else b"")
            + _mark_attr(policy.mark, policy.mask))


def decode_policy(body) -> Policy:
    """A policy from the body of a NEWPOLICY message (a dump's answer)."""
    values = xfrm_userpolicy_info.unpack_from(body)
    priority, index, direction = values[-3:]
    attrs = attributes(body, xfrm_userpolicy_info.size)
    tmpls = attrs.get(XFRMA_TMPL, b"")
    templates = []
    for offset in range(0, len(tmpls) - xfrm_user_tmpl.size + 1, xfrm_user_tmpl.size):
        daddr, spi, proto, family, saddr, reqid, mode, _aalgos, _ealgos, _calgos = \
            xfrm_user_tmpl.unpack_from(tmpls, offset)
        templates.append(Template(
            src=_unpack_address(saddr, family), dst=_unpack_address(daddr, family),
            spi=socket.ntohl(spi), reqid=reqid, proto=proto, mode=MODES.get(mode) or str(mode)))
    mark, mask = _mark(attrs)
    return Policy(selector=Selector.unpacked(values[:10]),
                  dir=DIRECTIONS.get(direction) or str(direction), templates=tuple(templates),
                  mark=mark, mask=mask, priority=priority, index=index)


def encode_policy_id(policy: Policy) -> bytes:
    return (xfrm_userpolicy_id.pack(*policy.selector.packed(), _dir_number(policy.dir))
            + _mark_attr(policy.mark, policy.mask))


def _mode_number(mode: str) -> int:
    return {v: k for k, v in MODES.items()}[mode]


def _dir_number(direction: str) -> int:
    return {v: k for k, v in DIRECTIONS.items()}[direction]


# --- the socket ---------------------------------------------------------------------------

class XfrmSocket(Netlink):
    """NETLINK_XFRM in a network namespace (None: the current one).

    ``sas()`` and ``policies()`` are one dump each; changes are acknowledged requests that
    raise XfrmError naming the object (never its key) and the kernel's reason."""

    def __init__(self, netns: str | None = None):
        try:
            with entered(netns):
                super().__init__(NETLINK_XFRM)
        except OSError as exc:
            if exc.errno in (errno.EPROTONOSUPPORT, errno.ENOENT):
                raise XfrmError("the kernel has no xfrm_user (NETLINK_XFRM): "
                                "CONFIG_XFRM_USER is missing") from None
            raise

    def _request(self, msg_type: int, flags: int, body: bytes, what: str) -> list[memoryview]:
        try:
            return self.request(msg_type, flags, body)
        except NetlinkError as exc:
            raise XfrmError(f"{what}: {exc}") from None

    def sas(self) -> list[SA]:
        return [decode_sa(body) for body in
                self._request(XFRM_MSG_GETSA, NLM_F_DUMP, b"", "dump SAs")]

    def policies(self) -> list[Policy]:
        return [decode_policy(body) for body in
                self._request(XFRM_MSG_GETPOLICY, NLM_F_DUMP, b"", "dump policies")]

    def add_sa(self, sa: SA) -> None:
        try:
            self.request(XFRM_MSG_NEWSA, _CREATE, encode_sa(sa))
        except NetlinkError as exc:
            if exc.errno in (errno.ENOSYS, errno.EPROTONOSUPPORT):
                raise XfrmError(f"add SA {sa}: {self._lacking(sa, exc.errno)}") from None
            raise XfrmError(f"add SA {sa}: {exc}") from None

    def _lacking(self, sa: SA, code: int) -> str:
        """What the kernel lacks for ``sa``, refused with ``code``: ENOSYS names an unknown
        algorithm (checked first), EPROTONOSUPPORT a missing ESP type. After ENOSYS the same SA
        with the null cipher (nearly always built in) tells whether ESP is missing too; if it
        could be made it is removed at once."""
        missing = []
        if code == errno.ENOSYS:
            null_cipher = attr(XFRMA_ALG_CRYPT, xfrm_algo.pack(b"ecb(cipher_null)", 0))
            try:
                self.request(XFRM_MSG_NEWSA, _CREATE, encode_sa(sa, null_cipher))
                self.delete_sa(sa)
            except NetlinkError as exc:
                if exc.errno == errno.EPROTONOSUPPORT:
                    missing.append(ESP_MISSING)
            missing.append(f"the AEAD {sa.aead} (its crypto modules)")
        else:
            missing.append(ESP_MISSING)
        return "the kernel lacks " + " and ".join(missing)

    def allocate_spi(self, *, src: str, dst: str, reqid: int, low: int = 0x100,
                     high: int = 0xFFFFFFFF) -> int:
        """A fresh SPI towards ``dst`` from the kernel (XFRM_MSG_ALLOCSPI, as Weave Net does):
        it holds the SPI in a larval SA, which the SA installed for it replaces (or which
        expires after net.core.xfrm_acq_expires seconds, 30 by default)."""
        what = f"allocate an SPI for an SA {src} -> {dst} reqid {reqid}"
        replies = self._request(XFRM_MSG_ALLOCSPI, 0, encode_alloc_spi(
            src=src, dst=dst, reqid=reqid, low=low, high=high), what)
        if not replies:
            raise XfrmError(f"{what}: the kernel sent no SA back")
        return decode_sa(replies[0]).spi

    def delete_sa(self, sa: SA) -> None:
        self._request(XFRM_MSG_DELSA, NLM_F_ACK, encode_sa_id(sa), f"delete SA {sa}")

    def add_policy(self, policy: Policy) -> None:
        self._request(XFRM_MSG_NEWPOLICY, _CREATE, encode_policy(policy), f"add policy {policy}")

    def update_policy(self, policy: Policy) -> None:
        """Switch a policy's templates in place (UPDPOLICY): no packet goes unprotected."""
        self._request(XFRM_MSG_UPDPOLICY, NLM_F_ACK, encode_policy(policy),
                      f"update policy {policy}")

    def delete_policy(self, policy: Policy) -> None:
        self._request(XFRM_MSG_DELPOLICY, NLM_F_ACK, encode_policy_id(policy),
                      f"delete policy {policy}")


def esp_probe(aead: str) -> None:
    """Add and remove an ESP transport SA with ``aead`` (127.0.0.1, SPI 0x100) in the current
    network namespace: raises XfrmError naming what the kernel lacks (xfrm_user, ESP, the AEAD).
    Run it in a throwaway namespace (module_utils.preflight.probe does)."""
    sa = esp_transport_sa(src="127.0.0.1", dst="127.0.0.1", spi=0x100, reqid=0, aead=aead,
                          key=bytes(AEAD_KEY_BYTES[aead]), replay_window=32)
    with XfrmSocket() as xfrm:
        xfrm.add_sa(sa)
        xfrm.delete_sa(sa)
