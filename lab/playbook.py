"""Run the collection's playbooks against a lab the way a user does: ``ansible-playbook`` over
SSH, the mesh password in Ansible Vault, the result read from the play recap."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from lab.hosts import Lab

REPO = Path(__file__).resolve().parent.parent
PLAYBOOKS = REPO / "playbooks"
_RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                    re.MULTILINE)


@dataclass
class PlaybookRun:
    returncode: int
    output: str

    @property
    def recap(self) -> dict[str, dict[str, int]]:
        """{host: {ok, changed, unreachable, failed}} from the PLAY RECAP."""
        return {m[1]: {"ok": int(m[2]), "changed": int(m[3]), "unreachable": int(m[4]),
                       "failed": int(m[5])} for m in _RECAP.finditer(self.output)}

    @property
    def changed(self) -> int:
        return sum(h["changed"] for h in self.recap.values())

    def __str__(self) -> str:
        return f"ansible-playbook exit {self.returncode}\n{self.output}"


def vault_password(lab: Lab, password: str | None = None) -> str:
    """Put the mesh password in the lab's inventory as an Ansible Vault value (once) and return
    it, so tests can look for it in logs."""
    group_vars = lab.inventory.parent / "group_vars" / "fastdp_mesh"
    vault_file = group_vars / "vault.yml"
    secret_file = lab.work_dir / "vault-password"
    if vault_file.exists():
        return yaml.safe_load((lab.work_dir / "mesh-password.yml").read_text())["password"]
    password = password or secrets.token_urlsafe(24)
    group_vars.mkdir(parents=True, exist_ok=True)
    secret_file.write_text(secrets.token_urlsafe(24))
    secret_file.chmod(0o600)
    plain = group_vars / "vault.yml"
    plain.write_text(yaml.safe_dump({"fastdp_password": password}))
    subprocess.run([_bin("ansible-vault"), "encrypt", "--vault-password-file", str(secret_file),
                    str(plain)], check=True, capture_output=True, cwd=REPO)
    (lab.work_dir / "mesh-password.yml").write_text(yaml.safe_dump({"password": password}))
    return password


def playbook_command(lab: Lab, playbook: str, *args: str, inventory: Path | None = None,
                     inventories: tuple[Path, ...] = (),
                     extra_vars: dict | None = None) -> tuple[list[str], dict]:
    """argv and environment of ``ansible-playbook -i <inventory> [-i more] playbooks/<x>``;
    ``inventory`` defaults to the lab's (every host in the mesh group)."""
    vault_password(lab)
    argv = [_bin("ansible-playbook"), "-i", str(inventory or lab.inventory)]
    for extra in inventories:
        argv += ["-i", str(extra)]
    argv += ["--vault-password-file", str(lab.work_dir / "vault-password")]
    if extra_vars:
        vars_file = lab.work_dir / f"extra-vars-{secrets.token_hex(3)}.yml"
        vars_file.write_text(yaml.safe_dump(extra_vars))
        argv += ["-e", f"@{vars_file}"]
    argv += [str(PLAYBOOKS / playbook), *args]
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1", "PYTHONUNBUFFERED": "1",
           "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    return argv, env


def run_playbook(lab: Lab, playbook: str, *args: str, timeout: float = 3000,
                 echo: bool = False, **options) -> PlaybookRun:
    """Run it to the end (options as for playbook_command), logged as ``run_logged`` does."""
    argv, env = playbook_command(lab, playbook, *args, **options)
    return PlaybookRun(*run_logged(argv, env=env, timeout=timeout, echo=echo))


def run_logged(argv: list[str], *, env: dict | None = None, timeout: float = 3000,
               echo: bool = False) -> tuple[int, str]:
    """Run ``argv`` in the checkout to the end (killed after ``timeout`` s): its exit status and
    output. With WF_PLAYBOOK_LOG set, the output is also appended to that file as it comes (to
    follow a run in the guest), each play and task headed by the seconds since the start;
    ``echo`` prints it as it comes too."""
    log_path = os.environ.get("WF_PLAYBOOK_LOG")
    with subprocess.Popen(argv, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT) as proc:
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        lines = []
        with open(log_path or os.devnull, "a", buffering=1) as log:
            started = time.monotonic()
            log.write(f"$ {argv[0].rsplit('/', 1)[-1]} {' '.join(argv[1:])}\n")
            for line in proc.stdout:
                lines.append(line)
                if line.startswith(("PLAY [", "TASK [")):
                    log.write(f"# +{time.monotonic() - started:.0f} s\n")
                log.write(line)
                if echo:
                    print(line, end="", flush=True)
            proc.wait()
            log.write(f"# exit {proc.returncode} after {time.monotonic() - started:.0f} s\n")
        timer.cancel()
    return proc.returncode, "".join(lines)


def run_on_host(lab: Lab, host: str, module: str, args: dict) -> dict:
    """One module run on a lab host as Ansible makes it (``ansible HOST -m MODULE``, over SSH,
    with the host's own Python): the module's result. Raises AssertionError if it failed."""
    argv = [_bin("ansible"), "-i", str(lab.inventory), host, "-m", module, "-a", json.dumps(args)]
    if (lab.work_dir / "vault-password").exists():  # the lab's group_vars hold a vaulted value
        argv += ["--vault-password-file", str(lab.work_dir / "vault-password")]
    code, output = run_logged(argv, env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
                                         "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
                                         "ANSIBLE_STDOUT_CALLBACK": "minimal"})
    head = f"{host} | SUCCESS => "
    if code or head not in output:
        raise AssertionError(f"ansible {host} -m {module}: exit {code}\n{output}")
    return json.JSONDecoder().raw_decode(output, output.index(head) + len(head))[0]


def mesh_inventory(lab: Lab, hosts: list[str]) -> Path:
    """An inventory whose mesh group holds only ``hosts`` (the others stay in the lab, outside
    the mesh), next to the lab's own so it shares its vaulted group_vars."""
    full = yaml.safe_load(lab.inventory.read_text())
    group = full["all"]["children"]["fastdp_mesh"]
    group["hosts"] = {name: v for name, v in group["hosts"].items() if name in hosts}
    path = lab.inventory.with_name(f"inventory-{'-'.join(hosts)}.yml")
    path.write_text(yaml.safe_dump(full, sort_keys=False))
    return path


def host_vars_inventory(lab: Lab, name: str, host_vars: dict[str, dict]) -> Path:
    """A second inventory that overrides some hosts' variables (a user's mistake, say)."""
    path = lab.work_dir / f"{name}.yml"
    path.write_text(yaml.safe_dump({"fastdp_mesh": {"hosts": host_vars}}))
    return path


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)
