"""The collection works three ways: in-tree from a clone, built and installed elsewhere, and
through the design card's top-level entry points (symlinks, not copies)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO / "collections/ansible_collections/weave/fastdp"
BIN = Path(sys.executable).parent
MODULES = sorted(p.stem for p in (COLLECTION / "plugins/modules").glob("*.py"))


def ansible(tool, *args, cwd, env=None):
    proc = subprocess.run([str(BIN / tool), *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "ANSIBLE_NOCOLOR": "1", **(env or {})}, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_in_tree_every_module_has_docs_and_the_playbooks_parse():
    assert len(MODULES) >= 10
    out = ansible("ansible-doc", *[f"weave.fastdp.{m}" for m in MODULES], cwd=REPO)
    for m in MODULES:
        assert f"weave.fastdp.{m}" in out
    for playbook in ("site.yml", "status.yml", "teardown.yml"):
        ansible("ansible-playbook", "--syntax-check", "-i", "localhost,",
                f"playbooks/{playbook}", cwd=REPO)


def test_built_and_installed_collection_provides_every_module_and_the_role(tmp_path):
    ansible("ansible-galaxy", "collection", "build", str(COLLECTION), "--output-path",
            str(tmp_path), cwd=tmp_path)
    (tarball,) = tmp_path.glob("weave-fastdp-*.tar.gz")
    installed = tmp_path / "collections"
    ansible("ansible-galaxy", "collection", "install", str(tarball), "-p", str(installed),
            cwd=tmp_path)
    empty_config = tmp_path / "ansible.cfg"  # cwd: the checkout's ansible.cfg is not used
    empty_config.write_text("[defaults]\n")
    env = {"ANSIBLE_COLLECTIONS_PATH": str(installed), "ANSIBLE_CONFIG": str(empty_config)}
    listed = ansible("ansible-doc", "-l", "weave.fastdp", cwd=tmp_path, env=env)
    assert sorted(line.split()[0].removeprefix("weave.fastdp.")
                  for line in listed.splitlines() if line.strip()) == MODULES
    ansible("ansible-doc", *[f"weave.fastdp.{m}" for m in MODULES], cwd=tmp_path, env=env)
    role = ansible("ansible-doc", "-t", "role", "weave.fastdp.mesh", cwd=tmp_path, env=env)
    assert "fastdp_key_epoch" in role
    copy = installed / "ansible_collections/weave/fastdp"
    assert (copy / "playbooks/site.yml").is_file()
    assert not list(copy.rglob("*.tar.gz")), "no build artefact inside the collection"


def test_top_level_entry_points_are_the_collections_files():
    for name in ("galaxy.yml", "roles", "playbooks"):
        entry = REPO / name
        assert entry.is_symlink(), f"{name} must be a symlink, not a copy"
        assert entry.resolve() == (COLLECTION / name).resolve()
