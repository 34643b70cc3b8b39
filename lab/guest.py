"""Run a command inside Debian's kernel booted under QEMU by virtme-ng.

The host kernel has no ESP, so everything that installs a security association
runs here. The guest sees the host's filesystem read-only over 9p (the checkout
and its .venv included); /tmp and /var are writable overlays that vanish with
the guest, so results come back through ``rwdir``, a host folder the guest can
write. Pure emulation (``--disable-kvm``): the /dev/kvm of this kind of machine
cannot run a stock kernel.
"""

from __future__ import annotations

import glob
import os
import re
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


def in_guest() -> bool:
    return os.environ.get(GUEST_ENV_FLAG) == "1"


def kernel_image() -> str:
    """The newest Debian kernel whose modules include ESP (linux-image-amd64)."""
    images = []
    for image in glob.glob("/boot/vmlinuz-*-amd64"):
        version = image.removeprefix("/boot/vmlinuz-")
        if glob.glob(f"/lib/modules/{version}/kernel/net/ipv4/esp4.ko*"):
            images.append(image)
    if not images:
        raise RuntimeError(
            "no Debian kernel with esp4 under /boot: install linux-image-amd64 (./run does)"
        )
    return max(images, key=_version_key)


def _version_key(path: str) -> list:
    return [int(x) if x.isdigit() else x for x in re.split(r"[.-]", path)]


@dataclass
class GuestResult:
    returncode: int
    output: str
    seconds: float


def run_in_guest(
    command: str,
    *,
    rwdir: str | os.PathLike | None = None,
    memory: str = "2G",
    cpus: int = 2,
    timeout: float = 3000,
    stream: bool = False,
    log: str | os.PathLike | None = None,
    qemu_opts: str | None = None,
) -> GuestResult:
    """Boot the guest once, run ``command`` (a shell line) in the checkout, return its exit code
    and output. ``rwdir`` is made writable in the guest; the guest's PATH starts with the
    checkout's .venv, and HOME and Ansible's temp dirs live under /tmp (read-only /root).
    ``stream`` echoes the output to stderr as it comes, ``log`` appends it to a file;
    ``qemu_opts`` are extra QEMU options (lab.remote's control network)."""
    rwdir = Path(rwdir or tempfile.mkdtemp(prefix="wf-guest-"))
    rwdir.mkdir(parents=True, exist_ok=True)
    venv_bin = Path(sys.prefix) / "bin"
    script = rwdir / "guest-command.sh"
    script.write_text(
        "set -e\n"
        f"export {GUEST_ENV_FLAG}=1 HOME=/tmp/wf-home PATH={shlex.quote(str(venv_bin))}:$PATH\n"
        "export ANSIBLE_LOCAL_TEMP=/tmp/.ansible-local ANSIBLE_REMOTE_TEMP=/tmp/.ansible-remote\n"
        "export PYTHONDONTWRITEBYTECODE=1\n"
        "mkdir -p $HOME\n"
        f"cd {shlex.quote(str(REPO))}\n"
        "set +e\n"
        f"{command}\n"
    )
    vng = [
        str(venv_bin / "vng"), "--run", kernel_image(), "--disable-kvm",
        "--memory", memory, "--cpus", str(cpus), "--rwdir", str(rwdir),
        "--exec", f"sh {shlex.quote(str(script))}",
    ]
    if qemu_opts:
        vng.append(f"--qemu-opts={qemu_opts}")  # "=": the value starts with a dash
    started = time.monotonic()
    proc = subprocess.Popen(
        vng, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, errors="replace", cwd=REPO,
        env={**os.environ, "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/sbin:/usr/bin')}"},
    )
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
    if proc.returncode < 0:
        lines.append(f"guest: killed (signal {-proc.returncode}), timeout {timeout:.0f}s")
    return GuestResult(proc.returncode, "\n".join(lines), time.monotonic() - started)
