"""The lab's test hosts on the host kernel: SSH reachability, topology, and a clean teardown."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lab import rootfs
from lab.capture import capture
from lab.hosts import Lab, work_dir
from lab.smoke import add_vxlan, ping

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]


def leftovers(name: str) -> dict:
    """Whatever of lab ``name`` is still on the machine (empty lists when clean)."""
    netns = subprocess.run(["ip", "netns", "list"], check=True, capture_output=True,
                           text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], check=True, capture_output=True, text=True).stdout
    procs = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        try:
            root = os.readlink(cmdline.parent / "root")  # a host's chrooted sshd and sessions
        except OSError:
            root = ""
        if f"wf-lab-{name}/" in text + root or f" {name}-h" in text:
            procs.append(text)
    return {
        "netns": [line for line in netns.splitlines() if line.startswith(f"{name}-")],
        "links": [line for line in links.splitlines() if f" {name}-" in line],
        "processes": procs,
        "mounts": [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                   if f" {work_dir(name)}/" in line],
        "work_dir": [str(work_dir(name))] if work_dir(name).exists() else [],
    }


CLEAN = {"netns": [], "links": [], "processes": [], "mounts": [], "work_dir": []}


def test_three_hosts_answer_ansible_over_ssh_and_destroy_leaves_nothing():
    with Lab(count=3, name="wfssh", sshd=True) as lab:
        ping = subprocess.run(
            [f"{REPO}/.venv/bin/ansible", "-i", str(lab.inventory), "fastdp_mesh",
             "-m", "ansible.builtin.ping"],
            check=False, cwd=REPO, capture_output=True, text=True)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        for host in lab.hosts:
            assert f"{host.name} | SUCCESS" in ping.stdout
        assert leftovers("wfssh")["processes"], "the lab's sshd should be running"
    assert leftovers("wfssh") == CLEAN


def test_hosts_have_their_own_addresses_and_reach_the_controller(lab_factory):
    lab = lab_factory(count=2, sshd=False)
    for host in lab.hosts:
        addrs = lab.exec(host, "ip", "-o", "addr", "show", "dev", "eth0").stdout
        assert f"{host.address}/24" in addrs and f"{host.address6}/64" in addrs
        lab.exec(host, "ping", "-c", "1", "-W", "2", "198.51.100.1")
        lab.exec(host, "ping", "-6", "-c", "1", "-W", "2", "2001:db8::1")
    lab.exec("h1", "ping", "-c", "1", "-W", "2", lab.hosts[1].address)


def test_vxlan_overlay_ping_between_two_hosts(lab_factory):
    lab = lab_factory(count=2, sshd=False)
    a, b = lab.hosts
    add_vxlan(lab, a, b)
    add_vxlan(lab, b, a)
    with capture(lab, a, "udp port 6784") as cap:
        assert ping(lab, a, b)
    assert cap.count(f"udp and src {a.address} and dst port 6784") > 0
    echo = [p for p in cap.packets if p.haslayer("ICMP")]  # VXLAN decoded: the inner ping
    assert echo, "the capture should hold the overlay's ICMP inside VXLAN"


def test_a_failing_test_using_the_fixture_leaves_nothing(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_fails.py").write_text(textwrap.dedent("""
        def test_fails(lab_factory):
            lab_factory(count=2, sshd=True, name="wffail")
            assert False, "deliberate"
    """))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "lab.pytest_plugin", "-p", "no:cacheprovider",
         str(tmp_path)],
        check=False, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "AssertionError: deliberate" in run.stdout
    assert leftovers("wffail") == CLEAN


def test_an_exception_inside_with_lab_leaves_nothing():
    with pytest.raises(RuntimeError, match="deliberate"), Lab(count=2, name="wfexc"):
        raise RuntimeError("deliberate")
    assert leftovers("wfexc") == CLEAN


def test_a_killed_run_is_cleaned_by_destroy_stale_and_destroy_is_idempotent():
    script = "from lab.hosts import Lab; import time; Lab(count=2, name='wfkill').create(); " \
             "print('up', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline() == "up\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert leftovers("wfkill")["netns"], "a killed run leaves its lab behind"
    Lab.destroy_stale("wfkill")
    assert leftovers("wfkill") == CLEAN
    Lab.destroy_stale("wfkill")
    Lab(count=2, name="wfkill").destroy()


def test_a_new_lab_reaps_the_lab_of_a_dead_owner():
    script = "from lab.hosts import Lab; import os; Lab(count=2, name='wfdead').create(); " \
             "os._exit(0)"
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True)
    assert leftovers("wfdead")["netns"]
    with Lab(count=1, name="wfnext", sshd=False):
        assert leftovers("wfdead") == CLEAN


def test_one_lab_at_a_time_in_a_process(lab_factory):
    lab_factory(count=1, sshd=False)
    with pytest.raises(RuntimeError, match="one lab at a time"):
        lab_factory(count=1, sshd=False)


def test_each_host_runs_modules_with_its_own_distributions_python():
    platforms = ["debian11", "debian12", "debian13"]
    with Lab(count=len(platforms), name="wfpy", sshd=True, platforms=platforms) as lab:
        run = subprocess.run(
            [f"{REPO}/.venv/bin/ansible", "-i", str(lab.inventory), "fastdp_mesh", "-o",
             "-m", "ansible.builtin.setup", "-a", "gather_subset=!all,!min,python,distribution"],
            check=False, cwd=REPO, capture_output=True, text=True)
        assert run.returncode == 0, run.stdout + run.stderr
        for host in lab.hosts:
            line = next(x for x in run.stdout.splitlines() if x.startswith(f"{host.name} |"))
            facts = json.loads(line.split("=>", 1)[1])["ansible_facts"]
            image = rootfs.image_dir(host.platform)
            wanted = rootfs.python_version(image)
            python = facts["ansible_python"]
            assert python["executable"] == "/usr/bin/python3", (host.platform, python)
            assert "{major}.{minor}".format(**python["version"]) == wanted, (host.platform, python)
            assert facts["ansible_distribution_major_version"] == host.platform.removeprefix(
                "debian"), (host.platform, facts["ansible_distribution_major_version"])
