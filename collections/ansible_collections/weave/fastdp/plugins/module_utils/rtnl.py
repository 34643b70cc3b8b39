"""Reads of links, addresses, the default route, one device's neighbours and its bridge FDB
over a plain NETLINK_ROUTE socket (and the preflight's throwaway VXLAN device).

pyroute2 decodes every attribute of every message, each message through an asyncio loop, and
takes a tenth of a second to import: with a thousand FDB entries that was most of a vxlan
no-op. Here only the attributes used are decoded; changes still go through pyroute2. Layouts
after the kernel's include/uapi/linux rtnetlink.h, if_link.h, if_addr.h and neighbour.h.

    with entered(netns), Rtnl() as rtnl:
        device = rtnl.link(name="wf-weave")
        entries = rtnl.fdb(device.index)
"""

from __future__ import annotations

import errno
import socket
import struct
from dataclasses import dataclass

from ansible_collections.weave.fastdp.plugins.module_utils import inet
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

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE, RTM_GETNEIGH = 16, 18, 22, 26, 30
AF_BRIDGE = 7
IFF_UP = 0x1
IFNAMSIZ = 16  # with the terminating NUL
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO = 1, 3, 4, 10, 18
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_VXLAN_ID, IFLA_VXLAN_LINK, IFLA_VXLAN_LOCAL, IFLA_VXLAN_LEARNING = 1, 3, 4, 7
IFLA_VXLAN_PORT, IFLA_VXLAN_LOCAL6 = 15, 17
IFA_ADDRESS = 1
NDA_DST, NDA_LLADDR, NDA_IFINDEX = 1, 2, 8
NUD_PERMANENT = 0x80
RTA_OIF, RTA_TABLE = 4, 15
RT_TABLE_MAIN = 254

ifinfomsg = struct.Struct("=BxHiII")  # family, type, index, flags, change
ifaddrmsg = struct.Struct("=BBBBi")  # family, prefixlen, flags, scope, index
ndmsg = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
rtmsg = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope,
#                                      type, flags
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
            _, dst_len, _, _, table, *_ = rtmsg.unpack_from(msg)
            attrs = attributes(msg, rtmsg.size)
            if dst_len == 0 and (_u32(attrs.get(RTA_TABLE)) or table) == RT_TABLE_MAIN:
                oif = _u32(attrs.get(RTA_OIF))
                if oif is not None:
                    return oif
        return None

    def add_vxlan(self, name: str, vni: int, port: int) -> None:
        """Make a bare VXLAN device (the preflight's probe, in a throwaway namespace; the
        mesh's device is made by the vxlan module through pyroute2)."""
        data = attr(IFLA_VXLAN_ID, u32.pack(vni)) + attr(IFLA_VXLAN_PORT, be16.pack(port))
        info = attr(IFLA_INFO_KIND, b"vxlan\0") + attr(IFLA_INFO_DATA, data)
        self.request(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                     ifinfomsg.pack(0, 0, 0, 0, 0) + attr(IFLA_IFNAME, name.encode() + b"\0")
                     + attr(IFLA_LINKINFO, info))

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
            _, ifindex, state, _, _ = ndmsg.unpack_from(msg)
            if ifindex == index and state & NUD_PERMANENT:
                attrs = attributes(msg, ndmsg.size, only=(NDA_LLADDR, NDA_DST))
                if len(attrs) == 2:
                    entries.append((attrs[NDA_LLADDR].hex(":"), inet.text(attrs[NDA_DST])))
        return entries


def _u32(raw) -> int | None:
    return u32.unpack(raw)[0] if raw is not None else None


def _text(raw) -> str | None:
    return bytes(raw).split(b"\0", 1)[0].decode() if raw is not None else None


def _mac(raw) -> str | None:
    return raw.hex(":") if raw is not None else None


def _ip(raw) -> str | None:
    return inet.text(raw) if raw is not None else None


def _decode_link(msg: memoryview) -> Link:
    _, _, index, flags, _ = ifinfomsg.unpack_from(msg)
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
    _, prefixlen, _, _, index = ifaddrmsg.unpack_from(msg)
    return Address(index, _ip(attributes(msg, ifaddrmsg.size).get(IFA_ADDRESS)), prefixlen)
