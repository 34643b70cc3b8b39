"""weave.fastdp.gcp_esp_firewall through ansible-playbook, against a fake Compute Engine v1.

Each test is one ansible-playbook run (its tasks registered and written to results.json); the
fake validates every request body against the discovery document's Firewall schema and a test
fails if the module sent anything a real server would reject as malformed.
"""

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.gcp_fake import FakeCompute, validate

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
MARKER = "[managed by weave.fastdp]"
A, B, C = "198.51.100.11", "198.51.100.12", "198.51.100.13"


@pytest.fixture
def fake():
    server = FakeCompute(token=f"ya29.test-{uuid.uuid4().hex}").start()
    yield server
    server.stop()
    assert server.invalid == [], "requests a real Compute API would reject as malformed"


def run(tmp_path, fake, *tasks, verbose=False):
    """Run the module once per task (dict of options; ``check``/``diff`` keys are task keywords);
    returns (registered results, the run's whole output)."""
    common = {"name": "fastdp-weave-esp", "project": "proj-a", "network": "mesh-net",
              "source_ranges": [A, B], "target_tags": ["fastdp"], "auth_kind": "accesstoken",
              "access_token": fake.token, "endpoint": fake.endpoint, "retry_timeout": 10}
    play_tasks = []
    for i, options in enumerate(tasks):
        options = dict(options)
        keywords = {"check_mode": options.pop("check", False), "diff": options.pop("diff", False)}
        play_tasks.append({"name": f"task {i}", "register": f"r{i}", "ignore_errors": True,
                           "weave.fastdp.gcp_esp_firewall": {**common, **options}, **keywords})
    results = tmp_path / "results.json"
    names = ", ".join(f"r{i}" for i in range(len(tasks)))
    play_tasks.append({"name": "results", "check_mode": False, "ansible.builtin.copy": {
        "content": f"{{{{ [{names}] | to_json }}}}", "dest": str(results)}})
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{
        "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
        "tasks": play_tasks}]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GCP_")}
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    cmd = [str(PLAYBOOK), "-i", "localhost,", str(playbook)] + (["-vvv"] if verbose else [])
    proc = subprocess.run(cmd, check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    return json.loads(results.read_text()), output


def writes(fake, after=0):
    return [(r["method"], r["path"].rsplit("/global/", 1)[1]) for r in fake.writes[after:]]


def rule(fake):
    return fake.rules[("proj-a", "fastdp-weave-esp")]


def test_create_inserts_the_esp_rule_and_waits_for_its_operation(tmp_path, fake):
    (r,), output = run(tmp_path, fake, {"diff": True}, verbose=True)
    assert r["changed"] and r["action"] == "insert" and not r.get("failed"), r
    assert writes(fake) == [("POST", "firewalls")]
    assert fake.writes[0]["body"] == {
        "name": "fastdp-weave-esp", "network": "projects/proj-a/global/networks/mesh-net",
        "direction": "INGRESS", "allowed": [{"IPProtocol": "esp"}],
        "sourceRanges": [f"{A}/32", f"{B}/32"], "targetTags": ["fastdp"], "priority": 1000,
        "description": f"ESP between the nodes of a weave.fastdp mesh {MARKER}",
        "logConfig": {"enable": False}, "disabled": False}
    operation = [(q["method"], q["path"].rsplit("/global/", 1)[1], q["operation_status"])
                 for q in fake.requests if q["method"] != "GET"]
    assert operation == [("POST", "firewalls", "PENDING"),
                         ("POST", f"operations/{r['operation']}/wait", "RUNNING"),
                         ("POST", f"operations/{r['operation']}/wait", "DONE")]
    assert r["rule"]["sourceRanges"] == [f"{A}/32", f"{B}/32"]
    assert r["diff"]["before"] == {} and r["diff"]["after"]["allowed"] == [{"IPProtocol": "esp"}]
    assert rule(fake)["allowed"] == [{"IPProtocol": "esp"}]
    assert fake.token not in output


def test_rerun_sends_no_write_even_with_members_reordered(tmp_path, fake):
    results, _ = run(tmp_path, fake, {}, {}, {"source_ranges": [f"{B}/32", A, A]})
    assert [r["changed"] for r in results] == [True, False, False], results
    assert [r["action"] for r in results[1:]] == ["none", "none"]
    assert writes(fake) == [("POST", "firewalls")]


def test_a_membership_change_is_one_patch_of_the_source_ranges(tmp_path, fake):
    results, _ = run(tmp_path, fake, {}, {"source_ranges": [A, C], "diff": True})
    assert results[1]["changed"] and results[1]["action"] == "patch", results
    assert writes(fake, after=1) == [("PATCH", "firewalls/fastdp-weave-esp")]
    assert fake.writes[1]["body"] == {"name": "fastdp-weave-esp",
                                      "sourceRanges": [f"{A}/32", f"{C}/32"]}
    diff = results[1]["diff"]
    assert diff["before"]["sourceRanges"] == [f"{A}/32", f"{B}/32"]
    assert diff["after"]["sourceRanges"] == [f"{A}/32", f"{C}/32"]
    assert rule(fake)["sourceRanges"] == [f"{A}/32", f"{C}/32"]


def test_check_mode_predicts_changes_and_sends_no_write(tmp_path, fake):
    results, _ = run(tmp_path, fake, {"check": True, "diff": True}, {},
                     {"source_ranges": [A, C], "check": True}, {"state": "absent", "check": True})
    assert [(r["changed"], r["action"], r["operation"]) for r in results] == [
        (True, "insert", None), (True, "insert", results[1]["operation"]),
        (True, "patch", None), (True, "delete", None)]
    assert results[0]["rule"]["sourceRanges"] == [f"{A}/32", f"{B}/32"]
    assert writes(fake) == [("POST", "firewalls")]
    assert rule(fake)["sourceRanges"] == [f"{A}/32", f"{B}/32"]


def test_absent_deletes_the_rule_once(tmp_path, fake):
    results, _ = run(tmp_path, fake, {}, {"state": "absent", "diff": True}, {"state": "absent"})
    assert [(r["changed"], r["action"]) for r in results] == [
        (True, "insert"), (True, "delete"), (False, "none")]
    assert results[1]["diff"]["after"] == {} and results[1]["rule"] is None
    assert writes(fake, after=1) == [("DELETE", "firewalls/fastdp-weave-esp")]
    assert fake.rules == {}


def test_an_operation_that_ends_in_error_fails_with_its_message(tmp_path, fake):
    fake.fail_next_operation("QUOTA_EXCEEDED", "Quota 'FIREWALLS' exceeded.  Limit: 100.0 globally.")
    (r,), _ = run(tmp_path, fake, {})
    assert r["failed"], r
    assert "(insert) failed: QUOTA_EXCEEDED: Quota 'FIREWALLS' exceeded." in r["msg"]
    assert "firewall rule fastdp-weave-esp (project proj-a, network mesh-net)" in r["msg"]
    assert fake.rules == {}


def test_403_names_project_network_and_rule_and_hides_the_token(tmp_path, fake):
    fake.forbidden.add("proj-a")
    (r,), output = run(tmp_path, fake, {}, verbose=True)
    assert r["failed"], r
    assert "firewall rule fastdp-weave-esp (project proj-a, network mesh-net)" in r["msg"]
    assert "HTTP 403: Required 'compute.firewalls.get' permission" in r["msg"]
    assert len(fake.requests) == 1 and fake.writes == []
    assert fake.token not in output


def test_404_and_400_are_clear_errors_and_not_retried(tmp_path, fake):
    fake.fail("POST", "/firewalls", 400)
    (r400, r404), _ = run(tmp_path, fake, {}, {"network": "no-such-net"})
    assert r404["failed"], r404
    assert "firewall rule fastdp-weave-esp (project proj-a, network no-such-net)" in r404["msg"]
    assert "HTTP 404: The resource 'projects/proj-a/global/networks/no-such-net' was not found" \
        in r404["msg"]
    assert r400["failed"] and "(project proj-a, network mesh-net)" in r400["msg"], r400
    assert "POST" in r400["msg"] and "HTTP 400: injected 400" in r400["msg"]
    assert [w["status"] for w in fake.writes] == [400, 404] and fake.rules == {}


def test_a_503_and_a_429_are_retried_and_the_write_applies_once(tmp_path, fake):
    fake.fail("GET", "/firewalls/", 503)
    fake.fail("POST", "/firewalls", 429)
    (r,), _ = run(tmp_path, fake, {})
    assert r["changed"] and not r.get("failed"), r
    gets = [q["status"] for q in fake.requests if q["method"] == "GET" and "/firewalls/" in q["path"]]
    assert gets == [503, 404]
    posts = fake.writes
    assert [p["status"] for p in posts] == [429, 200]
    assert posts[0]["query"]["requestId"] == posts[1]["query"]["requestId"]
    assert len(fake.operations) == 1 and rule(fake)


def test_retries_stop_after_retry_timeout(tmp_path, fake):
    fake.fail("GET", "/firewalls/", 503, times=1000)
    start = time.monotonic()
    (r,), _ = run(tmp_path, fake, {"retry_timeout": 2})
    assert r["failed"] and "still failing after 2s of retries, last HTTP 503" in r["msg"], r
    assert "(project proj-a, network mesh-net)" in r["msg"]
    assert 2 <= len(fake.requests) and time.monotonic() - start < 15


def test_a_foreign_rule_is_refused_then_taken_over(tmp_path, fake):
    fake.seed("proj-a", {"name": "fastdp-weave-esp", "network": "global/networks/mesh-net",
                         "description": "opened by hand", "allowed": [{"IPProtocol": "50"}],
                         "sourceRanges": [f"{A}/32", f"{B}/32"], "targetTags": ["fastdp"]})
    results, _ = run(tmp_path, fake, {}, {"state": "absent"}, {"take_over": True}, {})
    assert results[0]["failed"] and "was not made by weave.fastdp" in results[0]["msg"]
    assert results[1]["failed"] and "take_over: true" in results[1]["msg"]
    assert results[2]["changed"] and results[2]["action"] == "patch", results[2]
    assert fake.writes[0]["body"] == {
        "name": "fastdp-weave-esp",
        "description": f"ESP between the nodes of a weave.fastdp mesh {MARKER}"}
    assert not results[3]["changed"], results[3]
    assert writes(fake) == [("PATCH", "firewalls/fastdp-weave-esp")]


def test_a_service_account_key_is_exchanged_for_a_token_and_never_shown(tmp_path, fake):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    contents = json.dumps({
        "type": "service_account", "project_id": "proj-a", "private_key_id": "k1",
        "private_key": pem, "client_email": "fastdp@proj-a.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": fake.endpoint.replace("/compute/v1/", "/token")})
    (r,), output = run(tmp_path, fake, {"auth_kind": "serviceaccount", "access_token": None,
                                        "service_account_contents": contents}, verbose=True)
    assert r["changed"] and not r.get("failed"), r
    assert [q["path"] for q in fake.requests[:2]] == [
        "/token", "/compute/v1/projects/proj-a/global/firewalls/fastdp-weave-esp"]
    assert "PRIVATE KEY" not in output and fake.token not in output


def test_a_rule_without_any_source_or_with_a_bad_range_is_refused(tmp_path, fake):
    results, _ = run(tmp_path, fake, {"source_ranges": []}, {"source_ranges": [A, "198.51.100.5/24"]})
    assert results[0]["failed"] and "would allow ESP from anywhere" in results[0]["msg"]
    assert results[1]["failed"] and "source_ranges: 198.51.100.5/24 has host bits set" \
        in results[1]["msg"], results[1]
    assert fake.writes == []


@pytest.mark.parametrize("body,method,error", [
    ({"name": "r", "sourceRange": ["198.51.100.1/32"]}, "insert", "('sourceRange' was unexpected)"),
    ({"name": "r", "allowed": [{"IPProtocol": "esp", "port": []}]}, "insert",
     "'port' was unexpected"),
    ({"name": "r", "enable": True}, "patch", "('enable' was unexpected)"),
    ({"name": "r", "id": "12"}, "patch", "('id' was unexpected)"),
    ({"sourceRanges": ["198.51.100.1/32"]}, "patch", "'name' is a required property"),
    ({"name": "Bad_Name"}, "insert", "does not match"),
], ids=["misspelled", "misplaced-in-allowed", "misplaced-log-field", "output-only", "no-name",
        "bad-name"])
def test_the_fake_rejects_bodies_the_api_would(body, method, error):
    errors = validate(body, f"compute.firewalls.{method}")
    assert any(error in e for e in errors), errors


def test_the_fake_accepts_a_complete_rule():
    body = {"name": "fastdp-weave-esp", "network": "global/networks/default",
            "direction": "INGRESS", "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}],
            "sourceRanges": ["198.51.100.1/32"], "targetServiceAccounts": ["a@b.iam.gserviceaccount.com"],
            "priority": 900, "description": "d", "logConfig": {"enable": True}, "disabled": True}
    assert validate(body, "compute.firewalls.insert") == []
