"""Module scale: the xfrm_policy, guards, vxlan and xfrm_state modules at 10, 100 and 1000 peers,
beside the kernel's own dump of the same objects, measured in the same run.
Run as root: ``./run bench modules`` (``python -m bench modules``).

Every module run goes through lab.modules.run_module (a fresh Python process given its
arguments file, as Ansible runs a module on a host), in a forked helper so that its wall time
and its peak RSS (getrusage(RUSAGE_CHILDREN) of the helper, whose only child is the module)
belong to that run alone.

Natively (host kernel, one network namespace per repetition, made and deleted here; underlay
2001:db8::11/64 on a veth ``eth0``, peers 2001:db8::100 upwards: the IPv4 documentation
ranges hold fewer than 1000 hosts, so every size uses the IPv6 underlay), per module and size:

  converge   the module from empty (changed=true)
  no-op      the same module again (changed=false)
  raw dump   the kernel's own tool dumping the same objects: ``ip xfrm policy``,
             ``ip6tables-save -c``, ``bridge fdb show dev wf-bench`` and ``ip neigh show dev
             wf-bench`` (process starts included)
  backend    the module's step (module_utils) called in-process in check mode for the no-op
             (one kernel dump through the collection's own code, plan, nothing applied): the
             module's cost without Python start-up, imports and Ansible's argument handling;
             its caches emptied before each call, as cold as a module's own process
  floor      the module run with nothing declared on an empty namespace (Python start-up,
             imports, AnsibleModule, one dump): the fixed cost of any module run

xfrm_state needs ESP, which only the guest kernel has: the guest is booted ONCE
(lab.guest.run_in_guest) for every size; in it the host's identity and its inbound nonces
for N synthetic peers are made with the module_utils (keys.StateDir, mesh_keys.ensure_nonces),
and the inbound converge, no-op, ``ip xfrm state`` and backend are timed the same way; then the
backend once more with nothing recorded in the state directory (what a no-op costs before a
real run recorded the shared secrets and derived keys: X25519 and HKDF for every peer).
The guest (User-Mode Linux) pays for every system call: compare within the guest only.

Medians over --reps repetitions (the machine is shared and noisy); within one, the raw dump,
the collection's netlink dump and the backend take turns, so their ratio compares like moments.
Prints a table, writes bench/results/modules.json and bench/results/modules.png. No assertion on
any time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import gc
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "collections"))

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.weave.fastdp.plugins.filter import mesh as mesh_filters
from ansible_collections.weave.fastdp.plugins.module_utils import (
    guards,
    keys,
    mesh_keys,
    vxlan,
)
from ansible_collections.weave.fastdp.plugins.module_utils import (
    xfrm_inventory as inventory,
)
from ansible_collections.weave.fastdp.plugins.module_utils.netns import entered
from ansible_collections.weave.fastdp.plugins.module_utils.rtnl import Rtnl
from ansible_collections.weave.fastdp.plugins.module_utils.xfrm import XfrmSocket

from bench._machine import machine
from lab.guest import in_guest, run_in_guest

RESULTS = REPO / "bench" / "results"
LOCAL = "2001:db8::11"
MARK = 0x20000
REQID = 4242
PASSWORD = "bench password, not a secret"
DEVICE = "wf-bench"
NATIVE = ("xfrm_policy", "guards", "vxlan")
RAW = {"xfrm_policy": "ip xfrm policy", "guards": "ip6tables-save -c",
       "vxlan": f"bridge fdb show dev {DEVICE} + ip neigh show dev {DEVICE}",
       "xfrm_state": "ip xfrm state"}


def peer_addresses(n: int) -> list[str]:
    return [f"2001:db8::{0x100 + i:x}" for i in range(n)]


def overlay_addresses(n: int) -> list[str]:
    return [f"2001:db8:1::{0x100 + i:x}" for i in range(n)]


# ------------------------------------------------------------------ measuring

# The helper that calls run_module: a small fresh Python, so that the peak RSS of its children
# (getrusage RUSAGE_CHILDREN: the module's process, its kernel tools) is the module's own and
# not that of a fork of this (larger) benchmark process, which Linux would carry across exec.
_HELPER = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from lab.modules import run_module
name, args = sys.argv[2], json.load(open(sys.argv[3]))
started = time.perf_counter()
result = run_module(name, args)
seconds = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"seconds": seconds, "changed": bool(result.get("changed")),
                  "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024}))
"""


def measured(name: str, args: dict) -> dict:
    """run_module(name, args) in a helper process: {seconds, changed, cpu, rss_mb} of the run."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(args, f)
    try:
        done = subprocess.run([sys.executable, "-c", _HELPER, str(REPO), name, f.name],
                              capture_output=True, text=True, check=False)
    finally:
        os.unlink(f.name)
    if done.returncode:
        raise RuntimeError(f"{name}: {done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def cpu() -> float:
    """CPU seconds (user + system) of this process and its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(calls: dict, runs: int = 5, before: dict | None = None) -> dict:
    """For each named call: its median wall seconds and median CPU seconds over ``runs`` calls,
    and its last value. The calls take turns, round after round, so each sees the same moments
    of this shared machine, whose speed drifts by up to 2x within a minute: their ratios hold
    where absolute times do not. ``before[name]()`` runs untimed before each call of that name.
    CPU time is what this machine distorts least."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    cpus: dict[str, list[float]] = {name: [] for name in calls}
    values = {}
    for _ in range(runs):
        for name, fn in calls.items():
            if before and name in before:
                before[name]()
            c, started = cpu(), time.perf_counter()
            values[name] = fn()
            times[name].append(time.perf_counter() - started)
            cpus[name].append(cpu() - c)
    return {name: (statistics.median(times[name]), statistics.median(cpus[name]), values[name])
            for name in calls}


def tool(commands: list[list[str]], netns: str | None = None) -> str:
    """The output of each of the kernel tool's ``commands``, one after the other."""
    with entered(netns):
        return "".join(subprocess.run(argv, capture_output=True, text=True, check=True).stdout
                       for argv in commands)


def make_netns(extra_v4: bool = True) -> str:
    name = f"wfb{secrets.token_hex(3)}"
    commands = ["link set lo up", "link add eth0 type veth peer name eth0p", "link set eth0p up",
                f"addr add {LOCAL}/64 dev eth0 nodad", "link set eth0 up"]
    if extra_v4:
        commands.insert(3, "addr add 198.51.100.11/24 dev eth0")
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "-batch", "-"], input="\n".join(commands) + "\n",
                   text=True, check=True, capture_output=True)
    return name


def del_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], check=False)


# ------------------------------------------------------------------ native modules

def policy_args(n: int, ns: str) -> dict:
    spis = {f"p{i:04d}": {"address": a, "spi": 0x1000 + i} for i, a in enumerate(peer_addresses(n))}
    return {"reqid": REQID, "policies": inventory.outbound_policies(spis, LOCAL, MARK, REQID), "netns": ns}


def guard_args(n: int, ns: str) -> dict:
    return {"mesh": "bench", "local_address": LOCAL, "netns": ns,
            "peers": [{"name": f"p{i:04d}", "address": a, "inbound_spis": [0x2000 + i]}
                      for i, a in enumerate(peer_addresses(n))]}


def vxlan_args(n: int, ns: str) -> dict:
    """What the mesh role declares: per peer an all-zeros FDB entry, its device's MAC behind it
    and its overlay address at that MAC."""
    peers = [{"address": a, "overlay_address": o, "vxlan_mac": mesh_filters.vxlan_mac("bench", a)}
             for a, o in zip(peer_addresses(n), overlay_addresses(n), strict=True)]
    return {"name": DEVICE, "vni": 42, "local": LOCAL, "underlay_interface": "eth0",
            "addresses": ["2001:db8:1::11/64"], "peers": peer_addresses(n),
            "mac": mesh_filters.vxlan_mac("bench", LOCAL),
            "macs": mesh_filters.vxlan_macs(peers),
            "neighbours": mesh_filters.vxlan_neighbours(peers), "netns": ns}


ARGS = {"xfrm_policy": policy_args, "guards": guard_args, "vxlan": vxlan_args}


STEPS = {"xfrm_policy": (inventory.POLICY_ARGUMENT_SPEC, inventory.converge_policies),
         "guards": (guards.ARGUMENT_SPEC, guards.converge),
         "vxlan": (vxlan.ARGUMENT_SPEC, vxlan.converge),
         "xfrm_state": (inventory.SA_ARGUMENT_SPEC, inventory.converge_sas)}


class Planning:
    """What a module's step needs of AnsibleModule, in check mode: it decides, it does not act."""
    check_mode, _diff = True, False

    def warn(self, msg: str) -> None:
        pass


def backend(module: str, args: dict):
    """The module's step in check mode, in this process (one dump + the plan, no Python start,
    no AnsibleModule): a callable returning whether it would change anything."""
    spec, step = STEPS[module]
    params = ArgumentSpecValidator(spec).validate(args).validated_parameters
    return lambda: step(Planning(), params)["changed"]


def forget_caches() -> None:
    """Empty every functools.lru_cache, so that each in-process backend call starts as cold as
    a module's own process (module_utils caches addresses and selectors within a run)."""
    for cache in gc.get_objects():
        if isinstance(cache, functools._lru_cache_wrapper):
            cache.cache_clear()


def _nl_policies(ns):
    with XfrmSocket(ns) as x:
        return x.policies()


def _nl_sas(ns):
    with XfrmSocket(ns) as x:
        return x.sas()


def _nl_fdb(ns):
    with entered(ns), Rtnl() as rtnl:
        index = rtnl.link(name=DEVICE).index
        return rtnl.fdb(index) + rtnl.neighbours(index)


# module: (kernel tool commands, what counts as one object in their output, in-process netlink
# dump)
DUMPS = {
    "xfrm_policy": ([["ip", "xfrm", "policy"]], lambda line: line.startswith("src "),
                    _nl_policies),
    "guards": ([["ip6tables-save", "-c"]], lambda line: "-A FASTDP-" in line, None),
    "vxlan": ([["bridge", "fdb", "show", "dev", DEVICE], ["ip", "neigh", "show", "dev", DEVICE]],
              lambda line: " dst " in line or " lladdr " in line, _nl_fdb),
    "xfrm_state": ([["ip", "xfrm", "state"]], lambda line: line.startswith("src "), _nl_sas),
}


def one_size(module: str, args: dict, ns: str, runs: int) -> dict:
    """Converge from empty, no-op, then the raw dumps and the in-process backend no-op taking
    turns."""
    converge = measured(module, args)
    noop = measured(module, args)
    if not converge["changed"] or noop["changed"]:
        raise RuntimeError(f"{module}: converge changed={converge['changed']}, "
                           f"no-op changed={noop['changed']}")
    commands, is_object, netlink = DUMPS[module]
    calls = {"raw": lambda: tool(commands, ns), "backend": backend(module, args)}
    if netlink:
        calls["netlink"] = lambda: netlink(ns)
    times = timed(calls, runs, before={"backend": forget_caches})
    (raw, raw_cpu, out), (b_wall, b_cpu, changes) = times["raw"], times["backend"]
    nl = times["netlink"][0] if netlink else None
    if changes:
        raise RuntimeError(f"{module}: the in-process backend no-op plans changes")
    return {"converge": converge["seconds"], "noop": noop["seconds"],
            "converge_cpu": converge["cpu"], "noop_cpu": noop["cpu"],
            "raw": raw, "raw_cpu": raw_cpu,
            "raw_objects": sum(1 for line in out.splitlines() if is_object(line)),
            "netlink_dump": nl, "backend_noop": b_wall, "backend_noop_cpu": b_cpu,
            "rss_mb": max(converge["rss_mb"], noop["rss_mb"])}


def floor_run(ns: str, module: str = "xfrm_policy") -> dict:
    """A module with nothing declared on an empty namespace: the fixed cost of a module run."""
    if module == "xfrm_state":
        return measured(module, {"state": "absent", "reqid": REQID, "netns": ns})
    return measured(module, {"reqid": REQID, "policies": [], "netns": ns})


def log_row(where: str, module: str, n: int, rep: str, row: dict) -> None:
    print(f"{where} {rep} {module:11s} {n:5d} peers: converge {row['converge']:.3f} s "
          f"(cpu {row['converge_cpu']:.3f}), no-op {row['noop']:.3f} s (cpu {row['noop_cpu']:.3f})"
          f", raw {row['raw']:.4f} s ({row['raw_objects']} objects), backend "
          f"{row['backend_noop']:.4f} s, rss {row['rss_mb']:.0f} MB", flush=True)


def native(sizes: list[int], reps: int) -> list[dict]:
    samples: dict[tuple[int, str], list[dict]] = {}
    floors = []
    for rep in range(reps):
        for n in sizes:
            ns = make_netns()
            try:
                floors.append(floor_run(ns))
                for module in NATIVE:
                    row = one_size(module, ARGS[module](n, ns), ns, 5)
                    samples.setdefault((n, module), []).append(row)
                    log_row("host", module, n, f"rep {rep + 1}/{reps}", row)
            finally:
                del_netns(ns)
    return [summarise(n, module, rows, floors, "host") for (n, module), rows in samples.items()]


def _median(rows: list[dict], key: str):
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def summarise(n: int, module: str, rows: list[dict], floors: list[dict], where: str) -> dict:
    keys_ = ("converge", "noop", "converge_cpu", "noop_cpu", "raw", "raw_cpu", "netlink_dump",
             "backend_noop", "backend_noop_cpu", "backend_noop_unrecorded", "setup")
    med = {k: _median(rows, k) for k in keys_}
    floor = statistics.median(f["seconds"] for f in floors)
    floor_cpu = statistics.median(f["cpu"] for f in floors)
    return {"peers": n, "module": module, "kernel": where, "runs": len(rows),
            **{f"{k}_s": v for k, v in med.items() if v is not None},
            "raw_tool": RAW[module], "raw_objects": rows[0]["raw_objects"],
            "floor_s": floor, "floor_cpu_s": floor_cpu,
            "ratio_noop_raw": med["noop"] / med["raw"],
            "ratio_noop_raw_cpu": med["noop_cpu"] / med["raw_cpu"] if med["raw_cpu"] else None,
            "ratio_backend_raw": med["backend_noop"] / med["raw"],
            **({"ratio_backend_unrecorded_raw": med["backend_noop_unrecorded"] / med["raw"]}
               if med["backend_noop_unrecorded"] is not None else {}),
            "converge_ms_per_peer": med["converge"] / n * 1000,
            "converge_cpu_ms_per_peer": med["converge_cpu"] / n * 1000,
            "converge_cpu_above_floor_ms_per_peer": (med["converge_cpu"] - floor_cpu) / n * 1000,
            "rss_mb": max(r["rss_mb"] for r in rows),
            "samples": rows}


# ------------------------------------------------------------------ xfrm_state (guest)

def state_args(n: int, ns: str, state_dir: str) -> dict:
    """The host's identity and inbound nonces for n synthetic peers; the module's arguments."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    state = keys.StateDir(state_dir)
    state.create_identity()
    peers = [{"name": f"p{i:04d}", "address": a,
              "public_key": keys.public_key_text(X25519PrivateKey.generate())}
             for i, a in enumerate(peer_addresses(n))]
    table, _ = mesh_keys.ensure_nonces({"epochs": {}}, epoch=1,
                                       senders={p["name"]: None for p in peers}, retain=[],
                                       spis_in_use=set, purge=True, retire=False)
    state.save_inbound(table)
    return {"direction": "inbound", "mesh": "bench", "peer_name": "h1", "local_address": LOCAL,
            "epoch": 1, "peers": peers, "password": PASSWORD, "reqid": REQID,
            "state_dir": state_dir, "netns": ns}


def guest_state(sizes: list[int], reps: int, out: Path) -> None:
    """In the guest: xfrm_state at each size; results written to ``out`` after each size."""
    rows, floors = [], []
    for n in sizes:
        samples = []
        for rep in range(reps):
            ns = make_netns()
            state_dir = tempfile.mkdtemp(prefix="wfbench-state-")
            try:
                floors.append(floor_run(ns, "xfrm_state"))
                started = time.perf_counter()
                args = state_args(n, ns, state_dir)
                setup = time.perf_counter() - started
                row = {**one_size("xfrm_state", args, ns, 3), "setup": setup}
                # the same no-op before anything is recorded (a new identity, or the first run
                # of a version that records them): X25519 and HKDF for every peer
                for record in ("shared-secrets.json", "derived-keys.json"):
                    os.unlink(os.path.join(state_dir, record))
                row["backend_noop_unrecorded"] = timed(
                    {"unrecorded": backend("xfrm_state", args)}, 3,
                    before={"unrecorded": forget_caches})["unrecorded"][0]
                samples.append(row)
                log_row("guest", "xfrm_state", n, f"rep {rep + 1}/{reps}", row)
            finally:
                del_netns(ns)
                subprocess.run(["rm", "-rf", state_dir], check=False)
        rows.append(summarise(n, "xfrm_state", samples, floors, "guest"))
        out.write_text(json.dumps({"rows": rows, "facts": machine()}, indent=1))


# ------------------------------------------------------------------ report

def print_table(result: dict) -> None:
    host, guest = result["host"], result.get("guest") or {}
    print(f"\nModule scale, {result['date']}; host kernel {host['kernel']}, {host['cpu']} "
          f"({host['cpus']} CPUs, shared)"
          + (f"; guest kernel {guest['kernel']} (User-Mode Linux)" if guest else ""))
    print(f"medians of {result['reps']} runs (guest: {result['guest_reps']}); a module run is a "
          "fresh Python process (run_module); ratio = no-op / raw dump; cpu = user+system s")
    head = (f"{'peers':>5} {'module':11} {'kern':5} {'converge':>8} {'no-op':>6} {'raw':>7} "
            f"{'ratio':>5} | {'no-op':>6} {'raw':>6} {'ratio':>5} | {'backend':>7} {'ratio':>5}"
            f" | {'ms/peer':>7} {'cpu ms/p':>8} {'RSS MB':>6}")
    print(f"{'':24}{'-- wall s, module run --':^30}   {'-- cpu s --':^19}   "
          f"{'in-process':^13}   converge")
    print(head)
    print("-" * len(head))
    for r in sorted(result["rows"], key=lambda r: (r["kernel"] != "host", r["module"], r["peers"])):
        cr = r.get("ratio_noop_raw_cpu")
        print(f"{r['peers']:5d} {r['module']:11} {r['kernel']:5} {r['converge_s']:8.3f} "
              f"{r['noop_s']:6.3f} {r['raw_s']:7.4f} {r['ratio_noop_raw']:5.0f} | "
              f"{r['noop_cpu_s']:6.3f} {r['raw_cpu_s']:6.4f} "
              f"{cr if cr is not None else float('nan'):5.0f} | "
              f"{r['backend_noop_s']:7.4f} {r['ratio_backend_raw']:5.2f} | "
              f"{r['converge_ms_per_peer']:7.2f} {r['converge_cpu_ms_per_peer']:8.2f} "
              f"{r['rss_mb']:6.0f}")
    floors = {r["kernel"]: (r["floor_s"], r["floor_cpu_s"]) for r in result["rows"]}
    print("floor (a module with nothing declared, empty namespace): "
          + ", ".join(f"{k} {w:.3f} s wall, {c:.3f} s cpu" for k, (w, c) in floors.items()))
    print("raw dump = the kernel's tool, process start included: "
          + "; ".join(f"{m}: {t}" for m, t in RAW.items()))
    print("backend = the module's own functions in-process for the no-op (dump + plan), "
          "without Python start, imports and AnsibleModule")
    unrecorded = [r for r in result["rows"] if "backend_noop_unrecorded_s" in r]
    if unrecorded:
        print("xfrm_state backend no-op with nothing recorded (X25519 and HKDF per peer): "
              + ", ".join(f"{r['peers']} peers {r['backend_noop_unrecorded_s']:.4f} s "
                          f"(ratio {r['ratio_backend_unrecorded_raw']:.2f})"
                          for r in sorted(unrecorded, key=lambda r: r["peers"])))


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    colors = {"xfrm_policy": "tab:blue", "guards": "tab:orange", "vxlan": "tab:green",
              "xfrm_state": "tab:red"}
    for ax, kernel in zip(axes, ("host", "guest"), strict=True):
        rows = [r for r in result["rows"] if r["kernel"] == kernel]
        for module, c in colors.items():
            mine = sorted((r for r in rows if r["module"] == module), key=lambda r: r["peers"])
            if not mine:
                continue
            x = [r["peers"] for r in mine]
            ax.plot(x, [r["converge_s"] for r in mine], "o-", color=c, label=f"{module} converge")
            ax.plot(x, [r["noop_s"] for r in mine], "s-", color=c, alpha=0.55,
                    label=f"{module} no-op")
            ax.plot(x, [r["backend_noop_s"] for r in mine], ":", color=c, marker=".",
                    label=f"{module} no-op backend (in-process)")
            ax.plot(x, [r["raw_s"] for r in mine], "--", color=c, marker="x",
                    label=f"raw dump: {RAW[module]}")
        if rows:
            ax.axhline(rows[0]["floor_s"], color="grey", lw=0.8, ls="-.",
                       label="module floor (nothing declared)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("peers")
        ax.set_ylabel("seconds")
        ax.set_title("host kernel (native, netns)" if kernel == "host"
                     else "guest kernel (User-Mode Linux)")
        ax.grid(True, which="both", alpha=0.3)
        if rows:
            ax.legend(fontsize=6.5, loc="upper left")
        else:
            ax.text(0.5, 0.5, "not measured in this run", ha="center", transform=ax.transAxes)
    fig.suptitle(f"weave.fastdp module time vs peers ({result['date'][:10]}, "
                 f"{result['host']['cpu']}, medians)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--guest-sizes", default="10,100,1000")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--guest-reps", type=int, default=1)
    parser.add_argument("--no-guest", action="store_true")
    parser.add_argument("--no-native", action="store_true")
    parser.add_argument("--merge", action="store_true",
                        help="with --no-guest/--no-native: keep the other rows of the last run")
    parser.add_argument("--guest-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.guest_out:
        if not in_guest():
            raise SystemExit("--guest-out is for the guest side")
        guest_state([int(s) for s in args.guest_sizes.split(",")], args.guest_reps,
                    Path(args.guest_out))
        return
    if os.geteuid():
        raise SystemExit("bench modules: run as root (network namespaces)")
    started = time.monotonic()
    result = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "host": machine(), "reps": args.reps, "guest_reps": args.guest_reps,
              "command": "./run bench modules " + " ".join(sys.argv[1:]), "rows": []}
    if not args.no_native:
        result["rows"] += native([int(s) for s in args.sizes.split(",")], args.reps)
    if not args.no_guest:
        rwdir = Path(tempfile.mkdtemp(prefix="wf-bench-modules-"))
        out = rwdir / "guest.json"
        guest = run_in_guest(f"python -m bench.modules --guest-out {out} "
                             f"--guest-sizes {args.guest_sizes} --guest-reps {args.guest_reps}",
                             rwdir=rwdir, stream=True)
        result["guest_run_s"] = guest.seconds
        if out.exists():
            got = json.loads(out.read_text())
            result["rows"] += got["rows"]
            result["guest"] = got["facts"]
        if guest.returncode:
            print(f"guest: exit {guest.returncode} after {guest.seconds:.0f} s\n"
                  + guest.output[-3000:], file=sys.stderr)
        print(f"guest run (boot + every size): {guest.seconds:.0f} s")
    result["total_s"] = time.monotonic() - started
    previous = RESULTS / "modules.json"
    if args.merge and previous.exists():  # keep the other kernel's rows of the last run
        old = json.loads(previous.read_text())
        skipped = {"host"} if args.no_native else {"guest"} if args.no_guest else set()
        result["rows"] += [r for r in old["rows"] if r["kernel"] in skipped]
        for key in ("guest", "guest_run_s") if args.no_guest else ():
            if key in old:
                result[key] = old[key]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "modules.json").write_text(json.dumps(result, indent=1) + "\n")
    print_table(result)
    plot(result, RESULTS / "modules.png")
    print(f"wrote {RESULTS / 'modules.json'} and {RESULTS / 'modules.png'}")


if __name__ == "__main__":
    main()
