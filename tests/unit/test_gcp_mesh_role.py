"""roles/mesh/tasks/gcp.yml: one ESP rule per GCP network of the mesh, from the controller, and a
run limited to part of the mesh keeps the ranges of the GCP hosts left out."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from tests.gcp_fake import FakeCompute

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
GCP_TASKS = ROOT / "collections/ansible_collections/weave/fastdp/roles/mesh/tasks/gcp.yml"
MESH = "projects/proj-a/global/networks/mesh-net"


@pytest.fixture
def fake():
    server = FakeCompute(token=f"ya29.test-{uuid.uuid4().hex}",
                         networks=[("proj-a", "mesh-net"), ("proj-a", "other-net")]).start()
    yield server
    server.stop()
    assert server.invalid == []


def play(tmp_path, fake, limit=None, state="present"):
    gcp = {"project": "proj-a", "network": "mesh-net", "target_tags": ["fastdp"]}
    hosts = {"h1": {"address": "198.51.100.11", "fastdp_gcp": gcp},
             "h2": {"address": "198.51.100.12", "fastdp_gcp": {**gcp, "target_tags": ["fastdp", "b"]}},
             "h3": {"address": "203.0.113.3"},
             "h4": {"address": "203.0.113.14",
                    "fastdp_gcp": {"project": "proj-a", "network": "other-net"}}}
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"fastdp_mesh": {"hosts": hosts, "vars": {
        "ansible_connection": "local", "fastdp_mesh_name": "weave", "fastdp_group": "fastdp_mesh",
        "fastdp_purge": True, "fastdp_gcp_auth_kind": "accesstoken",
        "fastdp_gcp_access_token": fake.token, "fastdp_gcp_endpoint": fake.endpoint}}}))
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "fastdp_mesh", "gather_facts": False, "tasks": [
        {"ansible.builtin.set_fact": {"_fastdp_self": {
            "host": "{{ inventory_hostname }}", "address": "{{ address }}",
            "gcp": "{{ fastdp_gcp | default(None) }}"}}},
        {"ansible.builtin.include_tasks": str(GCP_TASKS), "vars": {"_fastdp_gcp_state": state}}]}]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GCP_")}
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
           str(playbook)] + (["--limit", limit] if limit else [])
    proc = subprocess.run(cmd, check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_one_rule_per_network_then_a_limited_run_keeps_the_others(tmp_path, fake):
    play(tmp_path, fake)
    inserts = sorted((w["body"]["name"], w["body"]["network"], w["body"]["sourceRanges"],
                      w["body"].get("targetTags")) for w in fake.writes)
    assert inserts == [
        ("fastdp-weave-mesh-net-esp", MESH, ["198.51.100.11/32", "198.51.100.12/32"], ["b", "fastdp"]),
        ("fastdp-weave-other-net-esp", "projects/proj-a/global/networks/other-net",
         ["203.0.113.14/32"], None)]
    assert all(w["method"] == "POST" for w in fake.writes)

    fake.rules[("proj-a", "fastdp-weave-mesh-net-esp")]["sourceRanges"].append("198.51.100.99/32")
    before = len(fake.writes)
    play(tmp_path, fake, limit="h1")
    assert fake.writes[before:] == [], "a run limited to h1 must not drop h2's (or anyone's) range"
    out = play(tmp_path, fake)
    patches = [(w["method"], w["body"]) for w in fake.writes[before:]]
    assert patches == [("PATCH", {"name": "fastdp-weave-mesh-net-esp",
                                  "sourceRanges": ["198.51.100.11/32", "198.51.100.12/32"]})], out


def test_teardown_deletes_the_mesh_rules_once_each(tmp_path, fake):
    play(tmp_path, fake)
    before = len(fake.writes)
    play(tmp_path, fake, state="absent")
    deletes = sorted((w["method"], w["path"].rsplit("/", 1)[-1]) for w in fake.writes[before:])
    assert deletes == [("DELETE", "fastdp-weave-mesh-net-esp"),
                       ("DELETE", "fastdp-weave-other-net-esp")]
    assert fake.rules == {}


def test_the_role_makes_the_esp_rule_before_any_guard_or_sa():
    tasks = yaml.safe_load((GCP_TASKS.parent / "converge.yml").read_text())
    order = [t.get("ansible.builtin.include_tasks") or next(
        (k for k in t if k.startswith(("weave.fastdp.", "ansible.builtin."))), None)
        for t in tasks]
    first_kernel_change = order.index("weave.fastdp.datapath")  # guards, SAs, VXLAN
    assert order.index("gcp.yml") < first_kernel_change, order
