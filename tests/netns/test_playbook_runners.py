"""site.yml run the other ways users run it reaches the same fail-closed end as the pinned
ansible-playbook does (test_mesh_inventory.py): through ansible-runner, which AWX and Ansible
Automation Platform run playbooks with (a private data dir, its job events and status), and
with the oldest ansible-core the collection supports (meta/runtime.yml's requires_ansible).

Two lab hosts over SSH on this kernel, which has no ESP: every host fails at the preflight,
naming the part it lacks, and no host changes."""

import json
import os
import subprocess

import pytest
import yaml

from lab.hosts import Lab
from lab.playbook import PLAYBOOKS, REPO, PlaybookRun, run_logged, vault_password
from lab.state import snapshot
from tests import gates

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def lab():
    with Lab(count=2, name="wfrun", sshd=True) as lab:
        vault_password(lab)
        yield lab


def assert_fails_closed(lab: Lab, messages: dict[str, str]) -> None:
    for h in lab.hosts:
        assert messages[h.name].startswith(
            f"{h.name} cannot run the encrypted fast datapath: esp:"), messages


def test_ansible_runner_fails_closed_at_the_preflight_and_changes_nothing(lab, tmp_path):
    before = snapshot(lab)
    private = tmp_path / "runner"
    (private / "env").mkdir(parents=True)
    (private / "env/envvars").write_text(yaml.safe_dump(
        {"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}))
    (private / "env/cmdline").write_text(
        f"--vault-password-file {lab.work_dir / 'vault-password'}")
    code, output = run_logged(
        [str(gates.BIN / "ansible-runner"), "run", str(private), "--ident", "site",
         "--playbook", "site.yml", "--project-dir", str(PLAYBOOKS),
         "--inventory", str(lab.inventory)],
        env={**os.environ, "PATH": f"{gates.BIN}{os.pathsep}{os.environ['PATH']}"})
    artifacts = private / "artifacts/site"
    assert code != 0, output
    assert (artifacts / "status").read_text() == "failed", output
    assert (artifacts / "rc").read_text() == "2", output
    events = [json.loads(p.read_text()) for p in sorted((artifacts / "job_events").glob("*.json"))]
    failed = {e["event_data"]["host"]: e["event_data"]["res"]["msg"]
              for e in events if e["event"] == "runner_on_failed"}
    assert_fails_closed(lab, failed)
    (stats,) = [e["event_data"] for e in events if e["event"] == "playbook_on_stats"]
    assert not stats["changed"] and set(stats["failures"]) == {h.name for h in lab.hosts}, stats
    assert snapshot(lab) == before


def test_the_oldest_supported_ansible_core_fails_closed_at_the_preflight_too(lab):
    bin_dir = gates.venv(f"ansible-{gates.OLDEST_ANSIBLE}", gates.OLDEST_REQUIREMENTS)
    before = snapshot(lab)
    argv = [str(bin_dir / "ansible-playbook"), "-i", str(lab.inventory), "--vault-password-file",
            str(lab.work_dir / "vault-password"), str(PLAYBOOKS / "site.yml")]
    run = PlaybookRun(*run_logged(argv, env={
        **os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}))
    version = subprocess.run([str(bin_dir / "ansible"), "--version"], capture_output=True,
                             text=True, check=True).stdout
    assert f"[core {gates.OLDEST_ANSIBLE}." in version
    assert run.returncode == 2, run
    for h in lab.hosts:
        assert f"{h.name} cannot run the encrypted fast datapath: esp:" in run.output, run
    assert "does not support Ansible version" not in run.output, run
    assert set(run.recap) == {h.name for h in lab.hosts}, run.recap
    assert all(r["changed"] == 0 for r in run.recap.values()), run.recap
    assert snapshot(lab) == before
