"""Playbook scale: the full-mesh converge of ``playbooks/site.yml`` and its no-op re-run for
3, 10 and 20 lab hosts, beside, on the same inventory in the same run,
  (a) Ansible's floor: one play, gather_facts off, one ``ansible.builtin.ping`` task;
  (b) the naive way (bench/naive-mesh.yml): one ``ansible.builtin.command: ip xfrm ...`` task
      per SA and per policy, looped over the peers; first run and re-run.
Run as root: ``./run bench playbooks [--sizes 3,10,20]``.

SAs need ESP, so the whole benchmark runs in the guest kernel (booted once): lab hosts are
network namespaces with their own sshd, reached by real ``ansible-playbook`` over SSH with one
fork per host. Python there is 20-40x slower than on the host: only the ratios within one run
mean anything. Wall seconds of each ansible-playbook run; prints a table and writes
bench/results/playbooks.json. No assertion on any time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

from bench._machine import machine
from lab.guest import REPO, in_guest, run_in_guest
from lab.hosts import Lab
from lab.playbook import run_playbook

RESULTS = REPO / "bench" / "results"
NAIVE = REPO / "bench" / "naive-mesh.yml"


def timed_run(lab: Lab, playbook: str | Path, hosts: int, *, expect_changed: bool | None) -> dict:
    """One ansible-playbook run with a fork per host: its wall seconds and changed count."""
    started = time.monotonic()
    run = run_playbook(lab, str(playbook), "--forks", str(hosts))
    seconds = time.monotonic() - started
    if run.returncode or (expect_changed is not None and bool(run.changed) != expect_changed):
        raise RuntimeError(f"{playbook} on {hosts} hosts: {run}")
    return {"s": seconds, "changed": run.changed}


def measure(hosts: int) -> dict:
    with Lab(count=hosts, name="wfpb", sshd=True) as lab:
        floor = lab.work_dir / "floor.yml"
        floor.write_text("- hosts: fastdp_mesh\n  gather_facts: false\n  tasks:\n"
                         "    - ansible.builtin.ping:\n")
        row = {"hosts": hosts,
               "floor": timed_run(lab, floor, hosts, expect_changed=False),
               "converge": timed_run(lab, "site.yml", hosts, expect_changed=True),
               "noop": timed_run(lab, "site.yml", hosts, expect_changed=False)}
        timed_run(lab, "teardown.yml", hosts, expect_changed=True)  # the naive way starts empty
        row["naive"] = timed_run(lab, NAIVE, hosts, expect_changed=True)
        row["naive_rerun"] = timed_run(lab, NAIVE, hosts, expect_changed=True)
    row["noop_over_floor"] = row["noop"]["s"] / row["floor"]["s"]
    row["naive_rerun_over_noop"] = row["naive_rerun"]["s"] / row["noop"]["s"]
    row["naive_over_converge"] = row["naive"]["s"] / row["converge"]["s"]
    return row


def print_table(result: dict) -> None:
    print(f"playbook scale, {result['date']}, guest kernel {result['guest']['kernel']} "
          f"({result['guest']['cpu']}); wall seconds of one ansible-playbook run")
    print(f"{'hosts':>5} {'floor':>7} {'converge':>9} {'no-op':>7} {'naive':>7} "
          f"{'naive re-run':>12} {'no-op/floor':>11} {'naive re-run/no-op':>18}")
    for r in result["rows"]:
        print(f"{r['hosts']:>5} {r['floor']['s']:>7.0f} {r['converge']['s']:>9.0f} "
              f"{r['noop']['s']:>7.0f} {r['naive']['s']:>7.0f} {r['naive_rerun']['s']:>12.0f} "
              f"{r['noop_over_floor']:>11.2f} {r['naive_rerun_over_noop']:>18.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3,10,20")
    parser.add_argument("--guest-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.guest_out:
        if not in_guest():
            raise SystemExit("--guest-out is for the guest side")
        out = Path(args.guest_out)
        got = {"guest": machine(), "rows": []}
        for hosts in sizes:  # written after each size: a long run keeps what it finished
            got["rows"].append(measure(hosts))
            out.write_text(json.dumps(got, indent=1))
            print(f"bench playbooks: {hosts} hosts done", flush=True)
        return
    started = time.monotonic()
    rwdir = Path(tempfile.mkdtemp(prefix="wf-bench-playbooks-"))
    out = rwdir / "guest.json"
    print(f"bench playbooks: each run's output goes to {rwdir}/playbooks.log", flush=True)
    guest = run_in_guest(f"WF_PLAYBOOK_LOG={rwdir}/playbooks.log "
                         f"python -m bench.playbooks --guest-out {out} --sizes {args.sizes}",
                         rwdir=rwdir, stream=True, timeout=12 * 3600)
    if not out.exists():
        raise SystemExit(f"guest: exit {guest.returncode}, no result\n{guest.output[-3000:]}")
    result = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "host": machine(), "command": "./run bench playbooks " + " ".join(sys.argv[1:]),
              **json.loads(out.read_text()), "guest_run_s": guest.seconds,
              "total_s": time.monotonic() - started}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "playbooks.json").write_text(json.dumps(result, indent=1) + "\n")
    print_table(result)
    if guest.returncode:
        print(f"guest: exit {guest.returncode}: sizes not in the table did not finish\n"
              + guest.output[-3000:], file=sys.stderr)
    print(f"wrote {RESULTS / 'playbooks.json'}")


if __name__ == "__main__":
    main()
