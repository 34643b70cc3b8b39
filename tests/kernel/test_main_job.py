"""What a user runs, end to end on the guest kernel: the README's main job and the molecule
scenario. Each brings up its own lab, converges it with the collection and tears it down."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from lab.demo import run_demo
from lab.hosts import _users_of, work_dir
from lab.playbook import run_logged

pytestmark = pytest.mark.kernel(seconds=340)  # wall time in a guest, to balance the guests


def test_the_main_job_converges_three_hosts_shows_every_pair_encrypted_and_only_esp():
    lines = []
    assert run_demo(log=lines.append), "\n".join(lines)
    output = "\n".join(lines)
    assert output.count("encrypted fastdp") == 6, output
    assert "ping across the overlay: 6/6 pairs answered" in output
    assert "0 to UDP 6784 (plaintext tunnel)" in output


def test_molecule_default_scenario_passes_create_converge_idempotence_verify_destroy():
    returncode, output = run_logged(["molecule", "test", "--scenario-name", "default"],
                                    env={**os.environ, "NO_COLOR": "1", "PY_COLORS": "0"},
                                    timeout=5400)
    output = re.sub(r"\x1b\[[0-9;]*m", "", output)
    assert returncode == 0, output[-10000:]
    for step in ("converge", "idempotence", "verify", "destroy"):
        assert re.search(rf"\b{step}\W+Executed: Successful", output), step
    namespaces = subprocess.run(["ip", "netns", "list"], check=True, capture_output=True,
                                text=True).stdout
    assert "wfm-" not in namespaces, "destroy left the lab's namespaces"
    assert not work_dir("wfm").exists(), "destroy left the lab's files"
    assert not _users_of(work_dir("wfm")), "destroy left the guest or an SSH master running"
