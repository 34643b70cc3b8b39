"""Links, addresses, the default route, one device's neighbours and its bridge FDB over a plain
NETLINK_ROUTE socket: what the vxlan and preflight modules read, and the changes the vxlan
module makes (a VXLAN device, its settings, addresses, FDB entries and neighbours), each one
acknowledged request.

Not pyroute2: it decodes every attribute of every message, each through an asyncio loop, and
takes a tenth of a second to import (at a thousand FDB entries, most of a vxlan no-op), and
managed hosts run with their distribution's packages alone. Only the attributes used are
decoded. Layouts after the kernel's include/uapi/linux rtnetlink.h, if_link.h, if_addr.h and
neighbour.h.

    with entered(netns), Rtnl() as rtnl:
        device = rtnl.link(name="wf-weave")
        entries = rtnl.fdb(device.index)
        rtnl.append_fdb(device.index, "00:00:00:00:00:00", "198.51.100.12")
"""

from __future__ import annotations

import errno
import socket
import struct
from dataclasses import dataclass

from ansible_collections.weave.fastdp.plugins.module_utils import inet
from ansible_collections.weave.fastdp.plugins.module_utils.netlink import (
    NLM_F_ACK,
    NLM_F_APPEND,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    Netlink,
    NetlinkError,
    attr,
    attributes,
)

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_GETROUTE = 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
_CHANGE = NLM_F_ACK
_CREATE = NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
AF_BRIDGE = 7
IFF_UP = 0x1
IFNAMSIZ = 16  # with the terminating NUL: a name has at most 15 bytes
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO = 1, 3, 4, 10, 18
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_VXLAN_ID, IFLA_VXLAN_LINK, IFLA_VXLAN_LOCAL, IFLA_VXLAN_LEARNING = 1, 3, 4, 7
IFLA_VXLAN_PORT, IFLA_VXLAN_LOCAL6 = 15, 17
IFA_ADDRESS, IFA_LOCAL = 1, 2
NDA_DST, NDA_LLADDR, NDA_IFINDEX = 1, 2, 8
NUD_NOARP, NUD_PERMANENT = 0x40, 0x80
NTF_SELF = 0x02  # an FDB entry of the device itself (the VXLAN driver's), not of a bridge
RTA_OIF, RTA_TABLE = 4, 15
RT_TABLE_MAIN = 254

ifinfomsg = struct.Struct("=BxHiII")  # family, type, index, flags, change
ifaddrmsg = struct.Struct("=BBBBi")  # family, prefixlen, flags, scope, index
ndmsg = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
rtmsg = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope,
#                                      type, flags
u8 = struct.Struct("=B")
u32 = struct.Struct("=I")
be16 = struct.Struct("!H")


@dataclass(frozen=True)
class Vxlan:
    """The IFLA_INFO_DATA of a VXLAN link; ``link`` is the underlay's index (or None)."""

    vni: int | None
    port: int | None
    local: str | None
    link: int | None
    learning: bool


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    mtu: int | None
    up: bool
    master: int | None
    kind: str | None
    vxlan: Vxlan | None = None
    mac: str | None = None


@dataclass(frozen=True)
class Address:
    index: int
    address: str | None
    prefixlen: int


class Rtnl(Netlink):
    """A NETLINK_ROUTE socket, opened in the current network namespace (it stays there)."""

    def __init__(self):
        super().__init__(NETLINK_ROUTE)

    def link(self, *, name: str | None = None, index: int = 0) -> Link | None:
        """The link named ``name`` (else of index ``index``); None when there is none."""
        name_attr = b""
        if name is not None:
            if not 0 < len(name.encode()) < IFNAMSIZ:  # the kernel refuses such a name
                return None
            name_attr = attr(IFLA_IFNAME, name.encode() + b"\0")
        try:
            (msg,) = self.request(RTM_GETLINK, 0, ifinfomsg.pack(0, 0, index, 0, 0) + name_attr)
        except NetlinkError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise
        return _decode_link(msg)

    def addresses(self) -> list[Address]:
        """Every address of the namespace, both families."""
        return [_decode_address(msg) for msg in
                self.request(RTM_GETADDR, NLM_F_DUMP, ifaddrmsg.pack(0, 0, 0, 0, 0))]

    def default_route_interface(self) -> int | None:
        """The index of the interface of the IPv4 default route of the main table, if any."""
        for msg in self.request(RTM_GETROUTE, NLM_F_DUMP, rtmsg.pack(socket.AF_INET, *[0] * 8)):
            _family, dst_len, _src_len, _tos, table, *_rest = rtmsg.unpack_from(msg)
            attrs = attributes(msg, rtmsg.size)
            if dst_len == 0 and (_u32(attrs.get(RTA_TABLE)) or table) == RT_TABLE_MAIN:
                oif = _u32(attrs.get(RTA_OIF))
                if oif is not None:
                    return oif
        return None

    def add_vxlan(self, name: str, vni: int, port: int, *, mtu: int | None = None,
                  mac: str | None = None, learning: bool | None = None,
                  underlay: int | None = None, local: str | None = None) -> None:
        """Make a VXLAN device; what is None is left to the kernel (the preflight's probe
        gives only the VNI and port). ``underlay``: the index of the underlay's link."""
        data = attr(IFLA_VXLAN_ID, u32.pack(vni)) + attr(IFLA_VXLAN_PORT, be16.pack(port))
        if learning is not None:
            data += attr(IFLA_VXLAN_LEARNING, u8.pack(learning))
        if underlay is not None:
            data += attr(IFLA_VXLAN_LINK, u32.pack(underlay))
        if local is not None:
            data += attr(IFLA_VXLAN_LOCAL6 if inet.is_ipv6(local) else IFLA_VXLAN_LOCAL,
                         inet.packed(local))
        self.request(RTM_NEWLINK, _CREATE, ifinfomsg.pack(0, 0, 0, 0, 0)
                     + attr(IFLA_IFNAME, name.encode() + b"\0") + _link_attrs(mtu, mac)
                     + _vxlan_info(data))

    def set_link(self, index: int, *, mtu: int | None = None, mac: str | None = None,
                 master: int | None = None, up: bool = False,
                 vxlan_learning: bool | None = None) -> None:
        """Change what is given of the link ``index``: MTU, MAC, master (0: none), up, and a
        VXLAN device's learning."""
        flag = IFF_UP if up else 0
        body = ifinfomsg.pack(0, 0, index, flag, flag) + _link_attrs(mtu, mac)
        if master is not None:
            body += attr(IFLA_MASTER, u32.pack(master))
        if vxlan_learning is not None:
            body += _vxlan_info(attr(IFLA_VXLAN_LEARNING, u8.pack(vxlan_learning)))
        self.request(RTM_NEWLINK, _CHANGE, body)

    def delete_link(self, index: int) -> None:
        self.request(RTM_DELLINK, _CHANGE, ifinfomsg.pack(0, 0, index, 0, 0))

    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        self.request(RTM_NEWADDR, _CREATE, _address(index, address, prefixlen))

    def delete_address(self, index: int, address: str, prefixlen: int) -> None:
        self.request(RTM_DELADDR, _CHANGE, _address(index, address, prefixlen))

    def append_fdb(self, index: int, mac: str, dst: str) -> None:
        """Add the permanent entry ``mac`` -> remote ``dst`` to the FDB of the (VXLAN) link
        ``index``, beside any other destination of ``mac`` (the all-zeros MAC has one per
        peer)."""
        self.request(RTM_NEWNEIGH, NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND,
                     _fdb_entry(index, mac, dst))

    def delete_fdb(self, index: int, mac: str, dst: str) -> None:
        self.request(RTM_DELNEIGH, _CHANGE, _fdb_entry(index, mac, dst))

    def replace_neighbour(self, index: int, address: str, mac: str) -> None:
        """Make ``address`` a permanent ARP/NDP entry at ``mac`` on the link ``index``."""
        self.request(RTM_NEWNEIGH, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
                     _neighbour(index, address, mac))

    def delete_neighbour(self, index: int, address: str, mac: str) -> None:
        self.request(RTM_DELNEIGH, _CHANGE, _neighbour(index, address, mac))

    def fdb(self, index: int) -> list[tuple[str, str]]:
        """(MAC, remote address) of each entry made by hand in the bridge FDB of the (VXLAN)
        link ``index``."""
        return self._permanent(index, ifinfomsg.pack(AF_BRIDGE, 0, index, 0, 0))

    def neighbours(self, index: int) -> list[tuple[str, str]]:
        """(IP address, MAC) of each ARP and NDP entry made by hand on the link ``index``."""
        return [(ip, mac) for mac, ip in self._permanent(
            index, ndmsg.pack(0, 0, 0, 0, 0) + attr(NDA_IFINDEX, u32.pack(index)))]

    def _permanent(self, index: int, request: bytes) -> list[tuple[str, str]]:
        """(MAC, IP address) of each NUD_PERMANENT entry (made by hand, not learned by the
        kernel) that has both, from a neighbour dump the kernel filters on the link ``index``;
        a kernel without that filter sends every link's entries, so they are checked here too.
        Only the entries kept are decoded: a dump holds thousands."""
        entries = []
        for msg in self.request(RTM_GETNEIGH, NLM_F_DUMP, request):
            _family, ifindex, state, _flags, _type = ndmsg.unpack_from(msg)
            if ifindex == index and state & NUD_PERMANENT:
                attrs = attributes(msg, ndmsg.size, only=(NDA_LLADDR, NDA_DST))
                if len(attrs) == 2:
                    entries.append((attrs[NDA_LLADDR].hex(":"), inet.text(attrs[NDA_DST])))
        return entries


def _link_attrs(mtu: int | None, mac: str | None) -> bytes:
    return ((attr(IFLA_MTU, u32.pack(mtu)) if mtu is not None else b"")
            + (attr(IFLA_ADDRESS, _mac_bytes(mac)) if mac is not None else b""))


def _vxlan_info(data: bytes) -> bytes:
    """IFLA_LINKINFO of kind vxlan holding ``data`` (IFLA_VXLAN_* attributes)."""
    return attr(IFLA_LINKINFO, attr(IFLA_INFO_KIND, b"vxlan\0") + attr(IFLA_INFO_DATA, data))


def _address(index: int, address: str, prefixlen: int) -> bytes:
    """An address of the link ``index``; IPv4 names it twice, as local and (no peer) as
    the address."""
    raw = inet.packed(address)
    body = ifaddrmsg.pack(inet.family(address), prefixlen, 0, 0, index) + attr(IFA_ADDRESS, raw)
    return body + attr(IFA_LOCAL, raw) if len(raw) == 4 else body


def _fdb_entry(index: int, mac: str, dst: str) -> bytes:
    return (ndmsg.pack(AF_BRIDGE, index, NUD_PERMANENT | NUD_NOARP, NTF_SELF, 0)
            + attr(NDA_LLADDR, _mac_bytes(mac)) + attr(NDA_DST, inet.packed(dst)))


def _neighbour(index: int, address: str, mac: str) -> bytes:
    return (ndmsg.pack(inet.family(address), index, NUD_PERMANENT, 0, 0)
            + attr(NDA_DST, inet.packed(address)) + attr(NDA_LLADDR, _mac_bytes(mac)))


def _mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def _u32(raw) -> int | None:
    return u32.unpack(raw)[0] if raw is not None else None


def _text(raw) -> str | None:
    return bytes(raw).split(b"\0", 1)[0].decode() if raw is not None else None


def _mac(raw) -> str | None:
    return raw.hex(":") if raw is not None else None


def _ip(raw) -> str | None:
    return inet.text(raw) if raw is not None else None


def _decode_link(msg: memoryview) -> Link:
    _family, _type, index, flags, _change = ifinfomsg.unpack_from(msg)
    attrs = attributes(msg, ifinfomsg.size)
    info = attributes(attrs.get(IFLA_LINKINFO, b""))
    kind = _text(info.get(IFLA_INFO_KIND))
    vxlan = None
    if kind == "vxlan":
        data = attributes(info.get(IFLA_INFO_DATA, b""))
        port = data.get(IFLA_VXLAN_PORT)
        vxlan = Vxlan(vni=_u32(data.get(IFLA_VXLAN_ID)),
                      port=be16.unpack(port)[0] if port is not None else None,
                      local=_ip(data.get(IFLA_VXLAN_LOCAL) or data.get(IFLA_VXLAN_LOCAL6)),
                      link=_u32(data.get(IFLA_VXLAN_LINK)),
                      learning=bool(data.get(IFLA_VXLAN_LEARNING, b"\0")[0]))
    return Link(index=index, name=_text(attrs.get(IFLA_IFNAME)), mtu=_u32(attrs.get(IFLA_MTU)),
                up=bool(flags & IFF_UP), master=_u32(attrs.get(IFLA_MASTER)), kind=kind,
                vxlan=vxlan, mac=_mac(attrs.get(IFLA_ADDRESS)))


def _decode_address(msg: memoryview) -> Address:
    _family, prefixlen, _flags, _scope, index = ifaddrmsg.unpack_from(msg)
    return Address(index, _ip(attributes(msg, ifaddrmsg.size).get(IFA_ADDRESS)), prefixlen)
