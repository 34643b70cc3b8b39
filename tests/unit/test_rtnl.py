"""module_utils.rtnl's changes byte by byte, the requests built here after the kernel's
include/uapi/linux headers independently of rtnl.py (they are the bytes pyroute2 0.9.7 sent
for the same changes, compared under strace), and the vxlan plan's steps as rtnl calls."""

import errno
import socket
import struct
from dataclasses import replace

import pytest
from ansible_collections.weave.fastdp.plugins.module_utils import rtnl, vxlan
from ansible_collections.weave.fastdp.plugins.module_utils.netlink import NetlinkError

from tests.netlink_fake import error, install

pytestmark = pytest.mark.unit

RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_DELADDR, RTM_NEWNEIGH, RTM_DELNEIGH = (
    16, 17, 20, 21, 28, 29)
ACK, CREATE_EXCL, CREATE_APPEND, CREATE_REPLACE = 0x5, 0x605, 0xC05, 0x505  # with REQUEST
MAC = b"\x02\x00\x00\x00\x00\x11"


def nla(attr_type, payload):
    return struct.pack("=HH", 4 + len(payload), attr_type) + payload + bytes(-len(payload) % 4)


def ifinfomsg(index=0, flags=0, change=0):
    return struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, flags, change)


def ifaddrmsg(family, prefixlen, index):
    return struct.pack("=BBBBi", family, prefixlen, 0, 0, index)


def ndmsg(family, index, state, flags):
    return struct.pack("=BxxxiHBB", family, index, state, flags, 0)


def vxlan_info(*data):
    """IFLA_LINKINFO (18): IFLA_INFO_KIND (1) "vxlan", IFLA_INFO_DATA (2)."""
    return nla(18, nla(1, b"vxlan\0") + nla(2, b"".join(data)))


def sent(monkeypatch, change):
    """The one request ``change(rtnl)`` sends, acknowledged."""
    fake = install(monkeypatch, error(1, 0))
    with rtnl.Rtnl() as r:
        change(r)
    (request,) = fake.sent
    return request


def request(msg_type, flags, body):
    return struct.pack("=IHHII", 16 + len(body), msg_type, flags, 1, 0) + body


V4 = socket.inet_pton(socket.AF_INET, "198.51.100.11")
V6 = socket.inet_pton(socket.AF_INET6, "2001:db8::11")


@pytest.mark.parametrize(("change", "expected"), [
    # the mesh's device: name, MTU, MAC; VNI, port (big-endian), learning, underlay, local
    (lambda r: r.add_vxlan("wf-test", 42, 6784, mtu=1416, mac="02:00:00:00:00:11",
                           learning=True, underlay=3, local="198.51.100.11"),
     request(RTM_NEWLINK, CREATE_EXCL, ifinfomsg() + nla(3, b"wf-test\0")
             + nla(4, struct.pack("=I", 1416)) + nla(1, MAC)
             + vxlan_info(nla(1, struct.pack("=I", 42)), nla(15, struct.pack("!H", 6784)),
                          nla(7, b"\1"), nla(3, struct.pack("=I", 3)), nla(4, V4)))),
    (lambda r: r.add_vxlan("wf-six", 6, 6784, mtu=1280, learning=True, underlay=3,
                           local="2001:db8::11"),
     request(RTM_NEWLINK, CREATE_EXCL, ifinfomsg() + nla(3, b"wf-six\0")
             + nla(4, struct.pack("=I", 1280))
             + vxlan_info(nla(1, struct.pack("=I", 6)), nla(15, struct.pack("!H", 6784)),
                          nla(7, b"\1"), nla(3, struct.pack("=I", 3)), nla(17, V6)))),
    # the preflight's probe: VNI and port alone
    (lambda r: r.add_vxlan("wfprobe0", vni=42, port=6784),
     request(RTM_NEWLINK, CREATE_EXCL, ifinfomsg() + nla(3, b"wfprobe0\0")
             + vxlan_info(nla(1, struct.pack("=I", 42)), nla(15, struct.pack("!H", 6784))))),
    (lambda r: r.set_link(7, mtu=1400),
     request(RTM_NEWLINK, ACK, ifinfomsg(7) + nla(4, struct.pack("=I", 1400)))),
    (lambda r: r.set_link(7, mac="02:00:00:00:00:11"),
     request(RTM_NEWLINK, ACK, ifinfomsg(7) + nla(1, MAC))),
    (lambda r: r.set_link(7, master=4),
     request(RTM_NEWLINK, ACK, ifinfomsg(7) + nla(10, struct.pack("=I", 4)))),
    (lambda r: r.set_link(7, master=0),
     request(RTM_NEWLINK, ACK, ifinfomsg(7) + nla(10, struct.pack("=I", 0)))),
    (lambda r: r.set_link(7, vxlan_learning=True),
     request(RTM_NEWLINK, ACK, ifinfomsg(7) + vxlan_info(nla(7, b"\1")))),
    (lambda r: r.set_link(7, up=True),  # IFF_UP in flags and in the change mask
     request(RTM_NEWLINK, ACK, ifinfomsg(7, flags=1, change=1))),
    (lambda r: r.delete_link(7), request(RTM_DELLINK, ACK, ifinfomsg(7))),
    # IPv4: IFA_ADDRESS (1) and IFA_LOCAL (2); IPv6: IFA_ADDRESS alone
    (lambda r: r.add_address(7, "203.0.113.1", 24),
     request(RTM_NEWADDR, CREATE_EXCL, ifaddrmsg(socket.AF_INET, 24, 7)
             + nla(1, bytes([203, 0, 113, 1])) + nla(2, bytes([203, 0, 113, 1])))),
    (lambda r: r.delete_address(7, "203.0.113.1", 24),
     request(RTM_DELADDR, ACK, ifaddrmsg(socket.AF_INET, 24, 7)
             + nla(1, bytes([203, 0, 113, 1])) + nla(2, bytes([203, 0, 113, 1])))),
    (lambda r: r.add_address(7, "2001:db8::11", 64),
     request(RTM_NEWADDR, CREATE_EXCL, ifaddrmsg(socket.AF_INET6, 64, 7) + nla(1, V6))),
    (lambda r: r.delete_address(7, "2001:db8::11", 64),
     request(RTM_DELADDR, ACK, ifaddrmsg(socket.AF_INET6, 64, 7) + nla(1, V6))),
    # FDB: AF_BRIDGE, NUD_PERMANENT | NUD_NOARP, NTF_SELF; NDA_LLADDR (2), NDA_DST (1)
    (lambda r: r.append_fdb(7, "00:00:00:00:00:00", "198.51.100.11"),
     request(RTM_NEWNEIGH, CREATE_APPEND, ndmsg(7, 7, 0xC0, 0x2) + nla(2, bytes(6)) + nla(1, V4))),
    (lambda r: r.append_fdb(7, "02:00:00:00:00:11", "2001:db8::11"),
     request(RTM_NEWNEIGH, CREATE_APPEND, ndmsg(7, 7, 0xC0, 0x2) + nla(2, MAC) + nla(1, V6))),
    (lambda r: r.delete_fdb(7, "00:00:00:00:00:00", "198.51.100.11"),
     request(RTM_DELNEIGH, ACK, ndmsg(7, 7, 0xC0, 0x2) + nla(2, bytes(6)) + nla(1, V4))),
    # neighbours: the address's family, NUD_PERMANENT; NDA_DST, NDA_LLADDR
    (lambda r: r.replace_neighbour(7, "198.51.100.11", "02:00:00:00:00:11"),
     request(RTM_NEWNEIGH, CREATE_REPLACE, ndmsg(socket.AF_INET, 7, 0x80, 0)
             + nla(1, V4) + nla(2, MAC))),
    (lambda r: r.replace_neighbour(7, "2001:db8::11", "02:00:00:00:00:11"),
     request(RTM_NEWNEIGH, CREATE_REPLACE, ndmsg(socket.AF_INET6, 7, 0x80, 0)
             + nla(1, V6) + nla(2, MAC))),
    (lambda r: r.delete_neighbour(7, "2001:db8::11", "02:00:00:00:00:11"),
     request(RTM_DELNEIGH, ACK, ndmsg(socket.AF_INET6, 7, 0x80, 0) + nla(1, V6) + nla(2, MAC))),
])
def test_each_change_is_one_acknowledged_request_of_the_kernels_layout(monkeypatch, change,
                                                                        expected):
    assert sent(monkeypatch, change) == expected


def test_a_refused_change_raises_with_the_kernels_reason(monkeypatch):
    install(monkeypatch, error(1, errno.EEXIST, "FDB entry already exists"))
    with rtnl.Rtnl() as r, pytest.raises(NetlinkError) as raised:
        r.append_fdb(7, "00:00:00:00:00:00", "198.51.100.11")
    assert raised.value.errno == errno.EEXIST
    assert str(raised.value) == "File exists (FDB entry already exists)"


class RecordingRtnl:
    """Links by name, the calls made, and a refusal of the call named ``refuse``."""

    def __init__(self, links, refuse=None):
        self.links, self.refuse, self.calls = links, refuse, []

    def link(self, *, name=None, index=0):
        found = self.links.get(name)
        return rtnl.Link(found, name, 1500, False, None, None) if found else None

    def __getattr__(self, method):
        def call(*args, **kwargs):
            self.calls.append((method, *args, *sorted(kwargs.items())))
            if method == self.refuse:
                raise NetlinkError(errno.EEXIST)
            if method == "add_vxlan":
                self.links[args[0]] = 9
        return call


WANT = vxlan.Device(name="wf-test", vni=42, port=6784, local="198.51.100.11",
                    underlay_interface="eth0", mtu=1416, addresses=frozenset({"203.0.113.1/24"}),
                    fdb=frozenset({("00:00:00:00:00:00", "198.51.100.12")}),
                    mac="02:00:00:00:00:11",
                    neighbours=frozenset({("203.0.113.2", "02:00:00:00:00:12")}))


def test_a_new_device_is_made_then_given_its_addresses_entries_and_set_up():
    calls = RecordingRtnl({"eth0": 3})
    vxlan.plan(None, WANT, keep_peer=lambda _: False).apply(calls)
    assert calls.calls == [
        ("add_vxlan", "wf-test", 42, 6784, ("learning", True), ("local", "198.51.100.11"),
         ("mac", "02:00:00:00:00:11"), ("mtu", 1416), ("underlay", 3)),
        ("add_address", 9, "203.0.113.1", 24),
        ("append_fdb", 9, "00:00:00:00:00:00", "198.51.100.12"),
        ("replace_neighbour", 9, "203.0.113.2", "02:00:00:00:00:12"),
        ("set_link", 9, ("up", True))]


def test_a_device_changed_in_place_and_a_refusal_names_what_was_done_before_it():
    before = vxlan.Device(name="wf-test", vni=42, port=6784, local="198.51.100.11",
                          underlay_interface="eth0", learning=False, mtu=1400, bridge="br0",
                          addresses=frozenset({"203.0.113.9/24"}),
                          fdb=frozenset({("00:00:00:00:00:00", "198.51.100.13")}),
                          mac="02:00:00:00:00:99",
                          neighbours=frozenset({("203.0.113.3", "02:00:00:00:00:13")}))
    calls = RecordingRtnl({"wf-test": 7, "br1": 5})
    change = vxlan.plan(before, replace(WANT, bridge="br1"), keep_peer=lambda _: False)
    change.apply(calls)
    assert calls.calls == [
        ("delete_neighbour", 7, "203.0.113.3", "02:00:00:00:00:13"),
        ("delete_address", 7, "203.0.113.9", 24),
        ("delete_fdb", 7, "00:00:00:00:00:00", "198.51.100.13"),
        ("set_link", 7, ("mtu", 1416)),
        ("set_link", 7, ("mac", "02:00:00:00:00:11")),
        ("set_link", 7, ("vxlan_learning", True)),
        ("set_link", 7, ("master", 5)),
        ("add_address", 7, "203.0.113.1", 24),
        ("append_fdb", 7, "00:00:00:00:00:00", "198.51.100.12"),
        ("replace_neighbour", 7, "203.0.113.2", "02:00:00:00:00:12")]
    released = vxlan.plan(before, replace(before, bridge=""), keep_peer=lambda _: True)
    calls = RecordingRtnl({"wf-test": 7})
    released.apply(calls)
    assert calls.calls == [("set_link", 7, ("master", 0))]
    with pytest.raises(vxlan.VxlanError) as raised:
        change.apply(RecordingRtnl({"wf-test": 7, "br1": 5}, refuse="delete_fdb"))
    assert str(raised.value) == (
        "remove fdb 00:00:00:00:00:00 dst 198.51.100.13: File exists (done before it: "
        "remove neigh 203.0.113.3 lladdr 02:00:00:00:00:13; remove address 203.0.113.9/24)")


def test_a_master_that_is_gone_by_the_time_of_the_change_is_no_such_device():
    before = replace(WANT, up=True)
    change = vxlan.plan(before, replace(WANT, bridge="br1"), keep_peer=lambda _: True)
    with pytest.raises(vxlan.VxlanError, match=r"^set master None -> br1: No such device "):
        change.apply(RecordingRtnl({"wf-test": 7}))


def test_a_name_is_at_most_15_bytes_as_the_kernel_takes_it():
    assert vxlan.MAX_NAME == rtnl.IFNAMSIZ - 1 == 15
