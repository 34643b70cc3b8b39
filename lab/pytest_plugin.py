"""pytest fixtures of the lab."""

from __future__ import annotations

import secrets

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
