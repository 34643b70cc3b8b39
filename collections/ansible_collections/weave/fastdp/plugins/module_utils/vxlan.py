"""The VXLAN device of a mesh: one device, one all-zeros FDB entry per peer (head-end
replication of broadcast and unknown frames), overlay addresses, MTU. The device learns which
peer each overlay MAC is behind from the frames it receives (only over ESP from a peer: the
guards drop the rest), so unicast goes to that peer alone, not to every peer.

A mesh declares more than that: each device's MAC, a permanent FDB entry for each peer's MAC
and a permanent ARP/NDP entry for each peer's overlay address. Then traffic between the hosts'
own overlay addresses never asks ARP and never floods, however long it was idle (learned
entries age out after 300 s, and the next frame would go to every peer again).

Decide first (``Plan``: the wanted device against what ``Kernel`` reads), act second
(``Plan.apply``), so check mode predicts exactly what a real run does. Only the device named
in the parameters is ever touched.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import re
from dataclasses import dataclass, field, replace

from ansible_collections.weave.fastdp.plugins.module_utils import arguments, inet
from ansible_collections.weave.fastdp.plugins.module_utils.netlink import NetlinkError
from ansible_collections.weave.fastdp.plugins.module_utils.netns import NetnsError, entered
from ansible_collections.weave.fastdp.plugins.module_utils.rtnl import IFNAMSIZ, Link, Rtnl

VXLAN_OVERHEAD = {4: 50, 6: 70}  # outer Ethernet 14 + IP 20/40 + UDP 8 + VXLAN 8
# ESP transport with a 16-byte ICV: SPI 4 + sequence 4 + IV 8 + pad length 1 + next header 1
# + ICV 16. No padding while the overlay MTU is a multiple of 4 (every larger value is refused).
ESP_OVERHEAD = 34
MIN_MTU = 68
MAX_VNI = (1 << 24) - 1
ALL_ZEROS = "00:00:00:00:00:00"
MAX_NAME = IFNAMSIZ - 1  # the kernel's limit, without the terminating NUL
_MAC = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")


class VxlanError(Exception):
    """Bad input, naming the parameter to fix."""


def max_overlay_mtu(underlay_address: str, underlay_mtu: int) -> int:
    """The largest overlay MTU whose VXLAN-in-ESP packets fit the underlay MTU, rounded down
    to a multiple of 4 (1500 -> 1416 over IPv4, 1396 over IPv6)."""
    room = underlay_mtu - VXLAN_OVERHEAD[inet.version(underlay_address)] - ESP_OVERHEAD
    return room // 4 * 4


@dataclass(frozen=True)
class Device:
    """A VXLAN device as declared or as found; ``fdb`` holds (MAC, peer address) pairs,
    ``neighbours`` (overlay address, MAC) pairs; ``mac`` None: not declared."""

    name: str
    vni: int
    port: int
    local: str
    underlay_interface: str
    learning: bool = True
    mtu: int = 0
    up: bool = True
    bridge: str | None = None
    addresses: frozenset[str] = frozenset()
    fdb: frozenset[tuple[str, str]] = frozenset()
    mac: str | None = None
    neighbours: frozenset[tuple[str, str]] = frozenset()

    def identity(self) -> tuple:
        """What the kernel cannot change in place."""
        return self.vni, self.port, self.local, self.underlay_interface

    def lines(self) -> list[str]:
        """Readable, sorted: the diff's before/after."""
        head = (f"device {self.name}: vni {self.vni} port {self.port} local {self.local} "
                f"dev {self.underlay_interface}{' learning' if self.learning else ' nolearning'} "
                f"mtu {self.mtu} {'up' if self.up else 'down'}")
        if self.mac:
            head += f" address {self.mac}"
        if self.bridge:
            head += f" master {self.bridge}"
        return ([head] + [f"address {a}" for a in sorted(self.addresses, key=_cidr_key)]
                + [f"fdb {mac} dst {dst}" for mac, dst in sorted(self.fdb, key=_fdb_key)]
                + [f"neigh {ip} lladdr {mac}" for ip, mac in sorted(self.neighbours,
                                                                    key=_neighbour_key)])

    def facts(self) -> dict:
        macs_at: dict[str, list[str]] = {}  # peer -> MACs: a thousand peers sort, not each entry
        for mac, dst in self.fdb:
            macs_at.setdefault(dst, []).append(mac)
        peers = sorted(macs_at, key=inet.key)
        return {"name": self.name, "vni": self.vni, "port": self.port, "local": self.local,
                "underlay_interface": self.underlay_interface, "mtu": self.mtu,
                "bridge": self.bridge, "mac": self.mac,
                "addresses": sorted(self.addresses, key=_cidr_key),
                "peers": [dst for dst in peers if ALL_ZEROS in macs_at[dst]],
                "fdb": [{"mac": mac, "peer": dst} for dst in peers for mac in sorted(macs_at[dst])],
                "neighbours": [{"address": ip, "mac": mac} for ip, mac in
                               sorted(self.neighbours, key=_neighbour_key)]}


class Kernel:
    """What one run sees through ``rtnl``: the addresses, the neighbours and FDB entries made
    by hand on the device named, and links looked up by name or index when asked (each once),
    never a dump of every link."""

    def __init__(self, rtnl: Rtnl, name: str):
        self.rtnl = rtnl
        self._links: dict[str | int, Link | None] = {}
        self.addresses = rtnl.addresses()
        found = self.link(name)
        self.fdb, self.neighbours = [], []
        if found is not None:
            self.fdb, self.neighbours = rtnl.fdb(found.index), rtnl.neighbours(found.index)

    def link(self, name: str | None = None, index: int | None = None) -> Link | None:
        key = name if name is not None else index
        if key not in self._links:
            self._links[key] = self.rtnl.link(name=name, index=index or 0)
        return self._links[key]

    def name_of(self, index: int | None) -> str | None:
        link = self.link(index=index) if index else None
        return link.name if link is not None else None

    def device(self, name: str) -> Device | None:
        """The device ``name`` as found; refuses a device of that name that is not VXLAN."""
        link = self.link(name)
        if link is None:
            return None
        if link.kind != "vxlan":
            raise VxlanError(f"name: {name} exists and is a {link.kind or 'plain'} device, "
                             "not VXLAN; it is not this module's to change")
        data = link.vxlan
        return Device(
            name=name, vni=data.vni, port=data.port, local=data.local,
            underlay_interface=self.name_of(data.link), learning=data.learning, mtu=link.mtu,
            up=link.up, bridge=self.name_of(link.master),
            addresses=frozenset(f"{a.address}/{a.prefixlen}" for a in self.addresses
                                if a.index == link.index and not _link_local(a.address)),
            fdb=frozenset(self.fdb),
            mac=link.mac,
            neighbours=frozenset(self.neighbours),
        )


def wanted(params: dict, seen: Kernel) -> tuple[Device, int]:
    """The declared device, checked against this host (interfaces, addresses, MTU), and the
    largest overlay MTU its underlay allows."""
    underlay = params["underlay_interface"] or next(
        (seen.name_of(a.index) for a in seen.addresses if a.address == params["local"]), None)
    if underlay is None:
        raise VxlanError(f"local: {params['local']} is not an address of this host "
                         "(or set underlay_interface)")
    link = seen.link(underlay)
    if link is None:
        raise VxlanError(f"underlay_interface: {underlay} does not exist")
    limit = max_overlay_mtu(params["local"], link.mtu)
    mtu = params["mtu"] or limit
    if not MIN_MTU <= mtu <= limit:
        raise VxlanError(f"mtu: {mtu} leaves no room for VXLAN and ESP over {underlay}'s MTU "
                         f"{link.mtu}: the largest allowed value is {limit}"
                         if mtu > limit else f"mtu: {mtu} is below the minimum {MIN_MTU}")
    bridge = params["bridge"]
    if bridge:
        master = seen.link(bridge)
        if master is None:
            raise VxlanError(f"bridge: {bridge} does not exist")
        if master.kind != "bridge":
            raise VxlanError(f"bridge: {bridge} is not a bridge")
    fdb = {(ALL_ZEROS, peer) for peer in params["peers"]}
    fdb.update(params["macs"])
    return Device(name=params["name"], vni=params["vni"], port=params["port"],
                  local=params["local"], underlay_interface=underlay, mtu=mtu, bridge=bridge,
                  addresses=frozenset(params["addresses"]), fdb=frozenset(fdb),
                  mac=params["mac"],
                  neighbours=frozenset(params["neighbours"])), limit


@dataclass
class Plan:
    """What a run changes: readable ``changes`` and the netlink calls that make them."""

    before: Device | None
    after: Device | None
    recreate: str | None = None
    steps: list[tuple[str, object]] = field(default_factory=list)

    @property
    def changes(self) -> list[str]:
        return [text for text, _action in self.steps]

    def apply(self, rtnl: Rtnl) -> None:
        """Make the changes through ``rtnl``, in order; the first the kernel refuses stops the
        run, named with the changes made before it."""
        if not self.steps:
            return
        target = _Target(rtnl, (self.after or self.before).name)
        for done, (text, step) in enumerate(self.steps):
            try:
                step(target)
            except OSError as exc:  # NetlinkError: the kernel's reason
                raise VxlanError(f"{text}: {exc} (done before it: "
                                 f"{'; '.join(self.changes[:done]) or 'nothing'})") from exc


def plan(before: Device | None, want: Device | None, keep_peer) -> Plan:
    """``want`` None: remove the device. FDB entries not wanted, and neighbours whose MAC's
    FDB entry is not wanted, are removed when ``keep_peer(address)`` is false (peers outside
    this run, or purge off)."""
    if want is None:
        result = Plan(before, None)
        if before is not None:
            result.steps.append((f"delete device {before.name}", _Target.delete))
        return result
    if before is not None:
        kept = {(mac, dst) for mac, dst in before.fdb - want.fdb if keep_peer(dst)}
        not_wanted = before.neighbours - want.neighbours
        peer_of = dict(before.fdb) if not_wanted else {}
        kept_neighbours = {(ip, mac) for ip, mac in not_wanted if keep_peer(peer_of.get(mac))}
        if kept or kept_neighbours:
            want = replace(want, fdb=want.fdb | kept, neighbours=want.neighbours | kept_neighbours)
    result = Plan(before, want)
    if before is not None and before.identity() != want.identity():
        result.recreate = "; ".join(
            f"{label} {old} -> {new}" for label, old, new in zip(
                ("vni", "port", "local", "underlay_interface"),
                before.identity(), want.identity()) if old != new)
        result.steps.append((f"delete device {before.name} to recreate it ({result.recreate})",
                             _Target.delete))
        before = None
    if before is None:
        result.steps.append((f"create {want.lines()[0]}", lambda t: t.create(want)))
        before = Device(want.name, want.vni, want.port, want.local, want.underlay_interface,
                        mtu=want.mtu, up=False, mac=want.mac)
    steps = result.steps
    for ip, mac in sorted(before.neighbours - want.neighbours, key=_neighbour_key):
        steps.append((f"remove neigh {ip} lladdr {mac}",
                      lambda t, i=ip, m=mac: t.rtnl.delete_neighbour(t.index, i, m)))
    for cidr in sorted(before.addresses - want.addresses, key=_cidr_key):
        steps.append((f"remove address {cidr}",
                      lambda t, c=cidr: t.rtnl.delete_address(t.index, *_split(c))))
    for mac, dst in sorted(before.fdb - want.fdb, key=_fdb_key):
        steps.append((f"remove fdb {mac} dst {dst}",
                      lambda t, m=mac, d=dst: t.rtnl.delete_fdb(t.index, m, d)))
    if before.mtu != want.mtu:
        steps.append((f"set mtu {before.mtu} -> {want.mtu}",
                      lambda t: t.rtnl.set_link(t.index, mtu=want.mtu)))
    if want.mac is not None and before.mac != want.mac:
        steps.append((f"set address {want.mac} (was {before.mac})",
                      lambda t: t.rtnl.set_link(t.index, mac=want.mac)))
    if before.learning != want.learning:
        steps.append(("set learning (was nolearning)",
                      lambda t: t.rtnl.set_link(t.index, vxlan_learning=True)))
    if want.bridge is not None and before.bridge != (want.bridge or None):
        steps.append((f"set master {before.bridge} -> {want.bridge or None}",
                      lambda t: t.rtnl.set_link(
                          t.index, master=t.index_of(want.bridge) if want.bridge else 0)))
    for cidr in sorted(want.addresses - before.addresses, key=_cidr_key):
        steps.append((f"add address {cidr}",
                      lambda t, c=cidr: t.rtnl.add_address(t.index, *_split(c))))
    for mac, dst in sorted(want.fdb - before.fdb, key=_fdb_key):
        steps.append((f"add fdb {mac} dst {dst}",
                      lambda t, m=mac, d=dst: t.rtnl.append_fdb(t.index, m, d)))
    for ip, mac in sorted(want.neighbours - before.neighbours, key=_neighbour_key):
        steps.append((f"add neigh {ip} lladdr {mac}",
                      lambda t, i=ip, m=mac: t.rtnl.replace_neighbour(t.index, i, m)))
    if not before.up:
        steps.append(("set up", lambda t: t.rtnl.set_link(t.index, up=True)))
    if want.bridge is None:  # not managed: report what it is
        result.after = replace(result.after, bridge=before.bridge)
    if want.mac is None:
        result.after = replace(result.after, mac=before.mac)
    return result


class _Target:
    """The device being changed through ``rtnl``; its index is looked up again after it is
    (re)created."""

    def __init__(self, rtnl: Rtnl, name: str):
        self.rtnl, self.name, self._index = rtnl, name, None

    @property
    def index(self) -> int:
        if self._index is None:
            self._index = self.index_of(self.name)
        return self._index

    def index_of(self, name: str) -> int:
        link = self.rtnl.link(name=name)
        if link is None:
            raise NetlinkError(errno.ENODEV)
        return link.index

    def delete(self) -> None:
        self.rtnl.delete_link(self.index)
        self._index = None

    def create(self, want: Device) -> None:
        self.rtnl.add_vxlan(want.name, want.vni, want.port, mtu=want.mtu, mac=want.mac,
                            learning=True, underlay=self.index_of(want.underlay_interface),
                            local=want.local)


def _split(cidr: str) -> tuple[str, int]:
    address, prefix = cidr.split("/")
    return address, int(prefix)


def declared(params: dict) -> dict:
    """The parameters checked without a kernel, each error naming its parameter, with addresses
    in the kernel's spelling and MACs in lower case, so declared and found compare equal;
    ``macs`` as (MAC, peer) and ``neighbours`` as (address, MAC) pairs, as a Device holds them."""
    name = params["name"]
    if not 0 < len(name) <= MAX_NAME or any(c in name for c in "/ \t\n:"):
        raise VxlanError(f"name: {name!r} is not an interface name (1-{MAX_NAME} characters, "
                         "no '/', ':' or blanks)")
    if params["state"] == "absent":
        return params
    if not 1 <= params["vni"] <= MAX_VNI:
        raise VxlanError(f"vni: {params['vni']} is outside 1..{MAX_VNI}")
    if not 1 <= params["port"] <= 65535:
        raise VxlanError(f"port: {params['port']} is outside 1..65535")
    p = dict(params)
    p["local"] = inet.field("local", params["local"], VxlanError)
    peers = _each("peers[{}]", params["peers"], inet.spelled)
    ipv6 = inet.is_ipv6(p["local"])
    other_family = [i for i, peer in enumerate(peers) if inet.is_ipv6(peer) != ipv6]
    if other_family:
        i = other_family[0]
        raise VxlanError(f"peers[{i}]: {params['peers'][i]} is not IPv{inet.version(p['local'])} "
                         "like local")
    p["peers"] = set(peers)
    p["retain"] = set(_each("retain[{}]", params["retain"], inet.spelled))
    p["addresses"] = _each("addresses[{}]", params["addresses"], _interface)
    if params["mac"] is not None:
        p["mac"] = _each("mac", [params["mac"]], _unicast_mac)[0]
    macs = params["macs"]
    mac_peers = _each("macs[{}].peer", [entry["peer"] for entry in macs], inet.spelled)
    strays = [i for i, peer in enumerate(mac_peers) if peer not in p["peers"]]
    if strays:
        raise VxlanError(f"macs[{strays[0]}].peer: {macs[strays[0]]['peer']} is not one of peers")
    p["macs"] = list(zip(_each("macs[{}].mac", [entry["mac"] for entry in macs], _unicast_mac),
                         mac_peers))
    neighbours = params["neighbours"]
    p["neighbours"] = list(zip(
        _each("neighbours[{}].address", [entry["address"] for entry in neighbours], inet.spelled),
        _each("neighbours[{}].mac", [entry["mac"] for entry in neighbours], _unicast_mac)))
    return p


def _each(label: str, values: list, check) -> list:
    """``check`` of each value; its ValueError becomes VxlanError naming ``label`` formatted
    with the value's index. A mesh declares thousands of values: a label is made only for an
    error."""
    checked = []
    for i, value in enumerate(values):
        try:
            checked.append(check(value))
        except ValueError as exc:
            raise VxlanError(f"{label.format(i)}: {exc}") from None
    return checked


def _interface(cidr: str) -> str:
    """``cidr`` as address/prefix in the kernel's spelling."""
    try:
        if "/" in cidr:
            return str(ipaddress.ip_interface(cidr))
    except ValueError:
        pass
    raise ValueError(f"{cidr!r} is not address/prefix")


@functools.lru_cache(maxsize=4096)  # a mesh declares each peer's MAC twice: FDB, neighbour
def _unicast_mac(text: str) -> str:
    """``text`` in lower case; ValueError when it is no unicast MAC."""
    if not _MAC.fullmatch(text) or int(text[:2], 16) & 1 or text == ALL_ZEROS:
        raise ValueError(f"{text!r} is not a unicast MAC address")
    return text.lower()


def _link_local(address: str | None) -> bool:
    return address is not None and ipaddress.ip_address(address).is_link_local


def _cidr_key(cidr: str):
    ip = ipaddress.ip_interface(cidr)
    return ip.version, ip


def _fdb_key(entry: tuple[str, str]):
    return *inet.key(entry[1]), entry[0]  # flat: a thousand entries compare faster


def _neighbour_key(entry: tuple[str, str]):
    return *inet.key(entry[0]), entry[1]


ARGUMENT_SPEC = {
    "name": {"type": "str", "required": True},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "vni": {"type": "int"},
    "port": {"type": "int", "default": 6784},
    "local": {"type": "str"},
    "underlay_interface": {"type": "str"},
    "mtu": {"type": "int"},
    "addresses": {"type": "list", "elements": "str", "default": []},
    "peers": {"type": "list", "elements": "str", "default": []},
    "macs": {"type": "list", "elements": "dict", "default": [], "options": {
        "mac": {"type": "str", "required": True},
        "peer": {"type": "str", "required": True},
    }},
    "mac": {"type": "str"},
    "neighbours": {"type": "list", "elements": "dict", "default": [], "options": {
        "address": {"type": "str", "required": True},
        "mac": {"type": "str", "required": True},
    }},
    "bridge": {"type": "str"},
    **arguments.RETAIN_AND_PURGE,
    **arguments.NETNS,
}
REQUIRED_IF = [("state", "present", ["vni", "local"])]


def converge(module, p: dict) -> dict:
    """The vxlan module's step: the device, its addresses, MTU, master and FDB."""
    try:
        p = declared(p)
        present = p["state"] == "present"
        with entered(p["netns"]), Rtnl() as rtnl:
            seen = Kernel(rtnl, p["name"])
            want, max_mtu = wanted(p, seen) if present else (None, None)
            change = plan(seen.device(p["name"]), want,
                          keep_peer=lambda a: a in p["retain"] or not p["purge"])
            if not module.check_mode:
                change.apply(rtnl)
    except (VxlanError, NetnsError, OSError) as exc:
        raise arguments.Failed(str(exc)) from exc
    if change.recreate:
        module.warn(f"device {p['name']} {'would be' if module.check_mode else 'was'} "
                    f"recreated: {change.recreate}")
    result = {
        "changed": bool(change.steps), "changes": change.changes,
        "recreated": change.recreate is not None,
        "device": change.after.facts() if change.after else None,
        "max_mtu": max_mtu,
    }
    if module._diff:
        result["diff"] = {"before": _text(change.before), "after": _text(change.after),
                          "before_header": p["name"], "after_header": p["name"]}
    return result


def _text(device: Device | None) -> str:
    return "".join(line + "\n" for line in device.lines()) if device else ""
