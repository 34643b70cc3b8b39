"""Run one of the collection's modules the way Ansible runs it on a host: a fresh Python process
given its arguments file, its JSON result read back. Cheaper than a playbook (which matters
in the guest kernel, where every Python start costs seconds) and just as real: the module
talks to the kernel itself. Whole-role behaviour is tested through ``ansible-playbook``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COLLECTIONS = REPO / "collections"


class ModuleFailed(AssertionError):
    def __init__(self, result: dict):
        super().__init__(result.get("msg", result))
        self.result = result


def run_module(name: str, args: dict, *, check: bool = False, diff: bool = False,
               expect_failure: bool = False) -> dict:
    """``weave.fastdp.<name>`` with ``args``; its result (changed, diff, return values).

    Raises ModuleFailed when it fails unless ``expect_failure``, and when it succeeds although
    a failure was expected."""
    internal = {"_ansible_check_mode": check, "_ansible_diff": diff}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"ANSIBLE_MODULE_ARGS": {**args, **internal}}, f)
    try:
        env = {**os.environ, "PYTHONPATH": str(COLLECTIONS)}
        proc = subprocess.run(
            [sys.executable, "-m", f"ansible_collections.weave.fastdp.plugins.modules.{name}",
             f.name], capture_output=True, text=True, env=env, check=False)
    finally:
        os.unlink(f.name)
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"{name}: no JSON result (rc {proc.returncode})\n"
                             f"stdout: {proc.stdout}\nstderr: {proc.stderr}") from None
    failed = bool(result.get("failed"))
    if failed != expect_failure:
        raise ModuleFailed(result)
    return result
