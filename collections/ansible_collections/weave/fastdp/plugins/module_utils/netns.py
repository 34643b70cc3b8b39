"""Enter a named network namespace (``ip netns`` style, /run/netns/NAME) for a while.

Sockets opened inside stay bound to that namespace after leaving it, and child
processes started inside (iptables-restore, ...) run in it. A missing namespace
is an error, never created.
"""

from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager

NETNS_RUN_DIR = "/run/netns"
_CLONE_NEWNET = 0x40000000


class NetnsError(Exception):
    pass


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(f"setns failed: {os.strerror(err)}")


@contextmanager
def entered(netns: str | None):
    """Run the body in network namespace ``netns`` (None: stay where we are)."""
    if not netns:
        yield
        return
    path = os.path.join(NETNS_RUN_DIR, netns)
    try:
        target = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise NetnsError(f"network namespace {netns!r} does not exist ({path})") from None
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)
