"""Lab hosts in the guest kernel, driven by an Ansible controller on the host.

Only the lab hosts need the guest (for its ESP); ansible-playbook itself is Python, and Python
under emulation is 20-40x slower (in the guest, ansible-playbook takes ~50 s before its first
play). So here the controller runs natively and reaches each host's sshd through QEMU's user
network: host 127.0.0.1:(22000+I) -> guest root namespace CONTROL_ADDRESS:(22000+I) -> DNAT ->
198.51.100.(10+I):22 of host hI, SNATed to the lab's gateway 198.51.100.1 (hosts route
203.0.113.0/24 into their overlay). The user network is restricted (the guest reaches nothing
outside it) and numbered in the documentation range 203.0.113.248/29, which no lab host uses in
the guest's root namespace.

Host and guest meet in ``rwdir`` (a host folder the guest can write): for each lab size N the
guest writes ``lab-N/inventory.yml`` (rewritten for the host) and then ``lab-N/ready``; the host
writes ``lab-N/done`` when it has finished with that lab, or ``stop`` to end the guest early.

``python -m lab up --kernel guest`` (molecule's create) outlives its command: it starts a
detached holder process that boots the guest and keeps one lab there until
``python -m lab down`` (molecule's destroy) releases it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from lab.guest import GuestResult, in_guest, run_in_guest
from lab.hosts import GATEWAY, Lab, LabError, _run, _running, work_dir

CONTROL_NET = "203.0.113.248/29"
CONTROL_GATEWAY = "203.0.113.249"
CONTROL_ADDRESS = "203.0.113.250"
CONTROL_DNS = "203.0.113.251"
PORT_BASE = 22000


def port(index: int) -> int:
    """The host port that reaches host h<index>'s sshd."""
    return PORT_BASE + index


def qemu_network(hosts: int) -> str:
    """QEMU options for the control network forwarding a port to each of ``hosts`` lab hosts."""
    forwards = ",".join(f"hostfwd=tcp:127.0.0.1:{port(i)}-{CONTROL_ADDRESS}:{port(i)}"
                        for i in range(1, hosts + 1))
    return (f"-device virtio-net-pci,netdev=wfctl -netdev user,id=wfctl,restrict=on,"
            f"net={CONTROL_NET},host={CONTROL_GATEWAY},dhcpstart={CONTROL_ADDRESS},"
            f"dns={CONTROL_DNS},{forwards}")


@dataclass(frozen=True)
class RemoteLab:
    """What the host needs of a lab in the guest to run playbooks against it (as Lab has)."""
    hosts: int
    work_dir: Path
    inventory: Path


def labs_in_guest(sizes: list[int], rwdir: Path, *, timeout: float,
                  log: Path | None = None) -> Iterator[RemoteLab]:
    """Boot the guest once and yield, one after the other, a lab of each size in it. The guest
    is told to go on when the caller asks for the next lab, and to stop if the caller leaves."""
    rwdir.mkdir(parents=True, exist_ok=True)
    result: list[GuestResult] = []
    command = (f"python -m lab.remote serve --sizes {','.join(map(str, sizes))} --rwdir {rwdir}")
    guest = threading.Thread(target=lambda: result.append(run_in_guest(
        command, rwdir=rwdir, timeout=timeout, log=log,
        qemu_opts=qemu_network(max(sizes)))), daemon=True)
    guest.start()
    try:
        for n in sizes:
            lab_dir = rwdir / f"lab-{n}"
            while not (lab_dir / "ready").exists():
                if not guest.is_alive():
                    output = result[0].output[-3000:] if result else ""
                    raise LabError(f"guest ended before its lab of {n} hosts was ready:\n{output}")
                time.sleep(1)
            (lab_dir / "id_ed25519").chmod(0o600)  # ssh refuses a key others can read
            yield RemoteLab(n, lab_dir, lab_dir / "inventory.yml")
            (lab_dir / "done").touch()
    finally:
        (rwdir / "stop").touch()
        guest.join(timeout=300)


def up_in_guest(name: str, hosts: int, *, timeout: float = 4 * 3600,
                boot_timeout: float = 1200) -> Path:
    """Start a detached holder of a lab of ``hosts`` hosts in the guest; return the inventory
    (``work_dir(name)/inventory.yml``, as a local lab's) once the hosts answer SSH."""
    wd = work_dir(name)
    if wd.exists():
        raise LabError(f"lab {name} exists: python -m lab down --name {name}")
    rwdir = wd / "guest"  # a path under wd: Lab.destroy_stale reaps whatever names it
    rwdir.mkdir(parents=True)
    with open(wd / "holder.log", "w") as log:
        holder = subprocess.Popen(
            [sys.executable, "-m", "lab.remote", "hold", "--sizes", str(hosts),
             "--rwdir", str(rwdir), "--timeout", str(timeout)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=Path(__file__).resolve().parent.parent)
    (wd / "holder.pid").write_text(str(holder.pid))
    deadline = time.monotonic() + boot_timeout
    while not (wd / "inventory.yml").exists():
        if holder.poll() is not None or time.monotonic() > deadline:
            tail = (wd / "holder.log").read_text()[-3000:]
            release(name)
            raise LabError(f"lab {name} in the guest did not come up:\n{tail}")
        time.sleep(1)
    return wd / "inventory.yml"


def hold(sizes: list[int], rwdir: Path, *, timeout: float) -> None:
    """Host side of up_in_guest: boot the guest, publish its lab's inventory beside ``rwdir``,
    keep the lab until ``rwdir/stop`` exists."""
    for lab in labs_in_guest(sizes, rwdir, timeout=timeout, log=rwdir / "guest.log"):
        shutil.copy(lab.inventory, rwdir.parent / "inventory.yml.tmp")
        (rwdir.parent / "inventory.yml.tmp").rename(rwdir.parent / "inventory.yml")
        while not (rwdir / "stop").exists():
            time.sleep(1)


def release(name: str, timeout: float = 300) -> None:
    """Stop the guest holding lab ``name``, if any, and wait for it to power off (the caller
    then removes what is left with Lab.destroy_stale)."""
    wd = work_dir(name)
    pid = (wd / "holder.pid").read_text().strip() if (wd / "holder.pid").exists() else ""
    if not pid.isdigit():
        return
    (wd / "guest" / "stop").touch()
    deadline = time.monotonic() + timeout
    while _running(int(pid)) and time.monotonic() < deadline:
        time.sleep(1)


# ----------------------------------------------------------------------------- guest side

def _control_nic() -> str:
    _run("modprobe", "virtio_net", check=False)  # no udev in the guest to load it
    for _ in range(50):
        nics = sorted(p.name for p in
                      Path("/sys/bus/virtio/drivers/virtio_net").glob("virtio*/net/*"))
        if nics:
            return nics[0]
        time.sleep(0.1)
    raise LabError("no virtio NIC in the guest: was it booted with qemu_network()?")


def serve(sizes: list[int], rwdir: Path, name: str = "wfpb") -> None:
    """In the guest: bring up the control network, then for each size make a lab, hand it to
    the host and wait until the host is done with it."""
    nic = _control_nic()
    _run("ip", "addr", "add", f"{CONTROL_ADDRESS}/29", "dev", nic)
    _run("ip", "link", "set", nic, "up")
    _run("sysctl", "-qw", "net.ipv4.ip_forward=1")
    # Real hosts each have a per-CPU receive backlog (1000 packets); here every lab host's
    # packets queue in the guest's. A 20-host lab overflowed it (softnet_stat drops) when its
    # hosts' SSH sessions and verification echoes came together, and lost the echoes.
    _run("sysctl", "-qw", f"net.core.netdev_max_backlog={1000 * max(sizes)}")
    for n in sizes:
        if (rwdir / "stop").exists():
            return
        lab_dir = rwdir / f"lab-{n}"
        lab_dir.mkdir(parents=True, exist_ok=True)
        with Lab(count=n, name=name, sshd=True) as lab:
            rules = "".join(f"-A PREROUTING -i {nic} -p tcp --dport {port(i)} -j DNAT "
                            f"--to-destination {h.address}:22\n"
                            for i, h in enumerate(lab.hosts, start=1))
            # Lab hosts answer 203.0.113.0/24 over their overlay once it exists: the
            # forwarded connections come from the lab's gateway instead (SNAT).
            subprocess.run(["iptables-restore"], input=f"*nat\n:PREROUTING ACCEPT [0:0]\n"
                           f":POSTROUTING ACCEPT [0:0]\n{rules}-A POSTROUTING -o {lab.bridge} "
                           f"-m conntrack --ctstate DNAT -j SNAT --to-source {GATEWAY}\n"
                           "COMMIT\n", text=True, check=True)
            shutil.copy(lab.private_key, lab_dir / "id_ed25519")
            inventory = yaml.safe_load(lab.inventory.read_text())
            index = {h.name: i for i, h in enumerate(lab.hosts, start=1)}
            for hostname, hostvars in inventory["all"]["children"]["fastdp_mesh"]["hosts"].items():
                hostvars.update(ansible_host="127.0.0.1", ansible_port=port(index[hostname]),
                                ansible_ssh_private_key_file=str(lab_dir / "id_ed25519"))
            (lab_dir / "inventory.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
            (lab_dir / "guest.json").write_text(json.dumps(
                {"kernel": platform.release(), "cpus": os.cpu_count()}))
            (lab_dir / "ready").touch()
            print(f"lab.remote: lab of {n} hosts ready", flush=True)
            while not ((lab_dir / "done").exists() or (rwdir / "stop").exists()):
                time.sleep(1)
            subprocess.run(["iptables", "-t", "nat", "-F"], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="serve: the guest side of labs_in_guest; "
                                                 "hold: the host side of up_in_guest")
    parser.add_argument("role", choices=["serve", "hold"])
    parser.add_argument("--sizes", required=True)
    parser.add_argument("--rwdir", required=True, type=Path)
    parser.add_argument("--timeout", type=float, default=4 * 3600)
    args = parser.parse_args()
    if in_guest() != (args.role == "serve"):
        raise SystemExit("lab.remote: serve runs in the guest, hold on the host")
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.role == "serve":
        serve(sizes, args.rwdir)
    else:
        hold(sizes, args.rwdir, timeout=args.timeout)


if __name__ == "__main__":
    main()
