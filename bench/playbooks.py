"""Playbook scale: the full-mesh converge of ``playbooks/site.yml`` and its no-op re-run for
3, 10 and 20 lab hosts, beside, on the same inventory in the same run,
  (a) Ansible's floor: one play, gather_facts off, one ``ansible.builtin.ping`` task;
  (b) the naive way (bench/naive-mesh.yml): one ``ansible.builtin.command: ip xfrm ...`` task
      per SA and per policy, looped over the peers; first run and re-run.
Run as root: ``./run bench playbooks [--sizes 3,10,20]``.

SAs need ESP, so everything runs in the guest kernel (User-Mode Linux, booted once for every
size): the lab hosts, each sshd in its own distribution's root filesystem, and the controller,
real ``ansible-playbook`` with one fork per host. UML has one CPU and pays for every system
call: only the ratios within one run mean anything. Wall seconds of each ansible-playbook run;
prints a table and writes bench/results/playbooks.json after each run. No assertion on any
time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._machine import machine
from lab.guest import REPO, in_guest, kernel_release, run_in_guest
from lab.hosts import Lab
from lab.playbook import run_playbook

RESULTS = REPO / "bench" / "results"
NAIVE = REPO / "bench" / "naive-mesh.yml"
RATIOS = {"noop_over_floor": ("noop", "floor"), "naive_rerun_over_noop": ("naive_rerun", "noop"),
          "naive_over_converge": ("naive", "converge")}


def timed_run(lab: Lab, playbook: str | Path, *, expect_changed: bool) -> dict:
    """One ansible-playbook run with a fork per host: its wall seconds and changed count."""
    started = time.monotonic()
    run = run_playbook(lab, str(playbook), "--forks", str(len(lab.hosts)))
    seconds = time.monotonic() - started
    if run.returncode or bool(run.changed) != expect_changed:
        raise RuntimeError(f"{playbook} on {len(lab.hosts)} hosts: {run}")
    return {"s": seconds, "changed": run.changed}


def measure(lab: Lab, row: dict, *, naive: bool, save) -> None:
    """Fill ``row`` with the runs on one lab; ``save()`` after each run, so a run cut short
    keeps what it measured."""
    floor = lab.work_dir / "floor.yml"
    floor.write_text("- hosts: fastdp_mesh\n  gather_facts: false\n  tasks:\n"
                     "    - ansible.builtin.ping:\n")
    runs = [("floor", floor, False), ("converge", "site.yml", True), ("noop", "site.yml", False)]
    if naive:
        runs += [("teardown", "teardown.yml", True), ("naive", NAIVE, True),  # starts empty
                 ("naive_rerun", NAIVE, True)]
    for key, playbook, changes in runs:
        row[key] = timed_run(lab, playbook, expect_changed=changes)
        for ratio, (a, b) in RATIOS.items():
            if a in row and b in row:
                row[ratio] = row[a]["s"] / row[b]["s"]
        save()


def print_table(result: dict) -> None:
    print(f"playbook scale, {result['date']}, guest kernel {result['guest']['kernel']} "
          f"(User-Mode Linux, 1 CPU, controller inside it; host {result['host']['cpu']}); "
          f"wall seconds of one ansible-playbook run")
    print(f"{'hosts':>5} {'floor':>5} {'converge':>9} {'no-op':>7} {'naive':>7} "
          f"{'naive re-run':>12} {'no-op/floor':>11} {'naive re-run/no-op':>18}")
    for r in result["rows"]:
        cells = [f"{r[k]['s']:>{w}.0f}" if k in r else f"{'-':>{w}}" for k, w in
                 (("floor", 5), ("converge", 9), ("noop", 7), ("naive", 7), ("naive_rerun", 12))]
        ratios = [f"{r[k]:>{w}.2f}" if k in r else f"{'-':>{w}}" for k, w in
                  (("noop_over_floor", 11), ("naive_rerun_over_noop", 18))]
        print(f"{r['hosts']:>5} " + " ".join(cells + ratios))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3,10,20")
    parser.add_argument("--naive-up-to", type=int, default=20, metavar="HOSTS",
                        help="run the naive playbook only up to this many hosts (its module runs "
                             "grow with hosts x peers: 1140 a run at 20 hosts)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the last results' rows of sizes this run does not measure")
    parser.add_argument("--timeout", type=float, default=12 * 3600,
                        help="seconds the guest may run in all (sizes not done by then are left)")
    args = parser.parse_args()
    if not in_guest():
        guest = run_in_guest(shlex.join(["python", "-m", "bench.playbooks", *sys.argv[1:]]),
                             timeout=args.timeout, stream=True)
        sys.exit(guest.returncode)
    sizes = [int(s) for s in args.sizes.split(",")]
    started = time.monotonic()
    rwdir = Path(os.environ.get("WF_GUEST_RWDIR") or tempfile.mkdtemp(prefix="wf-bench-"))
    os.environ["WF_PLAYBOOK_LOG"] = str(rwdir / "playbooks.log")
    print(f"bench playbooks: each run's output goes to {rwdir}/playbooks.log", flush=True)
    result = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "host": machine(), "command": "./run bench playbooks " + " ".join(sys.argv[1:])}
    out = RESULTS / "playbooks.json"
    # Each row says what it measured: --merge keeps rows of earlier runs, maybe of another role.
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                            capture_output=True, check=False).stdout.strip()
    kept = []
    if args.merge and out.exists():
        last = json.loads(out.read_text())
        kept = [r for r in last["rows"] if r["hosts"] not in sizes]
        result["merged_from"] = last["date"]
    measured: list[dict] = []

    def save() -> None:
        result["rows"] = sorted(kept + measured, key=lambda r: r["hosts"])
        result["total_s"] = time.monotonic() - started
        out.write_text(json.dumps(result, indent=1) + "\n")

    RESULTS.mkdir(parents=True, exist_ok=True)
    result["guest"] = {"kernel": kernel_release(), "cpus": os.cpu_count()}
    for n in sizes:
        with Lab(count=n, name="wfpb", sshd=True) as lab:
            measured.append(row := {"hosts": n, "date": result["date"], "commit": commit})
            measure(lab, row, naive=n <= args.naive_up_to, save=save)
        print(f"bench playbooks: {n} hosts done", flush=True)
    print_table(result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
