"""Managed hosts run the modules with their distribution's packages alone: no plugin imports
pyroute2; only what derives keys imports cryptography (the other modules and the controller's
filters never try to), and a module that derives keys fails without it with Ansible's
missing-library message, before anything changes. Each import runs in a fresh Python whose
import system refuses, and records, every attempt to import those packages."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "collections/ansible_collections/weave/fastdp/plugins"
ALL = sorted("ansible_collections.weave.fastdp." + ".".join(
    p.relative_to(PLUGINS.parent).with_suffix("").parts) for p in PLUGINS.rglob("*.py"))
# what derives or keeps the mesh's keys (module_utils.keys and what imports it)
KEYED = {f"ansible_collections.weave.fastdp.plugins.{name}" for name in (
    "module_utils.keys", "module_utils.mesh_keys", "module_utils.xfrm_inventory",
    "module_utils.datapath", "modules.identity", "modules.nonces", "modules.xfrm_state",
    "modules.datapath", "modules.preflight")}
# run on the controller through google-auth, which imports cryptography itself when it can
GOOGLE = {"ansible_collections.weave.fastdp.plugins.module_utils.gcp_firewall",
          "ansible_collections.weave.fastdp.plugins.modules.gcp_esp_firewall"}

REFUSING = """
import json, runpy, sys

class Refuse:
    def __init__(self, names):
        self.names, self.attempts = names, []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            self.attempts.append(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

refuse = Refuse(set(sys.argv[1].split(",")))
sys.meta_path.insert(0, refuse)
"""


def refused(names: str, code: str, *args: str, path=()) -> subprocess.CompletedProcess:
    """``code`` run after REFUSING, in a fresh Python with ``names`` refused (and ``path``
    before the collection on its PYTHONPATH)."""
    python_path = ":".join([*map(str, path), str(REPO / "collections")])
    return subprocess.run([sys.executable, "-c", REFUSING + code, names, *args],
                          capture_output=True, text=True, check=False,
                          env={"PYTHONPATH": python_path, "PATH": "/usr/bin:/bin"})


def run_module(tmp_path, module: str, args: dict, refuse: str = "", path=()) -> dict:
    """The result of module ``module`` run on ``args`` as Ansible runs it, ``refuse`` refused."""
    params = tmp_path / "args.json"
    params.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    done = refused(refuse, "name, sys.argv = sys.argv[2], sys.argv[2:]\n"
                   "runpy.run_module(name, run_name='__main__')",
                   f"ansible_collections.weave.fastdp.plugins.modules.{module}", str(params),
                   path=path)
    result = json.loads(done.stdout)
    assert done.returncode == bool(result.get("failed")), (done.returncode, result)
    return result


def attempts(names: str, module: str) -> list[str]:
    """What importing ``module`` tried to import of ``names`` (it must import all the same)."""
    done = refused(names, "import importlib\nimportlib.import_module(sys.argv[2])\n"
                          "print(json.dumps(refuse.attempts))", module)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_every_plugin_file_is_checked():
    assert len(ALL) >= 30 and KEYED | GOOGLE <= set(ALL)


def imported_anywhere(path: Path) -> set[str]:
    """The top-level packages ``path`` imports, at any depth (a function's own imports too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_pyroute2_is_imported_by_no_plugin_and_cryptography_by_keys_alone():
    importers = {package: sorted(str(p.relative_to(PLUGINS)) for p in PLUGINS.rglob("*.py")
                                 if package in imported_anywhere(p))
                 for package in ("pyroute2", "cryptography")}
    assert importers == {"pyroute2": [], "cryptography": ["module_utils/keys.py"]}


@pytest.mark.parametrize("module", ALL)
def test_no_plugin_imports_pyroute2(module):
    assert attempts("pyroute2", module) == []


@pytest.mark.parametrize("module", sorted(set(ALL) - KEYED - GOOGLE))
def test_what_derives_no_key_never_imports_cryptography(module):
    assert attempts("cryptography", module) == []


@pytest.mark.parametrize("module", sorted(KEYED))
def test_what_derives_keys_imports_without_cryptography(module):
    assert attempts("cryptography", module), "the check would see an import of cryptography"


@pytest.mark.parametrize(("module", "args"), [
    ("identity", {"peer_name": "h1"}),
    ("nonces", {"mesh": "m", "peer_name": "h1", "local_address": "198.51.100.11", "epoch": 1,
                "peers": [{"name": "h2"}], "password": "pw"}),
    ("xfrm_state", {"reqid": 7, "state": "absent"}),
    ("datapath", {}),
    ("preflight", {}),
])
def test_a_module_that_derives_keys_fails_without_cryptography_before_any_change(
        tmp_path, module, args):
    state_dir = tmp_path / "state"
    state = {} if module in ("xfrm_state", "datapath") else {"state_dir": str(state_dir)}
    result = run_module(tmp_path, module, {**args, **state}, refuse="cryptography")
    assert result["failed"] and result["msg"].startswith(
        "Failed to import the required Python library (cryptography >= 3.3 (the distribution's "
        "python3-cryptography)) on "), result
    assert not state_dir.exists()


# as much of cryptography as keys.py imports, of a release older than 3.3 (Ubuntu 20.04's)
OLD_CRYPTOGRAPHY = {
    "__init__.py": "__version__ = '2.8'\n", "exceptions.py": "class InvalidTag(Exception): pass\n",
    "hazmat/__init__.py": "", "hazmat/primitives/__init__.py": "",
    "hazmat/primitives/hashes.py": "", "hazmat/primitives/serialization.py": "",
    "hazmat/primitives/asymmetric/__init__.py": "",
    "hazmat/primitives/asymmetric/x25519.py": "X25519PrivateKey = X25519PublicKey = None\n",
    "hazmat/primitives/ciphers/__init__.py": "", "hazmat/primitives/ciphers/aead.py": "AESGCM = None\n",
    "hazmat/primitives/kdf/__init__.py": "", "hazmat/primitives/kdf/hkdf.py": "HKDF = None\n",
}


def test_a_cryptography_older_than_3_3_is_named_in_the_failure(tmp_path):
    for name, text in OLD_CRYPTOGRAPHY.items():
        path = tmp_path / "old" / "cryptography" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    state_dir = tmp_path / "state"
    result = run_module(tmp_path, "identity", {"peer_name": "h1", "state_dir": str(state_dir)},
                        path=[tmp_path / "old"])
    assert result["failed"] and result["msg"].startswith(
        "Failed to import the required Python library (cryptography >= 3.3 (the distribution's "
        "python3-cryptography)) on "), result
    assert "This is required to derive the mesh's keys, and 2.8 is installed." in result["msg"]
    assert not state_dir.exists()
