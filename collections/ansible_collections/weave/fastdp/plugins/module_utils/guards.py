"""The guard chains of a mesh: iptables rules that never let tunnel traffic through in clear.

Three chains in the mangle table, ``FASTDP-<mesh>-OUT`` (from OUTPUT), ``-PST`` (from
POSTROUTING) and ``-IN`` (from INPUT). Per peer (Weave 1.9's rule set, moved to the mangle
table): OUT marks UDP local->peer to the tunnel port (the XFRM out policy selects on the mark:
the VXLAN driver leaves the port out of the flow); PST drops marked packets that no policy
transformed; IN marks ESP from the peer
carrying one of its inbound SPIs, drops tunnel packets from the peer without that mark and lets
through only those that this mesh's SA decrypted (``--pol ipsec --strict --reqid <mesh>
--proto esp --mode transport``).

Only the kernel's own VXLAN traffic enters the tunnel. OUT first skips every packet of a local
socket (``-m owner --uid-owner 0-4294967294``) that does not carry the mark already: a user's
datagram to a peer's tunnel port is never marked, so it meets no policy and PST drops it. An
encapsulated packet keeps the socket of the packet inside it, though (a local ping across the
overlay is the ping socket's), so PST first marks every packet leaving through the mesh's VXLAN
device (in both address families: the overlay's family need not be the underlay's); the mark
survives the encapsulation, and the outer packet is marked before OUT sees it. No unprivileged
socket can set a mark (SO_MARK needs CAP_NET_ADMIN).

Tunnel-wide rules end PST and IN, so that a peer whose rules were just removed, or any other
address, can neither receive nor send tunnel traffic: tunnel packets from the local address
that no policy transformed, and inbound tunnel packets no declared peer's rules let through,
are dropped.

Precedence. iptables offers no place that no rule can precede: each table's built-in chain
stops at the first ACCEPT of its own, whatever other rules come after. What it does offer is
that an ACCEPT in one table never skips another table's chains. So every guard lives in the
mangle table, where firewalls (ufw, firewalld's and Docker's filter rules, a filter-table
reload, ``iptables -I INPUT 1 ... -j ACCEPT``) do not reach: mangle INPUT runs before filter
INPUT, mangle POSTROUTING after filter OUTPUT. Within mangle, the jumps stand first in INPUT,
OUTPUT and POSTROUTING (behind nothing but other meshes' guard jumps, which never accept); a
converge puts a displaced or duplicated jump back on top (its deletion and the insertion at 1
are one table commit, which the kernel swaps in at once: there is no moment without the
guard, and only our own jump is ever deleted, by its spec, never a rule by number), and the
status reports a displaced jump as a broken pair. Chains an earlier release kept in the filter
table are removed once the mangle chains are in place.

The rules are data (table, chain, rulespec in iptables-save's own spelling); the chains carry
the mesh name, their ownership marker. A change is one ``iptables-restore --noflush`` over
those chains only, mangle (the whole guard) before filter (an earlier release's chains, removed).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from ansible_collections.weave.fastdp.plugins.module_utils import arguments, inet
from ansible_collections.weave.fastdp.plugins.module_utils.netns import NetnsError, entered

DEFAULT_MARK = 0x20000
KUBERNETES_MARKS = 0x4000 | 0x8000  # kube-proxy's masquerade and drop bits
CHAIN_NAME_MAX = 28
IFNAMSIZ = 15
_MESH_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_DEVICE_RE = re.compile(r"[^\s/:]+")
_SBIN = "/usr/local/sbin:/usr/sbin:/sbin"
GUARD_TABLE = "mangle"
# Guard chain suffix -> the built-in chain of the mangle table that jumps to it.
_HOOKS = {"OUT": "OUTPUT", "PST": "POSTROUTING", "IN": "INPUT"}
# Every table a chain of a mesh may be in (filter: the chains of release 0.1.0), in the order
# a change commits them: the mangle chains, complete, before anything older goes.
TABLES = ("mangle", "filter")
LOCAL_SOCKETS = "0-4294967294"  # every uid a socket's owner can have ((uid_t) -1 is none)
_COUNTERS = re.compile(r"\s*\[(\d+):(\d+)\]")
_TARGET = re.compile(r"(?:^| )-[jg] (\S+)")
_GUARD_CHAIN = re.compile(r"FASTDP-[A-Za-z0-9_.-]+-(?:IN|OUT|PST)")  # of any mesh
# A guard rule's peer: the destination in OUT and PST chains, the source in IN chains.
_PEER = {"OUT": re.compile(r"(?:^| )-d ([^\s/]+)"), "PST": re.compile(r"(?:^| )-d ([^\s/]+)"),
         "IN": re.compile(r"(?:^| )-s ([^\s/]+)")}
_ESPSPI = re.compile(r"--espspi (\d+)")
HEAD, PEER, TAIL = 0, 1, 2  # where a rule stands in its chain


class GuardError(Exception):
    """Bad input (naming the parameter) or a failed iptables run."""


@dataclass(frozen=True)
class Rule:
    """One rule of a guard chain; ``peer`` is None for the tunnel-wide rules, which stand at
    the ``place`` HEAD or TAIL of their chain."""

    table: str
    chain: str
    spec: str
    peer: str | None = None
    place: int = PEER

    def line(self) -> str:
        return f"-A {self.chain} {self.spec}"


@dataclass(frozen=True)
class Peer:
    name: str
    address: str
    inbound_spis: tuple[int, ...] = ()


def guard_chain(mesh: str, direction: str) -> str:
    """``FASTDP-<mesh>-OUT`` / ``-PST`` / ``-IN``, in the mangle table."""
    return f"FASTDP-{mesh}-{direction}"


def chains(mesh: str, full: bool = True) -> list[tuple[str, str, str]]:
    """(table, guard chain, built-in chain jumping to it): all three for the underlay's family;
    ``full=False``, the PST chain alone (the other family: the device's mark only)."""
    return [(GUARD_TABLE, guard_chain(mesh, d), hook) for d, hook in _HOOKS.items()
            if full or d == "PST"]


def _names(mesh: str) -> dict[str, str]:
    """Every name a chain of the mesh may have, to its direction."""
    return {guard_chain(mesh, d): d for d in _HOOKS}


def rules(mesh: str, local_address: str, port: int, mark: int, peers: list[Peer], *,
          reqid: int, device: str) -> list[Rule]:
    """The rules of the underlay's family: tunnel-wide heads, the declared peers' rules, then
    the tunnel-wide drops."""
    out, post, into = (guard_chain(mesh, d) for d in ("OUT", "PST", "IN"))
    local = _host(local_address)
    m = f"{mark:#x}/{mark:#x}"
    tunnel = f"-p udp -m udp --dport {port}"
    strict = (f"-m policy --dir in --pol ipsec --strict --reqid {reqid} --proto esp "
              "--mode transport")
    result = [
        Rule(GUARD_TABLE, out, f"{tunnel} -m mark ! --mark {m} -m owner --uid-owner "
                               f"{LOCAL_SOCKETS} -j RETURN", place=HEAD),
        *device_rules(mesh, mark, device),
    ]
    for p in peers:
        peer = _host(p.address)
        result += [
            Rule(GUARD_TABLE, out, f"-s {local} -d {peer} {tunnel} -j MARK --set-xmark {m}",
                 p.address),
            Rule(GUARD_TABLE, post, f"-d {peer} ! -p esp -m policy --dir out --pol none "
                                    f"-m mark --mark {m} -j DROP", p.address),
            *(Rule(GUARD_TABLE, into, f"-s {peer} -d {local} -p esp -m esp --espspi {spi} "
                                      f"-j MARK --set-xmark {m}", p.address)
              for spi in p.inbound_spis),
            Rule(GUARD_TABLE, into, f"-s {peer} {tunnel} -m mark ! --mark {m} -j DROP", p.address),
            Rule(GUARD_TABLE, into, f"-s {peer} {tunnel} {strict} -j RETURN", p.address),
        ]
    return result + tunnel_wide(mesh, local_address, port)


def device_rules(mesh: str, mark: int, device: str) -> list[Rule]:
    """Packets leaving through the mesh's VXLAN device carry the mark into their encapsulation
    (the only rule of the other address family)."""
    return [Rule(GUARD_TABLE, guard_chain(mesh, "PST"),
                 f"-o {device} -j MARK --set-xmark {mark:#x}/{mark:#x}", place=HEAD)]


def tunnel_wide(mesh: str, local_address: str, port: int) -> list[Rule]:
    tunnel = f"-p udp -m udp --dport {port}"
    return [
        Rule(GUARD_TABLE, guard_chain(mesh, "PST"),
             f"-s {_host(local_address)} {tunnel} -m policy --dir out --pol none -j DROP",
             place=TAIL),
        Rule(GUARD_TABLE, guard_chain(mesh, "IN"), f"{tunnel} -j DROP", place=TAIL),
    ]


@dataclass
class Saved:
    """What iptables-save -c shows of one mesh: its guard chains (in any table) and their rules
    (with counters), the jumps to them, and every rule of each other chain, in order (to see
    what stands before a jump)."""

    chains: set[tuple[str, str]]
    rules: list[tuple[Rule, int, int]]  # rule, packets, bytes
    jumps: dict[tuple[str, str, str], list[str]]  # (table, from chain, guard chain) -> specs
    others: dict[tuple[str, str], list[str]]  # (table, chain) -> specs of its rules, in order


def parse_save(text: str, mesh: str) -> Saved:
    names = _names(mesh)
    saved = Saved(set(), [], {}, {})
    table = None
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith(":"):
            name = line[1:].split()[0]
            if name in names:
                saved.chains.add((table, name))
        elif "-A " in line:
            counters, _sep, rest = line.partition("-A ")
            chain, _sep, spec = rest.partition(" ")
            spec = spec.strip()
            if chain in names:
                peer = _PEER[names[chain]].search(spec)
                found = _COUNTERS.match(counters)
                saved.rules.append((Rule(table, chain, spec, peer[1] if peer else None),
                                    *((int(found[1]), int(found[2])) if found else (0, 0))))
                continue
            saved.others.setdefault((table, chain), []).append(spec)
            target = _target(spec)
            if target in names:
                saved.jumps.setdefault((table, chain, target), []).append(spec)
    return saved


def _target(spec: str) -> str | None:
    found = _TARGET.search(spec)
    return found[1] if found else None


def misplaced(saved: Saved, table: str, hook: str, chain: str) -> str | None:
    """Why the jump from ``hook`` to ``chain`` is not as it must be, or None: it must be the
    hook's only jump to the chain, a bare ``-j``, behind nothing but other guard jumps."""
    specs = saved.others.get((table, hook), [])
    ours = [i for i, spec in enumerate(specs) if _target(spec) == chain]
    if not ours:
        return "no jump"
    if len(ours) > 1:
        return f"{len(ours)} jumps"
    if specs[ours[0]] != f"-j {chain}":
        return f"a jump with matches ({specs[ours[0]]})"
    ahead = [spec for spec in specs[:ours[0]] if not _GUARD_CHAIN.fullmatch(_target(spec) or "")]
    if ahead:
        return f"behind {ahead[0]}" + (f" and {len(ahead) - 1} more" if len(ahead) > 1 else "")
    return None


def problems(mesh: str, saved: Saved, full: bool = True) -> list[str]:
    """One line per guard chain that is missing or whose jump is not first: ``mangle INPUT:
    behind -p udp -m udp --dport 6784 -j ACCEPT``."""
    found = []
    for table, chain, hook in chains(mesh, full):
        why = ("no chain" if (table, chain) not in saved.chains
               else misplaced(saved, table, hook, chain))
        if why:
            found.append(f"{table} {hook}: {why}")
    return found


@dataclass
class Plan:
    """``script`` for iptables-restore (empty: nothing to change). ``before`` and ``after``,
    the lines of the guard chains and jumps, are made only when asked for (for a diff)."""

    mesh: str
    saved: Saved
    wanted: list[Rule] | None  # None: the mesh's chains are removed
    script: str
    full: bool = True

    @property
    def before(self) -> list[str]:
        misplaced_ = {(t, h, c): misplaced(self.saved, t, h, c)
                      for t, c, h in chains(self.mesh, self.full)}
        jumps = {key: [spec + (f"  (not first: {misplaced_[key]})" if misplaced_.get(key) else "")
                       for spec in specs] for key, specs in self.saved.jumps.items()}
        return _lines(self.saved.chains, [r for r, _packets, _bytes in self.saved.rules], jumps)

    @property
    def after(self) -> list[str]:
        if self.wanted is None:
            return []
        layout = chains(self.mesh, self.full)
        return _lines({(t, c) for t, c, _hook in layout}, self.wanted,
                      {(t, hook, c): [f"-j {c}"] for t, c, hook in layout})


def retained(saved: Saved, declared: set[str], keep_peer) -> list[Peer]:
    """The peers whose rules stay although they are not declared (``keep_peer(address)``:
    outside this run, or purge off), with the inbound SPIs their ESP marks name: their rules
    are made again in this release's layout."""
    spis: dict[str, set[int]] = {}
    for rule, _packets, _bytes in saved.rules:
        if rule.peer and rule.peer not in declared and keep_peer(rule.peer):
            found = _ESPSPI.search(rule.spec)
            spis.setdefault(rule.peer, set()).update([int(found[1])] if found else [])
    return [Peer(a, a, tuple(sorted(s))) for a, s in sorted(spis.items(), key=lambda i: inet.key(i[0]))]


def plan(mesh: str, saved: Saved, want: list[Rule] | None, full: bool = True) -> Plan:
    """The change from ``saved`` to ``want`` (None: the mesh's chains and jumps removed).
    ``full`` False: the PST chain alone is wanted. Chains of the mesh outside the layout (an
    earlier release's, in filter) are removed after the wanted ones are complete."""
    if want is None:
        return Plan(mesh, saved, None, _removal(saved, saved.chains), full)
    wanted = _ordered(want)
    have = _by_chain(r for r, _packets, _bytes in saved.rules)
    rows = _by_chain(wanted)
    layout = chains(mesh, full)
    sections = {table: [] for table in TABLES}
    for table, chain, hook in layout:
        lines = sections[table]
        key = (table, chain)
        if key not in saved.chains or have.get(key) != rows.get(key):
            lines += [f":{chain} - [0:0]", *rows.get(key, [])]  # declared: flushed
        if misplaced(saved, table, hook, chain):
            # One table commit: the kernel swaps the table at once, so deleting our jump(s)
            # (by spec: never a foreign rule) before inserting it on top leaves no gap.
            lines += [f"-D {hook} {spec}" for spec in saved.jumps.get((table, hook, chain), [])]
            lines.append(f"-I {hook} 1 -j {chain}")
    stale = saved.chains - {(t, c) for t, c, _hook in layout}
    return Plan(mesh, saved, wanted, _script(sections) + _removal(saved, stale), full)


def _by_chain(rules_) -> dict[tuple[str, str], list[str]]:
    """``-A`` lines by (table, chain), in order."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for r in rules_:
        grouped.setdefault((r.table, r.chain), []).append(r.line())
    return grouped


def _removal(saved: Saved, remove: set[tuple[str, str]]) -> str:
    """Every jump to the chains ``remove`` (from any chain), then flush and delete them; the
    mangle table first (an earlier release's drops, in filter, go last)."""
    sections = {table: [] for table in TABLES}
    for (table, source, chain), specs in saved.jumps.items():
        if (table, chain) in remove:
            sections.setdefault(table, []).extend(f"-D {source} {spec}" for spec in specs)
    for table, chain in sorted(remove):
        sections.setdefault(table, []).extend([f"-F {chain}", f"-X {chain}"])
    return _script(sections)


def _script(sections: dict[str, list[str]]) -> str:
    return "".join(f"*{table}\n" + "".join(f"{line}\n" for line in lines) + "COMMIT\n"
                   for table, lines in sections.items() if lines)


def _ordered(rules_: list[Rule]) -> list[Rule]:
    """Heads, then per-peer rules by peer address (stable within a peer), then tails."""
    return sorted(rules_, key=lambda r: (r.place, inet.key(r.peer) if r.peer else ()))


def _lines(chain_set, rules_, jumps) -> list[str]:
    """Readable: ``table: -A CHAIN spec`` for every jump and guard rule."""
    out = []
    for table, chain in sorted(chain_set | {(t, c) for t, _source, c in jumps},
                               key=lambda tc: (TABLES.index(tc[0]) if tc[0] in TABLES else 9, tc[1])):
        out += [f"{table}: -A {source} {spec}" for (t, source, c), specs in sorted(jumps.items())
                if (t, c) == (table, chain) for spec in specs]
        if (table, chain) in chain_set:
            out.append(f"{table}: :{chain}")
            out += [f"{table}: {r.line()}" for r in rules_ if (r.table, r.chain) == (table, chain)]
    return out


class Tables:
    """iptables-save/-restore of one family, of the backend the ``iptables`` binary uses."""

    def __init__(self, ipv: int, netns: str | None = None):
        self.netns = netns
        base = "iptables" if ipv == 4 else "ip6tables"
        binary = shutil.which(base, path=_path())
        if binary is None:
            raise GuardError(f"{base} is not installed")
        self.backend = self._backend(binary)
        self.save_cmd = self._tool(base, "save")
        self.restore_cmd = self._tool(base, "restore")

    def save(self) -> str:
        return self._run([self.save_cmd, "-c"])

    def restore(self, script: str) -> None:
        self._run([self.restore_cmd, "-w", "--noflush"], script)

    def _tool(self, base, verb):
        found = (shutil.which(f"{base}-{self.backend}-{verb}", path=_path())
                 or shutil.which(f"{base}-{verb}", path=_path()))
        if found is None:
            raise GuardError(f"{base}-{verb} is not installed")
        return found

    def _backend(self, binary) -> str:
        """``nft`` or ``legacy``, as ``iptables -V`` says (releases before 1.8: legacy)."""
        version = self._run([binary, "-V"])
        return "nft" if "nf_tables" in version else "legacy"

    def _run(self, argv, stdin=None) -> str:
        with entered(self.netns):
            done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
        if done.returncode:
            raise GuardError(f"{' '.join(argv)} failed: {done.stderr.strip()}"
                             + (f"\ninput:\n{stdin}" if stdin else ""))
        return done.stdout


def guard_state(mesh: str, ipv: int = 4, netns: str | None = None) -> dict[str, dict]:
    """Counters of the mesh's guards, from one iptables-save -c, by peer address; ``"*"``
    holds the tunnel-wide rules' (see ``counters``)."""
    return counters(parse_save(Tables(ipv, netns).save(), mesh))


def guard_report(mesh: str, ipv: int = 4, netns: str | None = None) -> tuple[dict, list[str]]:
    """``guard_state`` and ``problems`` of one iptables-save -c."""
    saved = parse_save(Tables(ipv, netns).save(), mesh)
    return counters(saved), problems(mesh, saved)


def counters(saved: Saved) -> dict[str, dict]:
    """Packets, per peer: ``tunnel_marked`` (outbound tunnel traffic marked for the peer's
    policy), ``untransformed_dropped`` (marked, but no policy transformed it), ``esp_marked``
    ({inbound SPI: packets}), ``plaintext_dropped`` (tunnel packets from the peer that its ESP
    did not bring), ``accepted`` (tunnel packets this mesh's SA decrypted). Tunnel-wide
    (``"*"``): ``sockets_skipped`` (a local socket's packets left unmarked),
    ``device_marked`` (packets leaving through the VXLAN device), ``untransformed_dropped``
    and ``plaintext_dropped`` (inbound tunnel packets no peer's rules let through)."""
    state: dict[str, dict] = {"*": {"sockets_skipped": 0, "device_marked": 0,
                                    "untransformed_dropped": 0, "plaintext_dropped": 0}}
    for rule, packets, _bytes in saved.rules:
        direction = rule.chain.rsplit("-", 1)[1]
        target = _target(rule.spec)
        inbound = direction == "IN"
        if rule.peer is None:
            key = {"MARK": "device_marked", "RETURN": "sockets_skipped"}.get(
                target, "plaintext_dropped" if inbound else "untransformed_dropped")
            state["*"][key] += packets
            continue
        peer = state.setdefault(rule.peer, {"tunnel_marked": 0, "untransformed_dropped": 0,
                                            "esp_marked": {}, "plaintext_dropped": 0,
                                            "accepted": 0})
        if target == "MARK" and not inbound:
            peer["tunnel_marked"] += packets
        elif target == "MARK":
            spi = _ESPSPI.search(rule.spec)
            if spi:
                peer["esp_marked"][int(spi[1])] = packets
        elif target == "RETURN":
            peer["accepted"] += packets
        else:
            peer["plaintext_dropped" if inbound else "untransformed_dropped"] += packets
    return state


def parse_mark(value) -> int:
    """The mark bit: an int or a string like ``0x20000``; one bit, clear of Kubernetes'."""
    try:
        mark = value if isinstance(value, int) else int(str(value), 0)
    except ValueError:
        raise GuardError(f"mark: {value!r} is not a number") from None
    if mark <= 0 or mark >= 1 << 32 or mark & (mark - 1):
        raise GuardError(f"mark: {value} must be a single bit of the 32-bit packet mark "
                         f"(it is both the mark and its mask), like {DEFAULT_MARK:#x}")
    if mark & KUBERNETES_MARKS:
        raise GuardError(f"mark: {mark:#x} overlaps Kubernetes' bits 0x4000/0x8000; "
                         f"use another bit, like {DEFAULT_MARK:#x}")
    return mark


def parse_peers(raw: list[dict], local: str) -> list[Peer]:
    """The declared peers, checked against ``local`` (this host's address, already spelled
    by ``inet.field``)."""
    ipv = inet.version(local)
    peers, seen = [], set()
    for i, p in enumerate(raw):
        peer = inet.field(f"peers[{i}].address", p["address"], GuardError)
        if inet.version(peer) != ipv:
            raise GuardError(f"peers[{i}].address: {peer} is not IPv{ipv} like local_address")
        if peer == local or peer in seen:
            raise GuardError(f"peers[{i}].address: {peer} is "
                             + ("local_address" if peer == local else "listed twice"))
        seen.add(peer)
        spis = [_spi(f"peers[{i}].inbound_spis[{j}]", spi)
                for j, spi in enumerate(p.get("inbound_spis") or [])]
        peers.append(Peer(p.get("name") or peer, peer, tuple(sorted(set(spis)))))
    return peers


def addresses(label: str, values: list) -> set[str]:
    return {inet.field(f"{label}[{i}]", v, GuardError) for i, v in enumerate(values)}


def check_mesh(mesh: str) -> None:
    longest = guard_chain(mesh, "PST")
    if not _MESH_RE.fullmatch(mesh) or len(longest) > CHAIN_NAME_MAX:
        raise GuardError(f"mesh: {mesh!r} must be letters, digits, '_', '.', '-' and short "
                         f"enough for the chain name {longest} (at most {CHAIN_NAME_MAX} "
                         f"characters: a mesh name of at most {CHAIN_NAME_MAX - 11})")


def check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise GuardError(f"port: {port} is outside 1..65535")


def check_reqid(reqid) -> int:
    if reqid is None:
        raise GuardError("reqid: required with state=present (the mesh's SAs' reqid: inbound "
                         "tunnel traffic must have been decrypted by one of them)")
    if not 1 <= int(reqid) < 1 << 32:
        raise GuardError(f"reqid: {reqid} is outside 1..4294967295")
    return int(reqid)


def check_device(device) -> str:
    if not device:
        raise GuardError("device: required with state=present (the mesh's VXLAN device: what "
                         "leaves through it is the tunnel's)")
    if len(device) > IFNAMSIZ or not _DEVICE_RE.fullmatch(device):
        raise GuardError(f"device: {device!r} is not an interface name (at most {IFNAMSIZ} "
                         "characters, no blank, '/' or ':')")
    return device


def _spi(label: str, value) -> int:
    try:
        spi = value if isinstance(value, int) else int(str(value), 0)
    except ValueError:
        spi = 0
    if not 0 < spi < 1 << 32:
        raise GuardError(f"{label}: {value!r} is not a 32-bit SPI")
    return spi


def _host(address: str) -> str:
    return f"{address}/{32 if inet.version(address) == 4 else 128}"


def _path() -> str:
    return os.environ.get("PATH", "") + ":" + _SBIN


ARGUMENT_SPEC = {
    "mesh": {"type": "str", "required": True},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "local_address": {"type": "str"},
    "port": {"type": "int", "default": 6784},
    "mark": {"type": "raw", "default": DEFAULT_MARK},
    "reqid": {"type": "int"},
    "device": {"type": "str"},
    "peers": {"type": "list", "elements": "dict", "default": [], "options": {
        "name": {"type": "str"},
        "address": {"type": "str", "required": True},
        "inbound_spis": {"type": "list", "elements": "raw", "default": []},
    }},
    **arguments.RETAIN_AND_PURGE,
    **arguments.NETNS,
}
REQUIRED_IF = [("state", "present", ["local_address", "reqid", "device"])]


def converge(module, p: dict) -> dict:
    """The guards module's step: the mesh's chains in the family of ``local_address`` and the
    device's mark in the other family (when its tools work); both families' chains go when
    absent. One iptables-restore per family."""
    before, after, commands, backend = [], [], [], None
    try:
        check_mesh(p["mesh"])
        if p["state"] == "present":
            check_port(p["port"])
            mark = parse_mark(p["mark"])
            reqid, device = check_reqid(p.get("reqid")), check_device(p.get("device"))
            local = inet.field("local_address", p["local_address"], GuardError)
            underlay = inet.version(local)
            retain = addresses("retain", p["retain"])
            peers = parse_peers(p["peers"], local)
            families = [underlay, 6 if underlay == 4 else 4]
        else:
            underlay, families = None, [4, 6]
        for ipv in families:
            try:
                tables = Tables(ipv, p["netns"])
                text = tables.save()
            except GuardError:
                if ipv == underlay:
                    raise
                continue  # nothing of this family to remove, or no IPv6 on this host
            if ipv == underlay or backend is None:
                backend = tables.backend
            saved = parse_save(text, p["mesh"])
            if p["state"] == "absent":
                change = plan(p["mesh"], saved, None)
            elif ipv == underlay:
                kept = retained(saved, {peer.address for peer in peers},
                                lambda a: a in retain or not p["purge"])
                change = plan(p["mesh"], saved, rules(p["mesh"], local, p["port"], mark,
                                                      peers + kept, reqid=reqid, device=device))
            else:
                change = plan(p["mesh"], saved, device_rules(p["mesh"], mark, device), full=False)
            if change.script and not module.check_mode:
                tables.restore(change.script)
            tool = "iptables" if ipv == 4 else "ip6tables"
            commands += [f"{tool} {line}" for line in change.script.splitlines()]
            if module._diff:
                before += [f"{tool} {line}" for line in change.before]
                after += [f"{tool} {line}" for line in change.after]
    except (GuardError, NetnsError) as exc:
        raise arguments.Failed(str(exc), commands=commands) from exc
    result = {"changed": bool(commands), "commands": commands, "backend": backend}
    if module._diff:
        result["rules"] = after
        result["diff"] = {"before": "".join(f"{line}\n" for line in before),
                          "after": "".join(f"{line}\n" for line in after),
                          "before_header": f"guard chains of {p['mesh']}",
                          "after_header": f"guard chains of {p['mesh']}"}
    return result
