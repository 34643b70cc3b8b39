"""The mesh's life on a real kernel, on a lab of its own: a converge killed midway never lets
plaintext out, a fourth host joins and leaves touching only its pairs, keys rotate under
continuous ping without a loss (in one play and in serial batches), and teardown leaves only
other owners' state. The tests run in file order, each on the state the previous left.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import time

import pytest

from lab.capture import TUNNEL_PORT, capture
from lab.hosts import overlay_address
from lab.playbook import playbook_command, run_playbook
from lab.smoke import ContinuousPing, ping
from lab.state import converge, host_state, mesh_hosts, mesh_lab, xfrm_states

pytestmark = pytest.mark.kernel(seconds=900)  # wall time in a guest, to balance the guests
FOREIGN_REQID = 999  # another owner's SA and policy (the join test installs them)


@pytest.fixture(scope="module")
def mesh():
    """The mesh h1-h3, not yet converged: the first test converges it (and kills that run)."""
    with mesh_lab("wflife") as lab:
        yield lab


def test_a_converge_killed_midway_never_lets_plaintext_out_and_a_rerun_converges(mesh):
    teardown = run_playbook(mesh, "teardown.yml", inventory=mesh.three)
    assert teardown.returncode == 0, teardown
    argv, env = playbook_command(mesh, "site.yml", inventory=mesh.three)
    with capture(mesh, None, f"udp port {TUNNEL_PORT}") as wire:
        pingers = [subprocess.Popen(["ip", "netns", "exec", a.netns, "ping", "-i", "0.2",
                                     overlay_address(b)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
                   for a, b in itertools.permutations(mesh_hosts(mesh), 2)]
        run = subprocess.Popen(argv, env=env, cwd=mesh.inventory.parent, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True)
        seen = []
        for line in run.stdout:
            seen.append(line)
            if "TASK [weave.fastdp.mesh : Outbound half" in line:
                break  # guards, inbound SAs and the VXLAN device exist; no outbound SA yet
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        assert any("VXLAN device" in line for line in seen), "".join(seen)
        time.sleep(2)
        rerun = converge(mesh)
        assert rerun.returncode == 0, rerun
        for p in pingers:
            p.terminate()
            p.wait()
    assert wire.count(f"udp port {TUNNEL_PORT}") == 0, "plaintext tunnel packet on the wire"
    for a, b in itertools.permutations(mesh_hosts(mesh), 2):
        assert ping(mesh, a, b)


def test_a_fourth_host_joins_touching_only_its_pairs_and_leaves_without_a_trace(mesh):
    h1, h2, h3, h4 = mesh.hosts
    mesh.exec(h1, "ip", "xfrm", "state", "add", "src", h1.address, "dst", h4.address,
              "proto", "esp", "spi", "0x4242", "reqid", FOREIGN_REQID, "mode", "transport",
              "aead", "rfc4106(gcm(aes))", "0x" + "11" * 36, "128")
    mesh.exec(h1, "ip", "xfrm", "policy", "add", "src", f"{h1.address}/32", "dst",
              f"{h4.address}/32", "proto", "tcp", "dir", "out", "tmpl", "src", h1.address,
              "dst", h4.address, "proto", "esp", "reqid", FOREIGN_REQID, "mode", "transport")
    before = {h.name: host_state(mesh, h) for h in (h1, h2, h3, h4)}

    check = converge(mesh, "--check", "--diff", inventory=mesh.inventory)
    assert check.returncode == 0, check
    assert check.changed > 0, check
    assert {h.name: host_state(mesh, h) for h in (h1, h2, h3, h4)} == before

    joined = converge(mesh, inventory=mesh.inventory)
    assert joined.returncode == 0, joined
    for h in (h1, h2, h3):
        after = host_state(mesh, h)
        untouched = [sa for sa in before[h.name]["sas"] if h4.address not in sa[:2]]
        assert set(untouched) <= set(after["sas"]), f"{h.name}: pairs without h4 untouched"
        assert any(h4.address == sa[1] for sa in after["sas"] if sa[0] == h.address)
    for a in (h1, h2, h3):
        assert ping(mesh, a, h4) and ping(mesh, h4, a)

    left = converge(mesh)
    assert left.returncode == 0, left
    for h in (h1, h2, h3):
        state = host_state(mesh, h)
        foreign = h is h1
        ours = [sa for sa in state["sas"] if h4.address in sa[:2] and sa[2] != 0x4242]
        assert ours == [], f"{h.name} keeps SAs of h4"
        assert (h4.address in state["policies"]) == foreign, state["policies"]
        assert h4.address not in state["rules"] and h4.address not in state["fdb"]
    assert any(sa[2] == 0x4242 for sa in host_state(mesh, h1)["sas"]), "foreign SA survives"


def rotate_under_ping(lab, epoch, **extra_vars):
    """Bump the key epoch while h1 pings h2 across the overlay every 10 ms; returns the ping
    (requests sent, the ones lost) and h1's SAs (src, dst, spi) before and after."""
    h1, h2, _ = mesh_hosts(lab)

    def ours():
        return {(s["src"], s["dst"], s["spi"]) for s in xfrm_states(lab, h1)
                if s["reqid"] != FOREIGN_REQID}

    old = ours()
    with ContinuousPing(h1, h2) as pinger:
        time.sleep(1)
        rotated = converge(lab, extra_vars={"fastdp_key_epoch": epoch, **extra_vars})
        time.sleep(1)
    assert rotated.returncode == 0, rotated
    return pinger, old, ours()


@pytest.mark.parametrize("epoch, batches", [(2, {}), (3, {"fastdp_serial": 1})],
                         ids=["one-play", "serial-batches-of-1"])
def test_a_key_rotation_under_continuous_ping_loses_nothing(mesh, epoch, batches):
    pinger, old, new = rotate_under_ping(mesh, epoch, **batches)
    assert pinger.sent > 100 and pinger.lost == [], (pinger.sent, pinger.lost)
    assert new and not (new & old), "every SA was replaced by one of the new epoch"
    assert len(new) == len(old) == 4, "one SA per direction per peer once the old ones retired"


def test_teardown_leaves_only_other_owners_state(mesh):
    foreign = {h.name: [sa for sa in xfrm_states(mesh, h) if sa["reqid"] == FOREIGN_REQID]
               for h in mesh_hosts(mesh)}
    run = run_playbook(mesh, "teardown.yml", inventory=mesh.three)
    assert run.returncode == 0, run
    for h in mesh_hosts(mesh):
        assert xfrm_states(mesh, h) == foreign[h.name]
        policies = mesh.exec(h, "ip", "xfrm", "policy").stdout
        assert (len(re.findall(r"^src ", policies, re.MULTILINE))
                == policies.count(f"reqid {FOREIGN_REQID} ")), policies
        assert "FASTDP" not in mesh.exec(h, "iptables-save").stdout
        assert "wf-weave" not in mesh.exec(h, "ip", "link").stdout
        assert not mesh.state_dir(h).exists()
