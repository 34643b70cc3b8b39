"""pytest fixtures of the lab."""

from __future__ import annotations

import secrets
import subprocess

import pytest

from lab.hosts import Lab


@pytest.fixture
def lab_factory():
    """``lab_factory(count=2, sshd=False)`` creates a lab; every one is destroyed at teardown,
    also when the test failed. Labs get unique names (``wft`` + 4 hex digits) unless named."""
    labs = []

    def make(count: int = 3, sshd: bool = True, name: str | None = None) -> Lab:
        lab = Lab(count=count, name=name or f"wft{secrets.token_hex(2)}", sshd=sshd)
        labs.append(lab)
        return lab.create()

    yield make
    for lab in reversed(labs):
        lab.destroy()


@pytest.fixture
def netns():
    """A bare network namespace ``wfn<hex>`` with ``lo`` up and a veth ``eth0`` (its peer end
    ``eth0p`` in the same namespace; this kind of kernel has no dummy links) holding
    198.51.100.11/24 and 2001:db8::11/64 (a host's underlay, no peers reachable); removed at
    teardown with everything in it. For module tests that need no second host."""
    name = f"wfn{secrets.token_hex(3)}"
    commands = ["link set lo up", "link add eth0 type veth peer name eth0p", "link set eth0p up",
                "addr add 198.51.100.11/24 dev eth0", "addr add 2001:db8::11/64 dev eth0 nodad",
                "link set eth0 up"]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "-batch", "-"], input="\n".join(commands) + "\n",
                       text=True, check=True, capture_output=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
