"""The role installs what a host lacks, or fails naming host and package, before any host
changes; a host that has everything is never asked for a package manager.

A two-host lab over SSH: h1 holds Debian 12 with python3-cryptography, h2 the same system
without it (lab.rootfs's ``debian12-nocrypto``, also without python3-apt, as a minimal image
is). The lab's hosts have no network, so an install on h2 fails: the run must say so, naming
the host and the package. h1 alone converges to the preflight's fail-closed end (this kernel
has no ESP) without a package task.
"""


import pytest

from lab.hosts import Lab
from lab.playbook import mesh_inventory, run_playbook
from lab.state import snapshot

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def lab():
    with Lab(count=2, name="wfpkg", sshd=True, platforms=["debian12", "debian12-nocrypto"]) as lab:
        yield lab


def test_the_lab_host_lacks_python3_cryptography(lab):
    h1, h2 = lab.hosts
    assert (h1.root / "usr/lib/python3/dist-packages/cryptography").is_dir()
    assert not (h2.root / "usr/lib/python3/dist-packages/cryptography").exists()
    assert not (h2.root / "usr/lib/python3/dist-packages/apt").exists()


def test_with_install_off_the_run_fails_naming_host_and_package_before_any_change(lab):
    before = snapshot(lab)
    run = run_playbook(lab, "site.yml", extra_vars={"fastdp_install_packages": False})
    assert run.returncode != 0, run
    assert ("h2 lacks python3-cryptography: install it on h2, or set fastdp_install_packages "
            "to true (cryptography >= 3.3 (the distribution's python3-cryptography): "
            "ModuleNotFoundError: No module named 'cryptography')") in run.output, run
    assert "h1 lacks" not in run.output, run
    assert "cannot run the encrypted fast datapath" not in run.output, "it fails before"
    assert all(r["changed"] == 0 for r in run.recap.values()), run.recap
    assert snapshot(lab) == before


def test_with_install_on_and_no_network_the_install_fails_naming_host_and_package(lab):
    h2 = lab.hosts[1]
    # No archive to reach: apt fails at once, without a name lookup or a connection attempt.
    (h2.root / "etc/apt/sources.list").write_text("")
    for extra in (h2.root / "etc/apt/sources.list.d").glob("*"):
        extra.unlink()
    before = snapshot(lab)
    run = run_playbook(lab, "site.yml")
    assert run.returncode != 0, run
    assert "h2: cannot install python3-cryptography with apt:" in run.output, run
    assert "cannot run the encrypted fast datapath" not in run.output, "it fails before"
    assert run.recap["h1"]["changed"] == 0, run.recap
    assert snapshot(lab) == before


def test_a_host_that_lacks_nothing_runs_no_package_task(lab):
    run = run_playbook(lab, "site.yml", "-v", inventory=mesh_inventory(lab, ["h1"]))
    assert run.returncode != 0, run
    assert "h1 cannot run the encrypted fast datapath: esp:" in run.output, run
    assert "Read the distribution" not in run.output, run
    assert run.recap["h1"]["changed"] == 0, run.recap
