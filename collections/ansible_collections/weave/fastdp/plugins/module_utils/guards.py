"""The guard chains of a mesh: iptables rules that never let tunnel traffic through in clear.

Per peer (Weave 1.9's rule set): mangle OUT marks UDP local->peer to the tunnel port (the XFRM
out policy selects on the mark: the VXLAN driver leaves the port out of the flow); filter OUT
drops marked packets no policy transformed; mangle IN marks ESP from the peer carrying one of
its inbound SPIs; filter IN drops tunnel packets from the peer without that mark.

Two tunnel-wide rules end the filter chains, so that a peer whose rules were just removed, or
any other address, can neither receive nor send plaintext tunnel traffic: tunnel packets from
the local address that no policy transformed, and inbound tunnel packets that were not
decrypted, are dropped.

The rules are data (table, chain, rulespec in iptables-save's own spelling); the chains carry
the mesh name, their ownership marker. A change is one ``iptables-restore --noflush`` over
those chains only, tables ordered so that drop rules come before (or with) the marks.
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
_MESH_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SBIN = "/usr/local/sbin:/usr/sbin:/sbin"
# Built-in chain each guard chain is jumped to from, by direction.
_HOOKS = {"OUT": "OUTPUT", "IN": "INPUT"}
APPLY_ORDER = ("filter", "mangle")  # legacy commits table by table: drops first
_COUNTERS = re.compile(r"\s*\[(\d+):(\d+)\]")
_JUMP = re.compile(r"(?:^| )-[jg] (\S+)$")
# A guard rule's peer: the destination in OUT chains, the source in IN chains.
_PEER = {d: re.compile(rf"(?:^| ){flag} ([^\s/]+)") for d, flag in (("OUT", "-d"), ("IN", "-s"))}
_ESPSPI = re.compile(r"--espspi (\d+)")


class GuardError(Exception):
    """Bad input (naming the parameter) or a failed iptables run."""


@dataclass(frozen=True)
class Rule:
    """One rule of a guard chain; ``peer`` is None for the tunnel-wide rules."""

    table: str
    chain: str
    spec: str
    peer: str | None = None

    def line(self) -> str:
        return f"-A {self.chain} {self.spec}"


@dataclass(frozen=True)
class Peer:
    name: str
    address: str
    inbound_spis: tuple[int, ...] = ()


def guard_chain(mesh: str, direction: str) -> str:
    """``FASTDP-<mesh>-IN`` / ``-OUT``, in both the mangle and the filter table."""
    return f"FASTDP-{mesh}-{direction}"


def chains(mesh: str) -> list[tuple[str, str, str]]:
    """(table, guard chain, built-in chain jumping to it), in apply order."""
    return [(table, guard_chain(mesh, d), hook) for table in APPLY_ORDER
            for d, hook in _HOOKS.items()]


def rules(mesh: str, local_address: str, port: int, mark: int, peers: list[Peer]) -> list[Rule]:
    """The per-peer rules of the declared peers, then the tunnel-wide rules."""
    out, into = guard_chain(mesh, "OUT"), guard_chain(mesh, "IN")
    local = _host(local_address)
    m = f"{mark:#x}/{mark:#x}"
    tunnel = f"-p udp -m udp --dport {port}"
    result = []
    for p in peers:
        peer = _host(p.address)
        result += [
            Rule("mangle", out, f"-s {local} -d {peer} {tunnel} -j MARK --set-xmark {m}", p.address),
            Rule("filter", out, f"-d {peer} ! -p esp -m policy --dir out --pol none "
                                f"-m mark --mark {m} -j DROP", p.address),
            *(Rule("mangle", into, f"-s {peer} -d {local} -p esp -m esp --espspi {spi} "
                                   f"-j MARK --set-xmark {m}", p.address)
              for spi in p.inbound_spis),
            Rule("filter", into, f"-s {peer} {tunnel} -m mark ! --mark {m} -j DROP", p.address),
        ]
    return result + tunnel_wide(mesh, local_address, port)


def tunnel_wide(mesh: str, local_address: str, port: int) -> list[Rule]:
    tunnel = f"-p udp -m udp --dport {port}"
    return [
        Rule("filter", guard_chain(mesh, "OUT"), f"-s {_host(local_address)} {tunnel} "
                                                 "-m policy --dir out --pol none -j DROP"),
        Rule("filter", guard_chain(mesh, "IN"), f"{tunnel} -m policy --dir in --pol none -j DROP"),
    ]


@dataclass
class Saved:
    """What iptables-save -c shows of one mesh: its guard chains' rules (with counters) and
    the jumps to them from the built-in chains."""

    chains: set[tuple[str, str]]
    rules: list[tuple[Rule, int, int]]  # rule, packets, bytes
    jumps: dict[tuple[str, str, str], list[str]]  # (table, from chain, guard chain) -> specs


def parse_save(text: str, mesh: str) -> Saved:
    peer_of = {guard_chain(mesh, d): _PEER[d] for d in _HOOKS}
    saved = Saved(set(), [], {})
    table = None
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith(":"):
            name = line[1:].split()[0]
            if name in peer_of:
                saved.chains.add((table, name))
        elif "-A " in line:
            counters, _sep, rest = line.partition("-A ")
            chain, _sep, spec = rest.partition(" ")
            spec = spec.strip()
            if chain in peer_of:
                peer = peer_of[chain].search(spec)
                found = _COUNTERS.match(counters)
                saved.rules.append((Rule(table, chain, spec, peer[1] if peer else None),
                                    *((int(found[1]), int(found[2])) if found else (0, 0))))
            elif (jump := _JUMP.search(spec)) and jump[1] in peer_of:
                saved.jumps.setdefault((table, chain, jump[1]), []).append(spec)
    return saved


@dataclass
class Plan:
    """``script`` for iptables-restore (empty: nothing to change). ``before`` and ``after``,
    the lines of the guard chains and jumps, are made only when asked for (for a diff)."""

    mesh: str
    saved: Saved
    wanted: list[Rule] | None  # None: the mesh's chains are removed
    script: str

    @property
    def before(self) -> list[str]:
        return _lines(self.mesh, self.saved.chains, [r for r, _packets, _bytes in self.saved.rules],
                      self.saved.jumps)

    @property
    def after(self) -> list[str]:
        if self.wanted is None:
            return []
        jumps = self.saved.jumps
        made = {(t, hook, c): jumps.get((t, hook, c)) or [f"-j {c}"]
                for t, c, hook in chains(self.mesh)}
        return _lines(self.mesh, {(t, c) for t, c, _hook in chains(self.mesh)}, self.wanted,
                      {**jumps, **made})


def plan(mesh: str, saved: Saved, want: list[Rule] | None, keep_peer) -> Plan:
    """``want`` None removes the mesh's chains and jumps. Rules of peers that are not declared
    stay when ``keep_peer(address)`` (peers outside this run, or purge off)."""
    if want is None:
        return Plan(mesh, saved, None, _removal(mesh, saved))
    declared = {r.peer for r in want if r.peer}
    kept = [r for r, _packets, _bytes in saved.rules if r.peer and r.peer not in declared and keep_peer(r.peer)]
    wanted = _ordered(want + kept)
    have = _by_chain(r for r, _packets, _bytes in saved.rules)
    rows = _by_chain(wanted)
    sections = {}
    for table, chain, hook in chains(mesh):
        lines = sections.setdefault(table, [])
        key = (table, chain)
        if key not in saved.chains or have.get(key) != rows.get(key):
            lines += [f":{chain} - [0:0]", *rows.get(key, [])]  # declared: flushed
        if not saved.jumps.get((table, hook, chain)):
            lines.append(f"-I {hook} 1 -j {chain}")
    return Plan(mesh, saved, wanted, _script(sections))


def _by_chain(rules_) -> dict[tuple[str, str], list[str]]:
    """``-A`` lines by (table, chain), in order."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for r in rules_:
        grouped.setdefault((r.table, r.chain), []).append(r.line())
    return grouped


def _removal(mesh: str, saved: Saved) -> str:
    """Every jump to a guard chain (from any chain), then flush and delete; mangle first,
    so that the drops go last."""
    sections = {table: [] for table in reversed(APPLY_ORDER)}
    for (table, source, _hook), specs in saved.jumps.items():
        sections[table] += [f"-D {source} {spec}" for spec in specs]
    for table, chain, _hook in reversed(chains(mesh)):
        if (table, chain) in saved.chains:
            sections[table] += [f"-F {chain}", f"-X {chain}"]
    return _script(sections)


def _script(sections: dict[str, list[str]]) -> str:
    return "".join(f"*{table}\n" + "".join(f"{line}\n" for line in lines) + "COMMIT\n"
                   for table, lines in sections.items() if lines)


def _ordered(rules_: list[Rule]) -> list[Rule]:
    """Per-peer rules by peer address (stable within a peer), tunnel-wide rules last."""
    return sorted(rules_, key=lambda r: (r.peer is None, inet.key(r.peer) if r.peer else ()))


def _lines(mesh, chain_set, rules_, jumps) -> list[str]:
    """Readable: ``table: -A CHAIN spec`` for every jump and guard rule."""
    out = []
    for table, chain, _hook in chains(mesh):
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
    holds the tunnel-wide drops. Packets, per peer: ``tunnel_marked`` (outbound tunnel
    traffic marked for the peer's policy), ``untransformed_dropped`` (marked, but no policy
    transformed it), ``esp_marked`` ({inbound SPI: packets}), ``plaintext_dropped``."""
    return counters(parse_save(Tables(ipv, netns).save(), mesh))


def counters(saved: Saved) -> dict[str, dict]:
    state: dict[str, dict] = {"*": {"untransformed_dropped": 0, "plaintext_dropped": 0}}
    for rule, packets, _bytes in saved.rules:
        outbound = rule.chain.endswith("-OUT")
        if rule.peer is None:
            key = "untransformed_dropped" if outbound else "plaintext_dropped"
            state["*"][key] += packets
            continue
        peer = state.setdefault(rule.peer, {"tunnel_marked": 0, "untransformed_dropped": 0,
                                            "esp_marked": {}, "plaintext_dropped": 0})
        if rule.table == "mangle" and outbound:
            peer["tunnel_marked"] += packets
        elif rule.table == "mangle":
            spi = _ESPSPI.search(rule.spec)
            if spi:
                peer["esp_marked"][int(spi[1])] = packets
        else:
            peer["untransformed_dropped" if outbound else "plaintext_dropped"] += packets
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
    longest = guard_chain(mesh, "OUT")
    if not _MESH_RE.fullmatch(mesh) or len(longest) > CHAIN_NAME_MAX:
        raise GuardError(f"mesh: {mesh!r} must be letters, digits, '_', '.', '-' and short "
                         f"enough for the chain name {longest} (at most {CHAIN_NAME_MAX} "
                         f"characters: a mesh name of at most {CHAIN_NAME_MAX - 11})")


def check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise GuardError(f"port: {port} is outside 1..65535")


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
    "peers": {"type": "list", "elements": "dict", "default": [], "options": {
        "name": {"type": "str"},
        "address": {"type": "str", "required": True},
        "inbound_spis": {"type": "list", "elements": "raw", "default": []},
    }},
    **arguments.RETAIN_AND_PURGE,
    **arguments.NETNS,
}
REQUIRED_IF = [("state", "present", ["local_address"])]


def converge(module, p: dict) -> dict:
    """The guards module's step: the mesh's chains in the family of ``local_address`` (both
    families when absent), one iptables-restore per family."""
    before, after, commands, backend = [], [], [], None
    try:
        check_mesh(p["mesh"])
        if p["state"] == "present":
            check_port(p["port"])
            mark = parse_mark(p["mark"])
            local = inet.field("local_address", p["local_address"], GuardError)
            want = rules(p["mesh"], local, p["port"], mark, parse_peers(p["peers"], local))
            retain = addresses("retain", p["retain"])
            families = [inet.version(local)]
        else:
            want, retain, families = None, set(), [4, 6]
        for ipv in families:
            try:
                tables = Tables(ipv, p["netns"])
            except GuardError:
                if want is not None:
                    raise
                continue  # nothing of this family to remove
            backend = tables.backend
            saved = parse_save(tables.save(), p["mesh"])
            change = plan(p["mesh"], saved, want,
                          keep_peer=lambda a: a in retain or not p["purge"])
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
