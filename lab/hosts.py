"""Lab test hosts: network namespaces on this machine, each reached over real SSH.

Host ``hI`` is namespace ``<name>-hI`` with ``eth0`` at 198.51.100.(10+I)/24 and
2001:db8::(10+I)/64, a veth whose other end (named like the namespace) is enslaved to the
bridge ``<name>-br`` in the root namespace; the bridge holds 198.51.100.1 and 2001:db8::1,
the hosts' default gateway, so the controller (root namespace) reaches every host.

A host with sshd is a server of its own: sshd runs chrooted in an overlay of a real
distribution's root filesystem (lab.rootfs, one platform per host), so Ansible runs the
modules with that distribution's ``/usr/bin/python3`` and packages, and the collection's state
lives in the host's own /var/lib. In the guest kernel (no nf_tables for IPv4) each host's
iptables alternatives point at the legacy backend, in its overlay only. Hosts without sshd
(module tests) share this machine's filesystem and get a state directory each.

Every lab uses the same addresses, so only one lab can exist at a time on a kernel: a
second one waits (bounded) for the first to go, and reaps it if its owner process died.
"""

from __future__ import annotations

import fcntl
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import yaml

from lab import rootfs
from lab.guest import IPTABLES_LINKS, in_guest

GATEWAY = "198.51.100.1"
GATEWAY6 = "2001:db8::1"
SSH_PORT = 22
SSH_COMMON_ARGS = "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o IdentitiesOnly=yes"
IFNAMSIZ = 15
NAME_RE = re.compile(r"^[a-z][a-z0-9]*$")
LOCK_FILE = Path("/run/wf-lab.lock")
DETACHED = "detached"


def overlay_address(host: LabHost) -> str:
    """203.0.113.I for host hI: its address on the mesh's overlay."""
    return f"203.0.113.{host.name.removeprefix('h')}"


def work_dir(name: str) -> Path:
    return Path(f"/tmp/wf-lab-{name}")


@dataclass(frozen=True)
class LabHost:
    """``root``: where the host's own root filesystem is mounted (None: no sshd, the
    machine's filesystem); ``platform``: the distribution it holds (lab.rootfs.PLATFORMS)."""
    name: str
    netns: str
    address: str
    address6: str
    iface: str = "eth0"
    platform: str | None = None
    root: Path | None = None


class LabError(RuntimeError):
    pass


class Lab:
    """``count`` hosts named ``h1``..``hN``; ``sshd=False`` skips SSH (and the hosts' own
    root filesystems) for namespace-only labs. ``platforms`` names each host's distribution
    (cycled over the hosts; default lab.rootfs.DEFAULT_PLATFORM).

    ``detached`` labs (``python -m lab up``) belong to no process: only ``destroy`` or
    ``python -m lab down`` removes them. Other labs record their owner process, so a lab
    left by a killed run is reaped by the next lab that needs the addresses.
    """

    def __init__(self, count: int = 3, name: str = "wf", sshd: bool = True, *,
                 platforms: list[str] | None = None, detached: bool = False,
                 claim_timeout: float = 300):
        if not NAME_RE.match(name):
            raise LabError(f"lab name {name!r}: lower-case letters and digits, letter first")
        if not 1 <= count <= 240:
            raise LabError(f"lab of {count} hosts: 1..240 (198.51.100.11 up to .250)")
        if len(f"{name}-h{count}") > IFNAMSIZ:
            raise LabError(f"lab name {name!r}: '{name}-h{count}' exceeds {IFNAMSIZ} characters")
        self.name = name
        self.sshd = sshd
        self.detached = detached
        self.claim_timeout = claim_timeout
        self.work_dir = work_dir(name)
        self.bridge = f"{name}-br"
        platforms = platforms or [rootfs.DEFAULT_PLATFORM]
        self.hosts = [
            LabHost(f"h{i}", f"{name}-h{i}", f"198.51.100.{10 + i}", f"2001:db8::{10 + i:x}",
                    platform=platforms[(i - 1) % len(platforms)] if sshd else None,
                    root=self.work_dir / f"h{i}" / "root" if sshd else None)
            for i in range(1, count + 1)
        ]
        self.inventory = self.work_dir / "inventory.yml"
        self.private_key = self.work_dir / "id_ed25519"
        self._sshd: dict[str, subprocess.Popen] = {}

    def __enter__(self) -> Self:
        return self.create()

    def __exit__(self, *exc) -> None:
        self.destroy()

    def host(self, host: LabHost | str) -> LabHost:
        if isinstance(host, LabHost):
            return host
        for h in self.hosts:
            if host in (h.name, h.netns):
                return h
        raise LabError(f"no host {host!r} in lab {self.name}")

    def state_dir(self, host: LabHost | str, mesh: str = "weave") -> Path:
        """The collection's state directory of ``mesh`` on the host, as seen from here."""
        h = self.host(host)
        if h.root is None:
            return self.work_dir / h.name / "state"
        return h.root / "var/lib/weave-fastdp" / mesh

    def exec(self, host: LabHost | str, *argv, check: bool = True, **kw):
        """Run argv in the host's network namespace; output captured as text unless told."""
        if "stdout" not in kw and "stderr" not in kw:
            kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(["ip", "netns", "exec", self.host(host).netns, *map(str, argv)],
                              check=check, **kw)

    def create(self) -> Lab:
        self._claim_addresses()
        try:
            self._make_hosts()
            if self.sshd:
                self._start_sshd()
            self._write_inventory()
        except BaseException:
            self.destroy()
            raise
        return self

    def destroy(self) -> None:
        """Remove everything of this lab; safe to call again, and after a failed create."""
        self.destroy_stale(self.name)
        for proc in self._sshd.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self._sshd.clear()

    @classmethod
    def destroy_stale(cls, name: str) -> None:
        """Remove whatever a lab called ``name`` left: processes in its namespaces, sshd,
        namespaces, links, work dir. Finds them by name, so it also cleans a killed run."""
        wd = work_dir(name)
        namespaces = [ns for ns in _netns_names() if re.fullmatch(rf"{name}-h\d+", ns)]
        in_lab = {pid for ns in namespaces
                  for pid in map(int, _run("ip", "netns", "pids", ns, check=False).stdout.split())}
        listeners = {int(pid) for pid in map(_read, wd.glob("h*/sshd.pid"))
                     if pid.isdigit() and int(pid) in in_lab}
        # Sessions first, so that their sshd, still alive, reaps them (no zombies left).
        for pid in in_lab - listeners:
            _stop(pid, sig=signal.SIGKILL)
        for pid in listeners:
            _stop(pid)
        for pid in _users_of(wd):
            _stop(pid)
        for mount in _mounts_under(wd):
            _run("umount", "-l", mount, check=False)
        for ns in namespaces:
            _run("ip", "netns", "del", ns, check=False)
        for link in _links():
            if link == f"{name}-br" or re.fullmatch(rf"{name}-h\d+", link):
                _run("ip", "link", "del", link, check=False)
        shutil.rmtree(wd, ignore_errors=True)

    @staticmethod
    def existing() -> list[str]:
        """Names of labs that left a work dir, a namespace or a bridge on this machine."""
        names = {p.name.removeprefix("wf-lab-") for p in Path("/tmp").glob("wf-lab-*")}
        names |= {m[1] for ns in _netns_names() if (m := re.fullmatch(r"(.+)-h\d+", ns))}
        return sorted(n for n in names if NAME_RE.match(n))

    def _claim_addresses(self) -> None:
        """Make the work dir and the bridge holding the gateway address, once no other lab
        holds it. Leftovers of a dead owner are reaped; a live lab is never touched."""
        deadline = time.monotonic() + self.claim_timeout
        while True:
            with _lock():
                holder = _gateway_holder()
                if holder is None:
                    if _owned(self.name):
                        raise LabError(f"lab {self.name} exists: python -m lab down --name "
                                       f"{self.name}")
                    self.destroy_stale(self.name)
                    self.work_dir.mkdir(mode=0o700)
                    (self.work_dir / "owner").write_text(DETACHED if self.detached else _me())
                    try:
                        _batch(None, [
                            f"link add {self.bridge} type bridge",
                            f"addr add {GATEWAY}/24 dev {self.bridge}",
                            f"addr add {GATEWAY6}/64 dev {self.bridge} nodad",
                            f"link set {self.bridge} up",
                        ])
                    except BaseException:
                        self.destroy_stale(self.name)
                        raise
                    return
            other = holder.removesuffix("-br")
            if holder == f"{other}-br" and work_dir(other).exists() and not _owned(other):
                self.destroy_stale(other)
                continue
            if _read(work_dir(other) / "owner") in (DETACHED, _me()):
                raise LabError(f"lab {other} holds {GATEWAY} (one lab at a time): "
                               f"python -m lab down --name {other}")
            if time.monotonic() > deadline:
                raise LabError(f"{holder} still holds {GATEWAY} after {self.claim_timeout:.0f}s")
            time.sleep(0.5)

    def _make_hosts(self) -> None:
        root = []
        for h in self.hosts:
            (self.work_dir / h.name / ("root" if h.root else "state")).mkdir(parents=True,
                                                                           mode=0o700)
            if h.root:
                self._mount_root(h)
            root += [
                f"netns add {h.netns}",
                f"link add {h.netns} type veth peer name {h.iface} netns {h.netns}",
                f"link set {h.netns} master {self.bridge} up",
            ]
        _batch(None, root)
        for h in self.hosts:
            _batch(h.netns, [
                "link set lo up",
                f"addr add {h.address}/24 dev {h.iface}",
                f"addr add {h.address6}/64 dev {h.iface} nodad",
                f"link set {h.iface} up",
                f"route add default via {GATEWAY}",
                f"route add default via {GATEWAY6}",
            ])

    def _mount_root(self, h: LabHost) -> None:
        """The host's root filesystem: its platform's image under an overlay whose writes stay
        in the lab's work dir (the image is shared by every host and never written)."""
        image = rootfs.ensure(h.platform)
        upper, work = (self.work_dir / h.name / d for d in ("upper", "work"))
        upper.mkdir()
        work.mkdir()
        _run("mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={image},upperdir={upper},workdir={work}", h.root)
        if in_guest():  # this kernel's nf_tables has no IPv4: the legacy backend
            for link in IPTABLES_LINKS:
                alternative = h.root / "etc/alternatives" / link
                if alternative.is_symlink():
                    target = str(alternative.readlink()).replace("-nft", "-legacy")
                    alternative.unlink()
                    alternative.symlink_to(target)

    def _start_sshd(self) -> None:
        """sshd of each host, chrooted in its root filesystem with /proc, /sys (of its
        network namespace), /dev and a /run of its own, in a mount namespace that ends with it;
        root logs in with the lab's key, as on a server set up for Ansible."""
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"wf-lab-{self.name}",
             "-f", self.private_key)
        public = self.private_key.with_suffix(".pub").read_text()
        for h in self.hosts:
            ssh_dir = h.root / "root/.ssh"
            ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            (ssh_dir / "authorized_keys").write_text(public)
            (h.root / "etc/ssh/sshd_config.d/wf-lab.conf").write_text(
                f"ListenAddress {h.address}:{SSH_PORT}\n"
                f"ListenAddress [{h.address6}]:{SSH_PORT}\n"
                "PermitRootLogin prohibit-password\n"
                "PasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\n"
                "UsePAM no\n"
                "UseDNS no\n"
            )
            root = shlex.quote(str(h.root))
            mounts = (f"mount -t proc proc {root}/proc && mount -t sysfs sysfs {root}/sys && "
                      f"mount --rbind /dev {root}/dev && mount -t tmpfs -o mode=0755 tmpfs "
                      f"{root}/run && mkdir -p {root}/run/sshd && "
                      f"exec chroot {root} /usr/sbin/sshd -D -e")
            with open(self.work_dir / h.name / "sshd.log", "wb") as log:
                self._sshd[h.name] = subprocess.Popen(
                    ["ip", "netns", "exec", h.netns, "unshare", "--mount", "--propagation",
                     "private", "sh", "-c", mounts],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
            (self.work_dir / h.name / "sshd.pid").write_text(str(self._sshd[h.name].pid))
        for h in self.hosts:
            self._wait_for_ssh(h)

    def _wait_for_ssh(self, h: LabHost, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection((h.address, SSH_PORT), timeout=1).close()
                return
            except OSError as e:
                proc = self._sshd[h.name]
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = _read(self.work_dir / h.name / "sshd.log")
                    raise LabError(f"sshd of {h.netns} not reachable ({e}); log:\n{log}") from e
                time.sleep(0.05)

    def _write_inventory(self) -> None:
        hosts = {
            h.name: {
                "ansible_host": h.address,
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(self.private_key),
                "ansible_ssh_common_args": SSH_COMMON_ARGS,
                "ansible_python_interpreter": "/usr/bin/python3",
                "fastdp_underlay_address": h.address,
                "fastdp_overlay_address": f"{overlay_address(h)}/24",
            }
            for h in self.hosts
        }
        self.inventory.write_text(yaml.safe_dump(
            {"all": {"children": {"fastdp_mesh": {"hosts": hosts}}}}, sort_keys=False))


def _run(*argv, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], check=False, capture_output=True, text=True)
    if check and proc.returncode:
        raise LabError(f"{' '.join(map(str, argv))}: {proc.stderr.strip()}")
    return proc


def _batch(netns: str | None, commands: list[str]) -> None:
    """Many ``ip`` commands in one process (a 20-host lab makes ~200 of them)."""
    argv = ["ip"] + (["-n", netns] if netns else []) + ["-batch", "-"]
    proc = subprocess.run(argv, check=False, input="\n".join(commands) + "\n",
                          capture_output=True, text=True)
    if proc.returncode:
        raise LabError(f"{' '.join(argv)}: {proc.stderr.strip()}")


def _netns_names() -> list[str]:
    return [line.split()[0] for line in _run("ip", "netns", "list").stdout.splitlines() if line]


def _links() -> list[str]:
    out = _run("ip", "-o", "link", "show").stdout
    return [line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": " in line]


def _gateway_holder() -> str | None:
    out = _run("ip", "-o", "-4", "addr", "show").stdout
    for line in out.splitlines():
        fields = line.split()
        if any(f.startswith(f"{GATEWAY}/") for f in fields):
            return fields[1]
    return None


def _me() -> str:
    return f"{os.getpid()} {_start_time(os.getpid())}"


def _start_time(pid: int) -> str:
    """Process start time (clock ticks since boot), so a reused pid is not taken for its owner."""
    return _stat_field(pid, 19)


def _stat_field(pid: int, index: int) -> str:
    """Field of /proc/PID/stat after the command name: 0 state, 1 ppid, 19 start time."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[index]
    except (OSError, IndexError):
        return ""


def _owned(name: str) -> bool:
    """Whether lab ``name`` is detached or its owner process still runs."""
    owner = _read(work_dir(name) / "owner")
    pid, _, started = owner.partition(" ")
    return owner == DETACHED or (pid.isdigit() and _start_time(int(pid)) == started != "")


def _stop(pid: int, sig: int = signal.SIGTERM, timeout: float = 3) -> None:
    """Signal pid, then SIGKILL it if it has not gone within ``timeout``."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _running(pid):
            return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _running(pid: int) -> bool:
    """True while pid exists and is not a zombie (a zombie child is reaped by its Popen)."""
    return _stat_field(pid, 0) not in ("", "Z")


def _users_of(wd: Path) -> list[int]:
    """Other processes naming the work dir, e.g. ssh connection masters holding the lab's key
    (Ansible's ControlPersist keeps them a minute), but not this process or its ancestors."""
    spared, pid = set(), os.getpid()
    while pid > 1:
        spared.add(pid)
        pid = int(_stat_field(pid, 1) or 0)
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        pid = int(cmdline.parent.name)
        try:
            if pid not in spared and f"{wd}/".encode() in cmdline.read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


def _mounts_under(wd: Path) -> list[str]:
    """Mount points at or below ``wd``, deepest first (to unmount in that order)."""
    found = []
    for line in _read(Path("/proc/self/mountinfo")).splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == str(wd) or point.startswith(f"{wd}/"):
            found.append(point)
    return sorted(found, key=len, reverse=True)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


class _lock:
    """Serialises the check-and-claim of the gateway address between processes."""

    def __enter__(self):
        self.fd = os.open(LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        os.close(self.fd)
