"""What a host's kernel can do, probed for real in a throwaway network namespace.

The probes run in a forked child that unshares its network namespace, so they leave nothing
behind and cannot disturb the host's own XFRM state or rules. A missing part is named, never
worked around: there is no plaintext fallback.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import shutil
import subprocess

from ansible_collections.weave.fastdp.plugins.module_utils import inet
from ansible_collections.weave.fastdp.plugins.module_utils.rtnl import Rtnl

MIN_KERNEL = (4, 2)
_CLONE_NEWNET = 0x40000000


def kernel_version(release: str | None = None) -> tuple[int, int]:
    release = release or platform.release()
    major, minor = release.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def probe(aead: str, esp_probe, vxlan_probe) -> dict[str, str | None]:
    """{part: None if it works, else why not}, each probe run in a fresh network namespace.

    ``esp_probe(aead)`` and ``vxlan_probe()`` raise with a readable message when the kernel
    lacks the part."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        os.close(read_fd)
        results = {}
        try:
            if ctypes.CDLL(None, use_errno=True).unshare(_CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")
            results["esp"] = _why_not(lambda: esp_probe(aead))
            results["vxlan"] = _why_not(vxlan_probe)
            results["xt_policy"] = _why_not(_xt_policy_probe)
        except BaseException as exc:  # noqa: BLE001 - report it; never raise out of the fork
            results["namespace"] = f"cannot make a probe network namespace: {exc}"
        with os.fdopen(write_fd, "w") as out:
            json.dump(results, out)
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as inp:
        raw = inp.read()
    os.waitpid(pid, 0)
    return json.loads(raw or '{"namespace": "probe process died"}')


def _why_not(probe_fn) -> str | None:
    try:
        probe_fn()
    except Exception as exc:  # noqa: BLE001 - any failure of a probe is the reason to report
        return str(exc) or type(exc).__name__
    return None


def _xt_policy_probe() -> None:
    iptables = shutil.which("iptables")
    if not iptables:
        raise RuntimeError("iptables is not installed")
    guards = {
        "xt_policy, xt_mark": ["OUTPUT", "-m", "policy", "--dir", "out", "--pol", "none",
                               "-m", "mark", "--mark", "0x20000/0x20000", "-j", "DROP"],
        "xt_esp": ["INPUT", "-p", "esp", "-m", "esp", "--espspi", "256", "-j", "ACCEPT"],
    }
    for matches, rule in guards.items():
        done = subprocess.run([iptables, "-w", "-A", *rule], capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(f"iptables cannot use {matches}: {done.stderr.strip()}")


def underlay(rtnl, address: str | None) -> dict:
    """The underlay address (default: the default route's interface's first IPv4 address), its
    interface and that interface's MTU, read through an open Rtnl."""
    addresses = [(a.index, a.address) for a in rtnl.addresses()]
    if address is None:
        oif = rtnl.default_route_interface()
        if oif is None:
            raise RuntimeError("no default route: set fastdp_underlay_address")
        address = next((a for i, a in addresses if i == oif and ":" not in a), None)
        if address is None:
            raise RuntimeError("the default route's interface has no IPv4 address: "
                               "set fastdp_underlay_address")
    try:
        wanted = inet.spelled(address)
    except ValueError as exc:
        raise RuntimeError(f"fastdp_underlay_address: {exc}") from None
    index = next((i for i, a in addresses if a == wanted), None)
    if index is None:
        raise RuntimeError(f"fastdp_underlay_address {address} is not an address of this host")
    link = rtnl.link(index=index)
    return {"underlay_address": wanted, "underlay_interface": link.name,
            "underlay_mtu": link.mtu}


def vxlan_probe() -> None:
    with Rtnl() as rtnl:
        rtnl.add_vxlan("wfprobe0", vni=42, port=6784)
