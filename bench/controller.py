"""The controller's share of a converge at fleet sizes no lab here holds: 10, 100, 300 and 1,000
hosts, simulated. Run as ``./run bench controller [--sizes 10,100,300,1000]``.

One ``ansible-playbook`` run per size, natively, on an inventory of N hosts of the mesh group
that no task connects to. The play first sets, on every host, what the role's module runs would
have returned there (what the preflight and identity publish, and what the nonces step publishes
for each peer: an epoch, an SPI and a sealed nonce of the real sizes), then templates, on every
host, the arguments the role gives its modules, with the role's own vars (roles/mesh/vars): the
inbound half, the outbound half and the pair options. So the run does the role's controller-side
work (each host's view of its peers built from hostvars, the module arguments) and Ansible's own
per-task cost, without the modules. Beside it, in the same run, Ansible's floor for the same
inventory: the same number of tasks doing nothing (``ansible.builtin.meta: noop`` is not a task
the workers run, so the floor sets a constant fact).

Reported per size: wall seconds, the controller's CPU seconds (ansible-playbook and its workers),
its peak RSS (the largest process), and per host: wall and CPU seconds over N. Results:
bench/results/controller.json. No assertion on any time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench._machine import machine

REPO = Path(__file__).resolve().parent.parent
ROLE = REPO / "collections/ansible_collections/weave/fastdp/roles/mesh"
RESULTS = REPO / "bench" / "results"
SEALED_NONCE = "A" * 108  # base64 of a 32-byte nonce sealed with AES-GCM and its 16-byte tag

PUBLISHED = """
- name: What preflight and identity would have published on each host
  ansible.builtin.set_fact:
    _fastdp_self:
      host: "{{ inventory_hostname }}"
      name: "{{ inventory_hostname }}"
      peer_name: "{{ inventory_hostname }}"
      address: "{{ fastdp_underlay_address }}"
      underlay_address: "{{ fastdp_underlay_address }}"
      underlay_interface: eth0
      underlay_mtu: 1500
      overlay_address: "{{ fastdp_overlay_address }}"
      vxlan_mac: "{{ fastdp_mesh_name | weave.fastdp.vxlan_mac(fastdp_underlay_address) }}"
      recorded_epoch: 1
      gcp: null
      public_key: "{{ (inventory_hostname | hash('sha256'))[:43] }}="
- name: What the nonces step would have published for each peer
  ansible.builtin.set_fact:
    _fastdp_nonces:
      epochs: [1]
      published: >-
        {{ dict(groups['fastdp_mesh'] | difference([inventory_hostname])
                | zip([[{'epoch': 1, 'spi': 4096, 'sealed_nonce': '%s'}]]
                      * (groups['fastdp_mesh'] | length - 1))) }}
"""

PUBLISHED %= SEALED_NONCE

ARGUMENTS = """
- name: The inbound half's arguments
  ansible.builtin.set_fact:
    _bench_inbound: "{{ _fastdp_inbound_half }}"
- name: The outbound half's arguments
  ansible.builtin.set_fact:
    _bench_outbound: "{{ _fastdp_sa_options }}"
- name: The pair options (verification, status)
  ansible.builtin.set_fact:
    _bench_pairs: "{{ _fastdp_pair_options }}"
"""


def floor_tasks(count: int) -> str:
    return "".join(f"\n- name: Floor {i}\n  ansible.builtin.set_fact:\n    _bench_floor: {i}\n"
                   for i in range(count))


def inventory(hosts: int) -> dict:
    """N hosts of the mesh group; addresses from the documentation ranges (never reached)."""
    members = {}
    for i in range(hosts):
        members[f"n{i:04d}"] = {
            "fastdp_underlay_address": f"2001:db8:{i // 256:x}::{i % 256 + 1:x}",
            "fastdp_overlay_address": f"2001:db8:ffff::{i + 1:x}/64",
        }
    return {"all": {"children": {"fastdp_mesh": {"hosts": members}}}}


def play(tasks: str) -> str:
    return (f"- hosts: fastdp_mesh\n  gather_facts: false\n  vars_files:\n"
            f"    - {ROLE / 'defaults/main.yml'}\n    - {ROLE / 'vars/main.yml'}\n"
            f"  vars:\n    fastdp_password: bench-only\n    fastdp_netns: null\n"
            f"  tasks:\n" + "\n".join("    " + line if line else line
                                      for line in tasks.splitlines()) + "\n")


def timed(playbook: Path, inventory_file: Path, forks: int) -> dict:
    """One ansible-playbook run: wall and CPU seconds (it and its workers), peak RSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory_file),
         "--forks", str(forks), str(playbook)],
        cwd=REPO, capture_output=True, text=True, check=False,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"})
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise RuntimeError(f"{playbook.name}: exit {proc.returncode}\n{proc.stdout[-3000:]}")
    return {"s": round(wall, 2),
            "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2),
            "peak_rss_mb": round(after.ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,300,1000")
    parser.add_argument("--forks", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wf-bench-controller-"))
    tasks = PUBLISHED + ARGUMENTS
    task_count = tasks.count("- name:")
    (work / "role.yml").write_text(play(tasks))
    (work / "floor.yml").write_text(play(floor_tasks(task_count)))
    result = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "host": machine(),
              "command": "./run bench controller " + " ".join(sys.argv[1:]),
              "forks": args.forks, "tasks": task_count, "rows": []}
    for n in (int(s) for s in args.sizes.split(",")):
        inventory_file = work / f"inventory-{n}.yml"
        inventory_file.write_text(yaml.safe_dump(inventory(n)))
        row = {"hosts": n}
        for key in ("floor", "role"):
            row[key] = timed(work / f"{key}.yml", inventory_file, args.forks)
            row[key]["s_per_host"] = round(row[key]["s"] / n, 4)
            row[key]["cpu_s_per_host"] = round(row[key]["cpu_s"] / n, 4)
        row["role_over_floor"] = round(row["role"]["s"] / row["floor"]["s"], 2)
        result["rows"].append(row)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "controller.json").write_text(json.dumps(result, indent=1) + "\n")
        print(f"{n:5d} hosts: floor {row['floor']['s']:7.1f} s, role's controller work "
              f"{row['role']['s']:7.1f} s ({row['role']['s_per_host']:.3f} s/host, "
              f"CPU {row['role']['cpu_s_per_host']:.3f} s/host, peak RSS "
              f"{row['role']['peak_rss_mb']:.0f} MB), {row['role_over_floor']:.2f}x the floor",
              flush=True)


if __name__ == "__main__":
    main()
