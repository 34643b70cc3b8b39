"""Run a command inside a User-Mode Linux kernel: Debian's ``user-mode-linux`` (6.1um).

The host kernel has no ESP, so everything that installs a security association runs here.
UML boots in about 2 s with the host's filesystem as its root (hostfs): the checkout and its
.venv are seen at the same paths. Writes through hostfs reach the host's files, so the init
script puts /run, /tmp, /dev/shm and HOME on tmpfs inside UML; results come back through
``rwdir``, a folder of the checkout (a checkout under /tmp stays visible: it is bind-mounted
back over the tmpfs). The kernel cannot autoload modules (it looks under
/lib/modules/<its version>, which the host lacks): the init loads them from
/usr/lib/uml/modules. Its nf_tables lacks IPv4, so the iptables tools are switched to their
legacy backend with a tmpfs copy of /etc/alternatives mounted over it, inside UML only.
UML has one CPU; two instances run side by side on two cores.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

GUEST_ENV_FLAG = "WF_IN_GUEST"
REPO = Path(__file__).resolve().parent.parent
UML = Path("/usr/bin/linux.uml")
UML_MODULES = Path("/usr/lib/uml/modules")
# Loaded in order (modprobe adds what each depends on). hmac, sha512_generic and drbg before
# the ESP ones: seqiv needs the DRBG, and without them SA creation fails ("unable to
# initialize cryptographic operations").
KERNEL_MODULES = (
    "ipv6", "af_packet", "tun", "veth", "bridge", "vxlan", "overlay", "hmac", "sha512_generic",
    "drbg", "gcm", "ctr", "ghash-generic", "seqiv", "echainiv", "aes_generic",
    "chacha20poly1305", "chacha_generic", "poly1305_generic", "xfrm_user", "esp4", "esp6",
    "ip_tables", "ip6_tables", "iptable_filter", "iptable_mangle", "iptable_raw", "iptable_nat",
    "ip6table_filter", "ip6table_mangle", "ip6table_raw", "nf_conntrack", "xt_conntrack",
    "xt_state", "xt_policy", "xt_esp", "xt_mark", "xt_tcpudp", "xt_owner", "xt_comment",
    "xt_multiport", "xt_addrtype", "xt_nat",
)
IPTABLES_LINKS = tuple(f"{t}{s}" for t in ("iptables", "ip6tables")
                       for s in ("", "-restore", "-save"))


def in_guest() -> bool:
    return os.environ.get(GUEST_ENV_FLAG) == "1"


def kernel_release() -> str:
    """The version of the UML kernel's modules (one package, one version)."""
    releases = sorted(p.name for p in UML_MODULES.glob("*") if (p / "modules.dep").exists())
    if not UML.exists() or not releases:
        raise RuntimeError("no User-Mode Linux kernel: install user-mode-linux (./run does)")
    return releases[-1]


@dataclass
class GuestResult:
    returncode: int
    output: str
    seconds: float


def init_script(rwdir: Path, release: str) -> str:
    """The shell script UML runs as init: mounts, modules, the iptables switch, then
    ``command`` in the checkout; its exit code goes to ``rwdir/exit-code``."""
    venv_bin = Path(sys.prefix) / "bin"
    alternatives = "\n".join(
        f'[ -L /run/wf-alternatives/{link} ] && ln -sfn '
        f'"$(readlink /etc/alternatives/{link} | sed s/-nft/-legacy/)" /run/wf-alternatives/{link}'
        for link in IPTABLES_LINKS)
    # A checkout (or virtualenv) under /tmp is kept visible through the tmpfs put over /tmp.
    kept = [p for p in dict.fromkeys((REPO, Path(sys.prefix)))
            if p.is_relative_to("/tmp") and not (p != REPO and p.is_relative_to(REPO))]
    keep = "".join(f"mkdir -p /run/wf-keep/{i} && mount --bind {shlex.quote(str(p))} "
                   f"/run/wf-keep/{i}\n" for i, p in enumerate(kept))
    restore = "".join(f"mkdir -p {shlex.quote(str(p))} && mount --bind /run/wf-keep/{i} "
                      f"{shlex.quote(str(p))}\n" for i, p in enumerate(kept))
    return f"""#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=0755 tmpfs /run
{keep}mount -t tmpfs -o mode=1777 tmpfs /tmp
{restore}mkdir -p /dev/shm /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
mkdir -p /run/wf-modules/lib/modules
ln -s {UML_MODULES / release} /run/wf-modules/lib/modules/{release}
for m in {' '.join(KERNEL_MODULES)}; do
  modprobe -d /run/wf-modules "$m" || echo "guest: modprobe $m failed"
done
cp -a /etc/alternatives /run/wf-alternatives
{alternatives}
mount --bind /run/wf-alternatives /etc/alternatives
ip link set lo up
export {GUEST_ENV_FLAG}=1 HOME=/tmp/wf-home PATH={shlex.quote(str(venv_bin))}:$PATH
export ANSIBLE_LOCAL_TEMP=/tmp/.ansible-local ANSIBLE_REMOTE_TEMP=/tmp/.ansible-remote
export PYTHONDONTWRITEBYTECODE=1 WF_GUEST_RWDIR={shlex.quote(str(rwdir))}
mkdir -p "$HOME"
cd {shlex.quote(str(REPO))}
sh {shlex.quote(str(rwdir / "guest-command.sh"))} </dev/null
echo $? > {shlex.quote(str(rwdir / "exit-code"))}
sync
halt -f
"""


def run_in_guest(
    command: str,
    *,
    rwdir: str | os.PathLike | None = None,
    memory: str = "4G",
    timeout: float = 3000,
    stream: bool = False,
    log: str | os.PathLike | None = None,
    netns: str | None = None,
    tap: str | None = None,
) -> GuestResult:
    """Boot UML once, run ``command`` (a shell line) in the checkout, return its exit code and
    output. The guest's PATH starts with the checkout's .venv. ``stream`` echoes the output to
    stderr as it comes, ``log`` appends it to a file. With ``tap`` (a TAP device made in
    network namespace ``netns``), the guest's ``eth0`` is that device's other end."""
    if rwdir is None:
        (REPO / "build").mkdir(exist_ok=True)
        rwdir = tempfile.mkdtemp(prefix="wf-guest-", dir=REPO / "build")
    rwdir = Path(rwdir)
    rwdir.mkdir(parents=True, exist_ok=True)
    (rwdir / "exit-code").unlink(missing_ok=True)
    (rwdir / "guest-command.sh").write_text(f"{command}\n")
    init = rwdir / "init.sh"
    init.write_text(init_script(rwdir, kernel_release()))
    init.chmod(0o755)
    argv = [str(UML), f"mem={memory}", "rootfstype=hostfs", "rootflags=/", "rw", "quiet",
            "loglevel=1", f"init={init}", "con=null", "con0=null,fd:1"]
    if tap:
        argv.append(f"eth0=tuntap,{tap}")
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    started = time.monotonic()
    # UML backs its memory with a file in TMPDIR: /dev/shm keeps it off the disk.
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace", cwd=REPO,
                            env={**os.environ, "TMPDIR": "/dev/shm"}, start_new_session=True)
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    lines = []
    log_file = open(log, "a", buffering=1) if log else None  # noqa: SIM115 - closed below
    try:
        for line in proc.stdout:
            line = line.rstrip()
            if line.strip():
                lines.append(line)
                if stream:
                    print(line, file=sys.stderr, flush=True)
                if log_file:
                    print(line, file=log_file)
        proc.wait()
    finally:
        watchdog.cancel()
        if log_file:
            log_file.close()
    code = (rwdir / "exit-code").read_text().strip() if (rwdir / "exit-code").exists() else ""
    if not code.isdigit():
        lines.append(f"guest: no exit code (UML exit {proc.returncode}, timeout {timeout:.0f}s)")
    return GuestResult(int(code) if code.isdigit() else 255, "\n".join(lines),
                       time.monotonic() - started)
