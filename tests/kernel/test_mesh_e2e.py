"""The whole mesh on a real kernel: three lab hosts of three distributions (Debian 11, 12 and
13: Python 3.9, 3.11 and 3.13, each with its own python3-cryptography) reached over SSH,
converged by ``ansible-playbook playbooks/site.yml``, proved by what the kernel reports and what crosses the
wire. The tests run in file order on one lab (each builds on the state the previous left); the
mesh's life after that (a converge killed midway, a host joining and leaving, key rotations,
teardown) is test_mesh_lifecycle.py's, on a lab of its own in the other guest.
"""

from __future__ import annotations

import base64
import itertools
import json
import re

import pytest
from ansible_collections.weave.fastdp.plugins.module_utils.guards import guard_state

from lab import rootfs
from lab.attacks import ESP_HEADER, esp_sequence, flip_bit, send_frames
from lab.capture import TUNNEL_PORT, capture
from lab.playbook import run_on_host, run_playbook
from lab.smoke import ping
from lab.state import converge, mesh_hosts, mesh_lab, sa_stats, xfrm_states

ESP_SPI = ESP_HEADER  # the SPI is the ESP header's first 4 bytes

pytestmark = pytest.mark.kernel(seconds=500)  # wall time in a guest, to balance the guests


@pytest.fixture(scope="module")
def mesh():
    """The mesh h1-h3 converged once (with -vvv, for the log test)."""
    with mesh_lab("wfe2e", platforms=["debian11", "debian12", "debian13"]) as lab:
        lab.first_converge = converge(lab, "-vvv")
        yield lab


def secrets_of(lab) -> dict[str, str]:
    """Every secret of the mesh, by what it is: the password, each host's private key and
    shared secrets, each nonce and each SA key (hex and base64 forms)."""
    found = {"password": lab.password}
    for h in mesh_hosts(lab):
        state = lab.state_dir(h)
        raw = (state / "identity.key").read_bytes()
        found[f"{h.name} private key hex"] = raw.hex()
        found[f"{h.name} private key base64"] = base64.b64encode(raw).decode()
        shared = json.loads((state / "shared-secrets.json").read_text())["peers"]
        for peer_public, secret in shared.items():
            found[f"{h.name} shared secret with {peer_public} hex"] = secret
            found[f"{h.name} shared secret with {peer_public} base64"] = (
                base64.b64encode(bytes.fromhex(secret)).decode())
        table = json.loads((state / "inbound.json").read_text())
        for epoch, peers in table["epochs"].items():
            for sender, entry in peers.items():
                nonce = bytes.fromhex(entry["nonce"])
                found[f"nonce {sender}->{h.name} epoch {epoch} hex"] = nonce.hex()
                found[f"nonce {sender}->{h.name} epoch {epoch} base64"] = (
                    base64.b64encode(nonce).decode())
        for sa in xfrm_states(lab, h):
            key = bytes.fromhex(sa["key"])
            found[f"SA key {sa['spi']:#x} hex"] = key.hex()
            found[f"SA key {sa['spi']:#x} base64"] = base64.b64encode(key).decode()
    return found


def test_converge_gives_every_pair_an_overlay_with_only_esp_on_the_wire(mesh):
    assert mesh.first_converge.returncode == 0, mesh.first_converge
    for a, b in itertools.permutations(mesh_hosts(mesh), 2):
        with capture(mesh, a, f"host {a.address} and host {b.address}") as wire:
            assert ping(mesh, a, b), f"{a.name} -> {b.name} across the overlay"
        assert wire.count(f"esp and src {a.address} and dst {b.address}") > 0, (a.name, b.name)
        assert wire.count(f"esp and src {b.address} and dst {a.address}") > 0, (b.name, a.name)
        assert wire.count(f"udp port {TUNNEL_PORT}") == 0, "plaintext tunnel packet on the wire"


def test_each_host_converged_with_its_own_distributions_python(mesh):
    assert mesh.first_converge.returncode == 0, mesh.first_converge
    for h in mesh_hosts(mesh):
        facts = run_on_host(mesh, h.name, "ansible.builtin.setup",
                            {"gather_subset": ["!all", "!min", "python"]})["ansible_facts"]
        python = facts["ansible_python"]
        assert python["executable"] == "/usr/bin/python3", (h.platform, python)
        assert "{major}.{minor}".format(**python["version"]) == rootfs.python_version(
            rootfs.image_dir(h.platform)), (h.platform, python)


def test_keys_agree_on_both_ends_of_each_direction(mesh):
    sas = {h.name: xfrm_states(mesh, h) for h in mesh_hosts(mesh)}
    for a, b in itertools.permutations(mesh_hosts(mesh), 2):
        on_a = [s for s in sas[a.name] if s["src"] == a.address and s["dst"] == b.address]
        on_b = [s for s in sas[b.name] if s["src"] == a.address and s["dst"] == b.address]
        assert len(on_a) == len(on_b) == 1, (a.name, b.name, on_a, on_b)
        assert (on_a[0]["spi"], on_a[0]["key"]) == (on_b[0]["spi"], on_b[0]["key"])
        text = on_a[0]["text"]  # ESN: the window is in the ESN context, not "replay-window"
        assert "anti-replay esn context" in text and "replay_window 256" in text, text


def test_converge_log_holds_no_secret(mesh):
    log = mesh.first_converge.output
    secrets = secrets_of(mesh)
    assert sum(what.startswith("SA key") for what in secrets) == 2 * 6, "both forms, each direction"
    assert sum(" shared secret " in what for what in secrets) == 2 * 6, "both forms, each pair end"
    leaked = [what for what, value in secrets.items() if value and value in log]
    assert leaked == []


def task_results(run, task: str) -> str:
    """What the run printed under the task named ``task`` (up to the next task)."""
    block = re.search(rf"TASK \[weave\.fastdp\.mesh : {re.escape(task)}.*?(?=\nTASK |\nPLAY RECAP)",
                      run.output, re.DOTALL)
    assert block, f"no task {task!r} in the run"
    return block[0]


def test_second_run_changes_nothing_and_its_outbound_half_alone_verifies_every_pair(mesh):
    run = converge(mesh)
    assert run.returncode == 0, run
    assert run.changed == 0, run
    inbound = task_results(run, "Inbound half")
    assert "skipping: [h1]" in inbound and "ok: [" not in inbound, "the preflight found it settled"
    resend = task_results(run, "Send traffic to every peer")
    assert "skipping: [h1]" in resend and "ok: [" not in resend, resend
    assert "ok: [h1]" in task_results(run, "Every pair is encrypted fast datapath")


def test_the_inbound_half_is_skipped_only_while_the_kernel_holds_its_sas_with_this_password(mesh):
    h1 = mesh_hosts(mesh)[0]

    def preflight(password):  # as the role runs it on h1
        return run_on_host(mesh, "h1", "weave.fastdp.preflight", {
            "cipher": "aes-gcm", "state_dir": "/var/lib/weave-fastdp/weave",
            "underlay_address": h1.address, "password": password, "fail_on_missing": False})

    def settled(password):
        return preflight(password)["settled_inbound_half"]

    found = preflight(mesh.password)
    assert found["settled_inbound_half"]["cipher"] == "aes-gcm" and not found["probed"], \
        "its SAs, guards and VXLAN device are the kernel running every part the probes make"
    assert settled(mesh.password + "-other") is None, "another password derives other keys"
    inbound = next(sa for sa in xfrm_states(mesh, h1) if sa["dst"] == h1.address)
    mesh.exec(h1, "ip", "xfrm", "state", "delete", "src", inbound["src"], "dst", h1.address,
              "proto", "esp", "spi", hex(inbound["spi"]))
    assert settled(mesh.password) is None
    run = converge(mesh)
    assert run.returncode == 0, run
    half = task_results(run, "Inbound half")
    assert "changed: [h1]" in half and "skipping: [h2]" in half and "skipping: [h3]" in half, half
    # The SA is back with a fresh nonce and an SPI the kernel allocated: never the lost key.
    (again,) = [sa for sa in xfrm_states(mesh, h1)
                if (sa["src"], sa["dst"]) == (inbound["src"], h1.address)]
    assert again["spi"] != inbound["spi"] and again["key"] != inbound["key"], (inbound, again)
    sender = next(h for h in mesh_hosts(mesh) if h.address == inbound["src"])
    assert {(sa["spi"], sa["key"]) for sa in xfrm_states(mesh, sender)
            if (sa["src"], sa["dst"]) == (sender.address, h1.address)} == \
        {(again["spi"], again["key"])}, "the sender followed: it sends with the new SA alone"
    assert ping(mesh, sender, h1)


def xfrm_stat(lab, host) -> dict[str, int]:
    text = lab.exec(host, "cat", "/proc/net/xfrm_stat").stdout
    return {name: int(value) for name, value in re.findall(r"^(\w+)\s+(\d+)$", text, re.MULTILINE)}


def test_esp_captured_before_an_inbound_sa_is_reinstalled_is_dropped_and_counted_after(mesh):
    """The finding: re-added with the same key and SPI, an SA's replay window started empty,
    so ESP captured before a reboot or `ip xfrm state flush` was accepted again."""
    h1, h2, _ = mesh_hosts(mesh)
    with capture(mesh, h2, f"esp and src {h1.address}") as wire:
        assert ping(mesh, h1, h2)
    frames = [bytes(p) for p in wire.packets]
    assert frames, "ESP from h1 seen on h2's wire"
    (old,) = [sa for sa in xfrm_states(mesh, h2) if (sa["src"], sa["dst"]) == (h1.address, h2.address)]
    mesh.exec(h2, "ip", "xfrm", "state", "delete", "src", h1.address, "dst", h2.address,
              "proto", "esp", "spi", hex(old["spi"]))
    run = converge(mesh)
    assert run.returncode == 0, run
    (new,) = [sa for sa in xfrm_states(mesh, h2) if (sa["src"], sa["dst"]) == (h1.address, h2.address)]
    assert new["spi"] != old["spi"] and new["key"] != old["key"], (old, new)
    before, counters = xfrm_stat(mesh, h2), sa_stats(mesh, h2, h1, h2)
    with capture(mesh, h2, f"esp and src {h1.address}") as replayed:
        send_frames(mesh, h1, frames[:1])  # a packet h2 accepted under the SA it lost
    assert frames[0] in [bytes(p) for p in replayed.packets], "the replayed frame reached h2"
    after = xfrm_stat(mesh, h2)
    assert after["XfrmInNoStates"] == before["XfrmInNoStates"] + 1, (before, after)
    assert sa_stats(mesh, h2, h1, h2) == counters, "nothing reached the new SA"
    assert ping(mesh, h1, h2), "the pair works with the new SA"


def _sent(frames, sas) -> set[tuple[str, int]]:
    """(SA key, ESP sequence number) of each captured ESP frame (keys by SPI)."""
    key_of = {sa["spi"]: sa["key"] for sa in sas}
    return {(key_of[int.from_bytes(f[ESP_SPI:ESP_SPI + 4], "big")], esp_sequence(f)) for f in frames}


def test_after_a_senders_sas_are_flushed_no_key_and_sequence_number_pair_repeats(mesh):
    """The finding: a sender re-added its lost outbound SA with the same key, its sequence
    numbers starting at 1 again (AES-GCM's IV is the sequence number: nonce reuse)."""
    h1, h2, _ = mesh_hosts(mesh)
    with capture(mesh, h2, f"esp and src {h1.address}") as wire:
        assert ping(mesh, h1, h2)
    first = _sent([bytes(p) for p in wire.packets], xfrm_states(mesh, h2))
    assert first
    mesh.exec(h1, "ip", "xfrm", "state", "flush")
    run = converge(mesh)
    assert run.returncode == 0, run
    with capture(mesh, h2, f"esp and src {h1.address}") as wire:
        assert ping(mesh, h1, h2)
    second = _sent([bytes(p) for p in wire.packets], xfrm_states(mesh, h2))
    assert second and not first & second, sorted(first & second)
    assert {k for k, _ in first}.isdisjoint({k for k, _ in second}), "h2 made a fresh key"


def test_a_rerun_that_changes_nothing_still_fails_when_esp_is_blocked_on_the_path(mesh):
    h1, _, h3 = mesh_hosts(mesh)
    block = ["iptables", "-t", "raw", "-I", "PREROUTING", "-p", "esp", "-s", h1.address, "-j", "DROP"]
    mesh.exec(h3, *block)
    try:
        run = converge(mesh)
    finally:
        mesh.exec(h3, *block[:3], "-D", *block[4:])
    assert run.returncode != 0 and run.changed == 0, run
    assert f"h3 ({h3.address}): ESP went out but nothing came back over ESP" in run.output, run
    assert ping(mesh, h1, h3), "unblocked, the pair works again"


def test_check_diff_on_the_converged_mesh_reports_nothing(mesh):
    run = converge(mesh, "--check", "--diff")
    assert run.returncode == 0, run
    assert run.changed == 0, run
    assert not re.search(r"^[-+]{3} (before|after)", run.output, re.MULTILINE), run


def test_status_shows_every_pair_encrypted(mesh):
    run = run_playbook(mesh, "status.yml", inventory=mesh.three)
    assert run.returncode == 0, run
    assert run.output.count("encrypted fastdp") == 6, run
    assert "incomplete" not in run.output


def test_replayed_and_bit_flipped_esp_and_spoofed_plaintext_are_dropped_and_counted(mesh):
    h1, h2, h3 = mesh_hosts(mesh)
    with capture(mesh, h2, f"esp and src {h1.address}") as wire:
        assert ping(mesh, h1, h2)
    frames = [bytes(p) for p in wire.packets]
    assert frames, "ESP from h1 seen on h2's wire"
    before = sa_stats(mesh, h2, h1, h2)

    send_frames(mesh, h1, frames[:1])  # the very packet h2 already accepted
    replayed = sa_stats(mesh, h2, h1, h2)
    assert replayed["replay"] == before["replay"] + 1, (before, replayed)

    assert esp_sequence(frames[0]) < 1 << 24
    send_frames(mesh, h1, [flip_bit(frames[0], 24)])
    flipped = sa_stats(mesh, h2, h1, h2)
    assert flipped["failed"] == before["failed"] + 1, (before, flipped)

    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN

    guards = guard_state("weave", netns=h2.netns)
    dropped = guards[h1.address]["plaintext_dropped"]
    h2_mac = mesh.exec(h2, "cat", f"/sys/class/net/{h2.iface}/address").stdout.strip()
    spoofed = (Ether(dst=h2_mac) / IP(src=h1.address, dst=h2.address)
               / UDP(sport=40000, dport=TUNNEL_PORT) / VXLAN(vni=4242) / Ether()
               / IP(src="203.0.113.1", dst="203.0.113.2") / ICMP())
    send_frames(mesh, h3, [bytes(spoofed)] * 3)
    after = guard_state("weave", netns=h2.netns)[h1.address]["plaintext_dropped"]
    assert after == dropped + 3
    assert ping(mesh, h1, h2), "the pair still works"
