"""The gates of Galaxy and Automation Hub, run on the collection as it is in the checkout:
ansible-test sanity with no ignore file (every test it has, compile and import on each managed
node Python this machine has), ansible-lint's production profile, antsibull-docs' lint, and
the oldest ansible-core that meta/runtime.yml admits reading every doc and playbook.

Each gate is one command whose exit code is the verdict; its output is the failure message."""

import os
import re
import subprocess
import time

import pytest
import yaml

from tests import gates

pytestmark = pytest.mark.unit


def run(argv, *, cwd=gates.COLLECTION, env=None, timeout=900) -> subprocess.CompletedProcess:
    started = time.monotonic()
    done = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                          env=env or {**os.environ, "ANSIBLE_NOCOLOR": "1", "NO_COLOR": "1",
                                      "PATH": f"{gates.BIN}{os.pathsep}{os.environ['PATH']}"},
                          timeout=timeout, check=False)
    print(f"{' '.join(map(str, argv[:3]))}: exit {done.returncode} in "
          f"{time.monotonic() - started:.0f} s")
    return done


def test_no_sanity_ignore_file():
    assert not list(gates.COLLECTION.glob("tests/sanity/ignore-*.txt"))


def test_ansible_test_sanity_is_clean():
    pythons = gates.host_pythons()
    assert "3.11" in pythons, pythons  # the controller's; the others are each tested if here
    done = run([gates.BIN / "ansible-test", "sanity", "--local", "--color", "no"],
               env=gates.sanity_env())
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-5000:]
    ran = re.findall(r'Running sanity test "([^"]+)"(?: on Python ([\d.]+))?', done.stdout)
    for test in ("validate-modules", "pylint", "ansible-doc", "yamllint", "pep8",
                 "runtime-metadata", "changelog"):
        assert (test, "") in ran, ran
    for version in pythons:
        assert ("compile", version) in ran and ("import", version) in ran, (version, ran)


def test_ansible_lint_production_profile_is_clean():
    config = yaml.safe_load((gates.COLLECTION / ".ansible-lint").read_text())
    assert config["profile"] == "production" and not config.get("warn_list")
    done = run([gates.BIN / "ansible-lint", "--project-dir", ".", "-f", "pep8"])
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-5000:]


def test_antsibull_docs_lint_is_clean():
    done = run([gates.BIN / "antsibull-docs", "lint-collection-docs", "--plugin-docs", "."])
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_requires_ansible_is_the_oldest_ansible_core_ci_runs():
    runtime = yaml.safe_load((gates.COLLECTION / "meta/runtime.yml").read_text())
    assert runtime["requires_ansible"] == f">={gates.OLDEST_ANSIBLE}.0"
    pinned = gates.OLDEST_REQUIREMENTS.read_text()
    assert re.search(rf"^ansible-core=={re.escape(gates.OLDEST_ANSIBLE)}\.\d+$", pinned, re.MULTILINE)


def test_the_oldest_supported_ansible_core_reads_every_doc_and_playbook():
    bin_dir = gates.venv(f"ansible-{gates.OLDEST_ANSIBLE}", gates.OLDEST_REQUIREMENTS)
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_CONFIG": str(gates.REPO / "ansible.cfg"),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    version = run([bin_dir / "ansible", "--version"], cwd=gates.REPO, env=env)
    assert f"[core {gates.OLDEST_ANSIBLE}." in version.stdout, version.stdout
    modules = sorted(p.stem for p in (gates.COLLECTION / "plugins/modules").glob("*.py"))
    filters = sorted(p.stem for p in (gates.COLLECTION / "plugins/filter").glob("*.yml"))
    for kind, names in (("module", modules), ("filter", filters), ("role", ["mesh"])):
        done = run([bin_dir / "ansible-doc", "-t", kind, *[f"weave.fastdp.{n}" for n in names]],
                   cwd=gates.REPO, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "does not support Ansible version" not in done.stderr, done.stderr
        for name in names:
            assert f"weave.fastdp.{name}" in done.stdout.lower(), (kind, name)
    for playbook in ("site.yml", "status.yml", "teardown.yml"):
        done = run([bin_dir / "ansible-playbook", "--syntax-check", "-i", "localhost,",
                    f"playbooks/{playbook}"], cwd=gates.REPO, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
