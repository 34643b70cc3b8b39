"""What the collection's gates run with: ansible-test sanity (its own pinned virtualenvs, under
build/), the oldest ansible-core the collection supports (a virtualenv of its own under build/,
from a pin file of its own), and the Pythons managed hosts may have.

ansible-test makes a virtualenv per sanity test and fetches pip's bootstrap script from a host
outside the package registries; ``sanity_env`` gives it a home under build/ whose cached
bootstrap is this file's stand-in: pip from the Python's own ``ensurepip``, then the pinned pip
it asks for, from the package index pip is configured with."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COLLECTION = REPO / "collections/ansible_collections/weave/fastdp"
BUILD = REPO / "build"
BIN = Path(sys.executable).parent
# The oldest ansible-core the collection supports (meta/runtime.yml's requires_ansible) and the
# pins of its virtualenv.
OLDEST_ANSIBLE = "2.16"
OLDEST_REQUIREMENTS = REPO / "tests/requirements-ansible-2.16.txt"
# Managed-node Pythons the compile and import sanity tests run on, where this machine has them.
HOST_PYTHONS = ("3.8", "3.9", "3.10", "3.11", "3.12", "3.13")

_PIP_BOOTSTRAP = '''"""ansible-test's pip bootstrap, made here: ensurepip, then the pip it asks for."""
import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"],
                      stdout=subprocess.DEVNULL)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "pip", "install", *args])
'''


def venv(name: str, requirements: Path) -> Path:
    """build/<name>, a virtualenv with ``requirements`` installed; made again when they change.
    Returns its bin directory."""
    path = BUILD / name
    stamp = path / ".requirements.sha256"
    want = hashlib.sha256(requirements.read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text().strip() != want:
        shutil.rmtree(path, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        subprocess.run([str(path / "bin/python"), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", "-r", str(requirements)],
                       check=True, capture_output=True, text=True)
        stamp.write_text(want + "\n")
    return path / "bin"


def host_pythons() -> dict[str, Path]:
    """{X.Y: interpreter} of HOST_PYTHONS found here: on PATH, or installed by pyenv (whose
    shims answer only for its global version)."""
    found = {}
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for version in HOST_PYTHONS:
        candidates = [Path(p) for p in [shutil.which(f"python{version}")] if p]
        candidates += sorted(pyenv.glob(f"{version}.*/bin/python{version}"), reverse=True)
        for python in candidates:
            done = subprocess.run([str(python), "-c", "import sys; print(sys.version_info[:2])"],
                                  capture_output=True, text=True, check=False)
            if done.returncode == 0 and done.stdout.strip() == str(
                    tuple(map(int, version.split(".")))):
                found[version] = python
                break
    return found


def sanity_env() -> dict[str, str]:
    """The environment of ``ansible-test sanity --local``: this venv's ansible-test, the host
    Pythons on PATH (one directory of links), and a home under build/ for its virtualenvs and
    the pip bootstrap."""
    home = BUILD / "ansible-test-home"
    cache = home / ".ansible/test/cache"
    cache.mkdir(parents=True, exist_ok=True)
    pip_version = _bootstrap_pip_version()
    (cache / f"get_pip_{pip_version.replace('.', '_')}.py").write_text(_PIP_BOOTSTRAP)
    links = home / "pythons"
    shutil.rmtree(links, ignore_errors=True)
    links.mkdir()
    for version, python in host_pythons().items():
        (links / f"python{version}").symlink_to(python)
    return {**os.environ, "HOME": str(home), "ANSIBLE_NOCOLOR": "1",
            "PATH": os.pathsep.join([str(links), str(BIN), os.environ.get("PATH", "")])}


def _bootstrap_pip_version() -> str:
    """The pip version ansible-test bootstraps into its virtualenvs (its cache file's name)."""
    import ansible_test

    source = Path(ansible_test.__file__).parent / "_internal/python_requirements.py"
    return re.search(r"pip='([\d.]+)'", source.read_text())[1]
