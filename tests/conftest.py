"""Test tiers: ``unit`` (pure Python), ``netns`` (host kernel, root) and ``kernel`` (needs ESP).

On the host, every selected ``kernel`` test is replaced by a stand-in that reports the
outcome of the same test run inside a User-Mode Linux kernel (lab.guest). The stand-ins run
last; the first one boots the guests: the kernel tests are split by module into GUESTS
groups of about equal weight, each group run in one UML boot, side by side (UML has one CPU;
this machine has two). Inside a guest (WF_IN_GUEST=1) they run for real.

Lab hosts with sshd run in root filesystems of real distributions (lab.rootfs); the images
are built here, before any guest boots, since a guest cannot reach Debian's archive.
"""

from __future__ import annotations

import os
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab import rootfs
from lab.guest import in_guest, run_in_guest

pytest_plugins = ["lab.pytest_plugin"]
GUESTS = 2
TIERS = ("unit", "netns", "kernel")


@pytest.hookimpl(trylast=True)  # after -k and -m deselect: the guests run only what is selected
def pytest_collection_modifyitems(config, items):
    untiered = [i.nodeid for i in items if not any(i.get_closest_marker(t) for t in TIERS)]
    if untiered:
        raise pytest.UsageError(f"tests without a tier marker {TIERS}: {untiered}")
    if in_guest():
        return
    if any(i.get_closest_marker("kernel") or i.get_closest_marker("netns") for i in items):
        for platform in rootfs.PLATFORMS:
            rootfs.ensure(platform)
    kernel_items = [i for i in items if i.get_closest_marker("kernel")]
    if not kernel_items:
        return
    batch = GuestBatch(kernel_items, config)
    stand_ins = []
    for item in kernel_items:
        stand_in = InGuest.from_parent(item.parent, name=item.name, batch=batch)
        stand_in.own_markers = list(item.own_markers)
        stand_ins.append(stand_in)
    items[:] = [i for i in items if i not in kernel_items] + stand_ins


def groups(items, count: int) -> list[list[str]]:
    """Node ids split by module into ``count`` groups, heaviest module first onto the
    lightest group (a module's tests share its fixtures: they stay in one guest). A module's
    weight is the ``seconds`` its ``kernel`` marker states (its wall time in a guest), else
    a minute per test."""
    modules: dict[str, list] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)
    weight = {m: tests[0].get_closest_marker("kernel").kwargs.get("seconds", 60 * len(tests))
              for m, tests in modules.items()}
    split = [[] for _ in range(count)]
    load = [0] * count
    for module in sorted(modules, key=weight.get, reverse=True):
        lightest = load.index(min(load))
        split[lightest] += [i.nodeid for i in modules[module]]
        load[lightest] += weight[module]
    return [g for g in split if g]


class GuestBatch:
    """The selected kernel tests, run in GUESTS guest boots at once, on first demand."""

    def __init__(self, items, config):
        self.groups = groups(items, GUESTS)
        self.config = config
        self.outcomes = None
        self.output = ""

    def outcome(self, nodeid):
        if self.outcomes is None:
            self._run()
        return self.outcomes.get(nodeid)

    def _run(self):
        # One folder per run and group: concurrent runs on one machine must not share files.
        base = Path(self.config.rootpath, "build", "guest", str(os.getpid()))
        results = {}

        def run(index, nodeids):
            rwdir = base / str(index)
            rwdir.mkdir(parents=True, exist_ok=True)
            junit = rwdir / "junit.xml"
            junit.unlink(missing_ok=True)
            args = " ".join(f"'{n}'" for n in nodeids)
            result = run_in_guest(
                f"WF_PLAYBOOK_LOG={rwdir}/playbooks.log python -m pytest -v "
                f"-p no:cacheprovider -m kernel --junitxml={junit} {args}",
                rwdir=rwdir, log=rwdir / "guest.log", timeout=3600,
                stream=os.environ.get("WF_GUEST_STREAM") == "1")
            results[index] = (result, _parse_junit(junit) if junit.exists() else {})

        threads = [threading.Thread(target=run, args=(i, g)) for i, g in enumerate(self.groups)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.outcomes = {}
        for index in sorted(results):
            result, outcomes = results[index]
            self.outcomes.update(outcomes)
            self.output += (f"--- guest {index} (exit {result.returncode}, "
                            f"{result.seconds:.0f} s):\n{result.output[-6000:]}\n")


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
