"""Test tiers: ``unit`` (pure Python), ``netns`` (host kernel, root) and ``kernel`` (needs ESP).

On the host, every selected ``kernel`` test is replaced by a stand-in that reports the
outcome of the same test run inside the guest kernel; all of them run in ONE guest boot,
started when the first stand-in runs. Inside the guest (WF_IN_GUEST=1) they run for real.
``kernel`` tests also marked ``guest_lab`` run on the host instead: only their lab hosts live
in the guest (a boot of their own, ``lab up --kernel guest``), the Ansible controller natively.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.guest import in_guest, run_in_guest

pytest_plugins = ["lab.pytest_plugin"]


def pytest_addoption(parser):
    parser.addoption("--long", action="store_true",
                     help="also run the kernel scenarios marked long (an hour and more in the "
                          "emulated guest)")


@pytest.hookimpl(trylast=True)  # after -k and -m deselect: the guest runs only what is selected
def pytest_collection_modifyitems(config, items):
    if not config.getoption("--long"):
        deselected = [i for i in items if i.get_closest_marker("long")]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [i for i in items if not i.get_closest_marker("long")]
    tiers = ("unit", "netns", "kernel")
    untiered = [i.nodeid for i in items if not any(i.get_closest_marker(t) for t in tiers)]
    if untiered:
        raise pytest.UsageError(f"tests without a tier marker {tiers}: {untiered}")
    if in_guest():
        skip = pytest.mark.skip(reason="guest_lab: run on the host, it boots the guest itself")
        for item in items:
            if item.get_closest_marker("guest_lab"):
                item.add_marker(skip)
        return
    kernel_items = [i for i in items
                    if i.get_closest_marker("kernel") and not i.get_closest_marker("guest_lab")]
    if not kernel_items:
        return
    batch = GuestBatch([i.nodeid for i in kernel_items], config)
    for idx, item in enumerate(items):
        if item in kernel_items:
            stand_in = InGuest.from_parent(item.parent, name=item.name, batch=batch)
            stand_in.own_markers = list(item.own_markers)
            items[idx] = stand_in


class GuestBatch:
    """The selected kernel tests, run together in one guest boot on first demand."""

    def __init__(self, nodeids, config):
        self.nodeids = nodeids
        self.config = config
        self.outcomes = None
        self.output = ""

    def outcome(self, nodeid):
        if self.outcomes is None:
            self._run()
        return self.outcomes.get(nodeid)

    def _run(self):
        # One folder per run: concurrent runs on one machine must not share junit.xml.
        rwdir = Path(self.config.rootpath, "build", "guest", str(os.getpid()))
        rwdir.mkdir(parents=True, exist_ok=True)
        junit = rwdir / "junit.xml"
        junit.unlink(missing_ok=True)
        args = " ".join(f"'{n}'" for n in self.nodeids)
        result = run_in_guest(
            f"WF_PLAYBOOK_LOG={rwdir}/playbooks.log "
            f"python -m pytest -v -p no:cacheprovider -m kernel --junitxml={junit} "
            f"{'--long ' if self.config.getoption('--long') else ''}{args}",
            rwdir=rwdir, log=rwdir / "guest.log",
            timeout=6 * 3600 if self.config.getoption("--long") else 3200,  # CI: 60 minutes in all
            stream=os.environ.get("WF_GUEST_STREAM") == "1",
        )
        self.output = result.output
        self.outcomes = _parse_junit(junit) if junit.exists() else {}


def _parse_junit(path):
    outcomes = {}
    for case in ET.parse(path).iter("testcase"):
        key = (case.get("classname", ""), case.get("name", ""))
        failure = case.find("failure") if case.find("failure") is not None else case.find("error")
        skipped = case.find("skipped")
        if failure is not None:
            outcomes[key] = ("failed", (failure.get("message") or "") + "\n" + (failure.text or ""))
        elif skipped is not None:
            outcomes[key] = ("skipped", skipped.get("message") or "")
        else:
            outcomes[key] = ("passed", case.findtext("system-out") or "")
    return outcomes


class InGuest(pytest.Item):
    """Host-side stand-in for a kernel-tier test: reports its outcome in the guest."""

    def __init__(self, *, batch, **kwargs):
        super().__init__(**kwargs)
        self.batch = batch

    def runtest(self):
        outcome = self.batch.outcome(self._junit_key())
        if outcome is None:
            raise GuestFailure(f"no result from the guest for {self.nodeid}\n{self.batch.output}")
        status, detail = outcome
        if status == "skipped":
            pytest.skip(detail)
        if status == "failed":
            raise GuestFailure(detail)

    def _junit_key(self):
        module = self.path.relative_to(self.config.rootpath).with_suffix("")
        parts = self.nodeid.split("::")[1:]
        classname = ".".join(module.parts + tuple(parts[:-1]))
        return (classname, parts[-1])

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, GuestFailure):
            return f"in the guest kernel:\n{excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"[guest] {self.name}"


class GuestFailure(Exception):
    pass
