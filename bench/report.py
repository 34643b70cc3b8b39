"""Write docs/benchmarks.md from bench/results/*.json: the latest run of each benchmark, what it
ran on, when, how to run it again, its figures and ratios, and its plots.

``python -m bench.report`` (``./run bench report``) rewrites the page; ``--check`` only says
whether the page is what the results give (exit 1 if not). The page is generated: edit this
script or the benchmarks, never the page.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
RESULTS = BENCH / "results"
PAGE = REPO / "docs" / "benchmarks.md"
NOT_BENCHMARKS = {"report"}  # scripts of bench/ that measure nothing
GENERATED = ("<!-- Written by bench/report.py from bench/results/*.json: edit those, not this "
             "page. -->")
INTRO = ("The latest recorded run of each benchmark under `bench/`, as its results file holds it. "
         "The machines are shared and the kernel lab's guest is slower than real hardware: "
         "compare figures within one run, where the ratios are what the benchmark is for, not "
         "across runs or against other machines.")


# ------------------------------------------------------------------ helpers

def when(iso: str | None) -> str:
    """``2026-12-02T08:03:04+00:00`` -> ``2026-12-02 08:03 UTC``."""
    if not iso:
        return "not recorded"
    stamp = dt.datetime.fromisoformat(iso).astimezone(dt.UTC)
    return stamp.strftime("%Y-%m-%d %H:%M UTC")


def num(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.{digits}f}"
    return str(value)


def seconds(value) -> str:
    """Seconds with the precision their size deserves."""
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f} s"
    if value >= 10:
        return f"{value:.1f} s"
    return f"{value:.3f} s"


def table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    out += ["| " + " | ".join(cells) + " |" for cells in rows]
    return out + [""]


def summary(name: str) -> str:
    """The first paragraph of bench/NAME.py's docstring, on one line (read, not imported)."""
    path = BENCH / f"{name}.py"
    if not path.exists():
        return ""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return " ".join(doc.split("\n\n")[0].split())


def machine(facts: dict | None) -> str:
    """One line from a benchmark's record of a machine (the keys differ between benchmarks)."""
    if not facts:
        return "not recorded"
    cpu = facts.get("cpu") or facts.get("cpu_model")
    parts = [f"kernel {facts['kernel']}" if facts.get("kernel") else None,
             f"{cpu}" if cpu else None,
             f"{facts['cpus']} CPUs" if facts.get("cpus") else None,
             f"Python {facts['python']}" if facts.get("python") else None,
             facts.get("virtualization")]
    line = ", ".join(p for p in parts if p)
    if facts.get("loadavg"):
        line += f"; load average {' '.join(facts['loadavg'])} at the end of the run"
    return line


def header(name: str, date: str | None, command: str | None, host: dict | None,
           guest: dict | None) -> list[str]:
    out = [f"## {name}", ""]
    about = summary(name)
    if about:
        out += [about, ""]
    out += [f"- run: {when(date)}"]
    out += [f"- host: {machine(host)}"]
    if guest:
        out += [f"- guest: {machine(guest)}"]
    out += [f"- reproduce: `./run bench {name}` (as root)"]
    if command and command.strip() != f"./run bench {name}":
        out += [f"- this run: `{command.strip()}`"]
    return out + [""]


def plots(name: str) -> list[str]:
    found = sorted(RESULTS.glob(f"{name}*.png"))
    out = [f"![{p.stem}](../{p.relative_to(REPO).as_posix()})" for p in found]
    return out + [""] if out else []


# ------------------------------------------------------------------ one renderer per format

def dataplane(data: dict) -> list[str]:
    runs = data["runs"]
    run = runs[data.get("latest", len(runs) - 1)]
    out = header("dataplane", run.get("date"), run.get("command"), run.get("host"),
                 run.get("guest"))
    s = run.get("settings", {})
    out += [(f"iperf3 TCP for {s.get('seconds')} s (first {s.get('omit')} s omitted), "
             f"{s.get('rounds')} rounds, medians; underlay MTU {s.get('underlay_mtu')}, overlay "
             f"MTU {run.get('overlay_mtu')}. The file holds {len(runs)} runs; this is the latest."),
            ""]
    medians = run["median_mbit_s"]
    out += table(["variant", "what", "median Mbit/s"],
                 [[v, run["variants"].get(v, ""), num(medians[v], 1)] for v in sorted(medians)])
    per_round = run.get("ratios_per_round", {})
    out += table(["ratio", "meaning", "of the medians", "per round"],
                 [[r, run.get("ratio_meanings", {}).get(r, ""), num(value),
                   ", ".join(num(x) for x in per_round.get(r, []))]
                  for r, value in run["ratios"].items()])
    return out


def modules(data: dict) -> list[str]:
    out = header("modules", data.get("date"), data.get("command"), data.get("host"),
                 data.get("guest"))
    command = data.get("command", "")
    if "--merge" in command:
        kept = "guest" if "--no-guest" in command else "host" if "--no-native" in command else None
        if kept:
            out += [(f"This run measured only the other kernel's rows; the {kept} rows are kept "
                     "from an earlier run, whose date the file does not record."), ""]
    out += [(f"Medians of {data.get('reps')} runs on the host, {data.get('guest_reps')} in the "
             "guest. A no-op is a module run that finds nothing to change; the backend is the "
             "module's own step called in-process (dump and plan, no Python start-up or "
             "imports); the raw dump is the kernel's own tool listing the same objects; the "
             "floor is a module run with nothing declared."), ""]
    rows = sorted(data["rows"], key=lambda r: (r["kernel"] != "host", r["module"], r["peers"]))
    out += table(["kernel", "module", "peers", "converge", "no-op", "floor", "backend no-op",
                  "raw dump", "backend / raw", "no-op / raw", "peak RSS"],
                 [[r["kernel"], r["module"], str(r["peers"]), seconds(r["converge_s"]),
                   seconds(r["noop_s"]), seconds(r.get("floor_s")),
                   seconds(r["backend_noop_s"]), f"{seconds(r['raw_s'])} (`{r['raw_tool']}`)",
                   num(r["ratio_backend_raw"]), num(r["ratio_noop_raw"], 0),
                   f"{r['rss_mb']:.0f} MB"] for r in rows])
    unrecorded = [r for r in rows if "backend_noop_unrecorded_s" in r]
    if unrecorded:
        out += [("xfrm_state's backend no-op with nothing recorded in the state directory (an "
                 "X25519 and an HKDF per peer, what a new identity's first run pays):"), ""]
        out += table(["peers", "backend no-op", "backend / raw"],
                     [[str(r["peers"]), seconds(r["backend_noop_unrecorded_s"]),
                       num(r["ratio_backend_unrecorded_raw"])] for r in unrecorded])
    return out + plots("modules")


def playbooks(data: dict) -> list[str]:
    out = header("playbooks", data.get("date"), data.get("command"), data.get("host"),
                 data.get("guest"))
    rows = data["rows"]
    dates = {r.get("date") for r in rows}
    if len(dates) > 1:
        out += ["Rows of earlier runs are kept (`--merge`): each row's date is its own.", ""]
    out += [("Wall time of one `ansible-playbook` run (changed tasks in brackets). The floor is "
             "one play with one `ansible.builtin.ping` task; the naive way is "
             "`bench/naive-mesh.yml`, one `ip xfrm` command task per SA and policy."), ""]

    def cell(r, key):
        got = r.get(key)
        return f"{seconds(got['s'])} ({got['changed']})" if got else "not run"

    out += table(["hosts", "measured", "floor", "converge", "no-op", "teardown", "naive",
                  "naive re-run", "no-op / floor", "naive re-run / no-op"],
                 [[str(r["hosts"]), when(r.get("date")), cell(r, "floor"), cell(r, "converge"),
                   cell(r, "noop"), cell(r, "teardown"), cell(r, "naive"),
                   cell(r, "naive_rerun"), num(r.get("noop_over_floor")),
                   num(r.get("naive_rerun_over_noop"))] for r in rows])
    return out + plots("playbooks")


def controller(data: dict) -> list[str]:
    out = header("controller", data.get("date"), data.get("command"), data.get("host"), None)
    out += [(f"One simulated play of {data['tasks']} tasks (--forks {data['forks']}): what the "
             "role templates for its modules on every host, against a floor of as many tasks "
             "setting a constant. Per host: wall and CPU seconds over the hosts."), ""]
    out += table(["hosts", "floor", "role's controller work", "per host", "CPU per host",
                  "peak RSS", "role / floor"],
                 [[str(r["hosts"]), seconds(r["floor"]["s"]), seconds(r["role"]["s"]),
                   seconds(r["role"]["s_per_host"]), seconds(r["role"]["cpu_s_per_host"]),
                   f"{r['role']['peak_rss_mb']:.0f} MB", num(r["role_over_floor"])]
                  for r in data["rows"]])
    return out


def other(name: str, data) -> list[str]:
    """A results file this script has no table for: its run's facts and a link to it."""
    top = data if isinstance(data, dict) else {}
    out = header(name, top.get("date"), top.get("command"), top.get("host"), top.get("guest"))
    out += ["No table for this file's format yet.", ""]
    return out + plots(name)


RENDERERS = {"controller": controller, "dataplane": dataplane, "modules": modules,
             "playbooks": playbooks}


# ------------------------------------------------------------------ the page

def render(results: Path = RESULTS) -> str:
    files = sorted(results.glob("*.json"))
    names = [f.stem for f in files]
    scripts = sorted(p.stem for p in BENCH.glob("*.py")
                     if not p.stem.startswith("_") and p.stem not in NOT_BENCHMARKS)
    out = [GENERATED, "", "# Benchmarks", "", INTRO, ""]
    out += [", ".join(f"[{n}](#{n})" for n in names), ""]
    silent = [s for s in scripts if s not in names]
    if silent:
        out += ["Benchmarks that write no results file (they print their figures): "
                + ", ".join(f"`./run bench {s}`" for s in silent) + ".", ""]
    for f in files:
        data = json.loads(f.read_text())
        render_one = RENDERERS.get(f.stem)
        out += render_one(data) if render_one else other(f.stem, data)
        out += [f"Raw figures: [bench/results/{f.name}](../bench/results/{f.name}).", ""]
    return "\n".join(out).rstrip() + "\n"


def write(page: Path = PAGE, results: Path = RESULTS) -> Path:
    """Rewrite ``page`` from ``results``; the call for a benchmark's end."""
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(render(results))
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the page differs from what the results give")
    parser.add_argument("--output", type=Path, default=PAGE)
    args = parser.parse_args(argv)
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != render():
            print(f"{args.output} is stale: python -m bench.report", file=sys.stderr)
            return 1
        return 0
    print(f"wrote {write(args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
