"""Data plane throughput in the guest kernel: the encrypted overlay against what a user would
use instead. Run as root: ``./run bench dataplane`` (``python -m bench dataplane``).

Boots the guest ONCE; inside it, between the same two lab hosts (h1 -> h2, network
namespaces on one veth bridge), iperf3 TCP throughput of

  a  encrypted overlay: VXLAN (UDP 6784) over ESP transport, rfc4106(gcm(aes)), the lab's
     smoke setup (mark-selected out policies, mangle OUTPUT mark rule), overlay MTU as the
     project computes it (underlay 1500 -> 1416 over IPv4)
  b  host IPsec: ESP transport between the underlay addresses, same AEAD, no VXLAN
  c  plain VXLAN (same device, port and MTU as a), no ESP
  d  plain underlay
  e  as a, with rfc7539esp(chacha20,poly1305)

All five are configured once, side by side, each between its own pair of underlay addresses
(secondary addresses on the same veth; SAs, policies and mark rules select by address). A
round runs iperf3 (same settings) for each variant back to back, order rotated per round,
and checks with the SA byte counters that each ESP variant went through its own SA and that
no other SA moved; the medians over the rounds are reported, and the ratios per round.
Crypto in the guest (User-Mode Linux) is generic C, no AES-NI: absolute figures mean little,
only ratios measured in one run do. Results: bench/results/dataplane.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab.guest import REPO, in_guest, run_in_guest

RESULTS = REPO / "bench" / "results" / "dataplane.json"
AES = "rfc4106(gcm(aes))"
CHACHA = "rfc7539esp(chacha20,poly1305)"
UNDERLAY_MTU = 1500
IPERF_PORT = 5201
VARIANTS = {
    "a": "encrypted overlay (VXLAN over ESP, AES-GCM)",
    "b": "host IPsec (ESP transport, AES-GCM, no VXLAN)",
    "c": "plain VXLAN (no ESP)",
    "d": "plain underlay",
    "e": "encrypted overlay (VXLAN over ESP, ChaCha20-Poly1305)",
}
RATIOS = {
    "a/b": "encrypted overlay / host IPsec (seed: close to it; target >= 0.9)",
    "e/a": "ChaCha20-Poly1305 / AES-GCM overlay (seed: < 1)",
    "a/c": "encrypted overlay / plain VXLAN (cost of ESP on the overlay)",
    "b/d": "host IPsec / plain underlay (cost of ESP on the host)",
    "c/d": "plain VXLAN / plain underlay (cost of VXLAN)",
}


def overlay_mtu(underlay_mtu: int = UNDERLAY_MTU) -> tuple[int, str]:
    """The overlay MTU the project sets over an IPv4 underlay, and where it came from."""
    sys.path.insert(0, str(REPO / "collections"))
    try:
        from ansible_collections.weave.fastdp.plugins.module_utils.vxlan import (
            max_overlay_mtu,
        )
    except ImportError:
        # Weave 1.9: 50 bytes of VXLAN over IPv4, 34 of ESP, a multiple of 4.
        return (underlay_mtu - 50 - 34) // 4 * 4, "bench/dataplane.py (Weave 1.9 formula)"
    finally:
        sys.path.remove(str(REPO / "collections"))
    return max_overlay_mtu("198.51.100.11", underlay_mtu), "module_utils.vxlan.max_overlay_mtu"


# ---------------------------------------------------------------- in the guest

# Every variant is configured once, side by side, each between its own pair of underlay
# addresses of h1 and h2 (the SAs, policies and mark rules select by address), so a round
# is just five iperf3 runs back to back: no reconfiguration between paired measurements.
PAIRS = {  # variant: (h1, h2) underlay addresses on eth0
    "a": ("198.51.100.11", "198.51.100.12"),  # the lab's own addresses
    "b": ("198.51.100.41", "198.51.100.42"),
    "c": ("198.51.100.31", "198.51.100.32"),
    "d": ("198.51.100.11", "198.51.100.12"),  # TCP between them matches no policy
    "e": ("198.51.100.21", "198.51.100.22"),
}
OVERLAYS = {  # variant: VXLAN device, VNI, (h1, h2) overlay addresses in a /28 each
    "a": ("vxlan42", 42, ("203.0.113.1", "203.0.113.2")),
    "e": ("vxlan43", 43, ("203.0.113.17", "203.0.113.18")),
    "c": ("vxlan44", 44, ("203.0.113.33", "203.0.113.34")),
}
SPIS = {"a": (0x101, 0x102), "b": (0x201, 0x202), "e": (0x301, 0x302)}


def _esp_pair(lab, a, b, aead: str, spis: tuple[int, int]) -> None:
    """SAs both ways with fresh 36-byte keys (key + salt), installed on both ends."""
    from lab.smoke import add_sa

    for (src, dst), spi in zip(((a, b), (b, a)), spis, strict=True):
        key = secrets.token_bytes(36)
        add_sa(lab, src, src, dst, spi, key, aead=aead)
        add_sa(lab, dst, src, dst, spi, key, aead=aead)


def _setup(lab, mtu: int) -> dict[str, tuple[str, str]]:
    """Configure every variant between h1 and h2; returns variant -> (h1's source, target)."""
    from dataclasses import replace

    from lab.smoke import REQID, add_out_policy, add_vxlan, mark_tunnel_traffic

    h1, h2 = lab.hosts
    ends = {v: (replace(h1, address=x), replace(h2, address=y)) for v, (x, y) in PAIRS.items()}
    for v, (x, y) in PAIRS.items():
        if x != h1.address:
            lab.exec(h1, "ip", "addr", "add", f"{x}/24", "dev", h1.iface)
            lab.exec(h2, "ip", "addr", "add", f"{y}/24", "dev", h2.iface)
    a, b = ends["b"]
    _esp_pair(lab, a, b, AES, SPIS["b"])
    for src, dst, spi in ((a, b, SPIS["b"][0]), (b, a, SPIS["b"][1])):
        # Host IPsec between two machines: every packet src -> dst through ESP.
        lab.exec(src, "ip", "xfrm", "policy", "add", "src", f"{src.address}/32",
                 "dst", f"{dst.address}/32", "dir", "out",
                 "tmpl", "src", src.address, "dst", dst.address, "proto", "esp",
                 "spi", hex(spi), "reqid", REQID, "mode", "transport")
    targets = {v: (ends[v][0].address, ends[v][1].address) for v in ("b", "d")}
    for v, (dev, vni, overlay) in OVERLAYS.items():
        a, b = ends[v]
        for host, peer, addr in ((a, b, overlay[0]), (b, a, overlay[1])):
            add_vxlan(lab, host, peer, mtu=mtu, dev=dev, vni=vni, overlay=f"{addr}/28")
        if v in SPIS:
            _esp_pair(lab, a, b, AES if v == "a" else CHACHA, SPIS[v])
            for src, dst, spi in ((a, b, SPIS[v][0]), (b, a, SPIS[v][1])):
                add_out_policy(lab, src, dst, spi)
                mark_tunnel_traffic(lab, src, dst)
        targets[v] = overlay
    return targets


def _sa_bytes(lab, host) -> dict[int, int]:
    """Bytes through each SA (by SPI) as counted on ``host``."""
    out = lab.exec(host, "ip", "-s", "xfrm", "state", "list").stdout
    counts = {}
    for block in re.split(r"(?m)^(?=src )", out):
        spi = re.search(r"spi (0x[0-9a-f]+)", block)
        current = re.search(r"current:\s*(\d+)\(bytes\)", block)
        if spi and current:
            counts[int(spi[1], 16)] = int(current[1])
    return counts


def _iperf(lab, source: str, target: str, seconds: int, omit: int) -> dict:
    h1 = lab.hosts[0]
    for _ in range(20):
        proc = lab.exec(h1, "iperf3", "-c", target, "-B", source, "-p", IPERF_PORT,
                        "-t", seconds, "-O", omit, "-J", check=False,
                        timeout=seconds + omit + 120)
        try:
            report = json.loads(proc.stdout)
        except json.JSONDecodeError:
            report = {"error": proc.stderr or proc.stdout}
        if "error" not in report:
            end = report["end"]
            return {"mbit_s": end["sum_received"]["bits_per_second"] / 1e6,
                    "bytes": end["sum_received"]["bytes"],
                    "retransmits": end["sum_sent"].get("retransmits"),
                    "sender_cpu_pct": end["cpu_utilization_percent"]["host_total"],
                    "receiver_cpu_pct": end["cpu_utilization_percent"]["remote_total"]}
        if "refused" not in report["error"] and "busy" not in report["error"]:
            raise RuntimeError(f"iperf3 -c {target}: {report['error']}")
        time.sleep(0.5)
    raise RuntimeError(f"iperf3 -c {target}: {report['error']}")


def crypto_drivers() -> dict[str, str]:
    """The kernel's implementation of each ESP AEAD instantiated so far (from /proc/crypto)."""
    drivers = {}
    for block in Path("/proc/crypto").read_text().split("\n\n"):
        fields = dict(re.findall(r"^(\w+)\s*:\s*(.*)$", block, re.MULTILINE))
        if fields.get("name", "").startswith(("rfc4106", "rfc7539esp")):
            drivers.setdefault(fields["name"], fields.get("driver", "?"))
    return drivers


def guest_facts() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    flags = set(re.search(r"flags\s*:\s*(.*)", cpuinfo)[1].split())
    return {"kernel": platform.release(), "cpu_model": model[1] if model else "?",
            "cpus": os.cpu_count(), "virtualization": "User-Mode Linux, generic C crypto",
            "cpu_crypto_flags": sorted(flags & {"aes", "pclmulqdq", "avx", "avx2", "ssse3"}),
            "crypto_drivers": crypto_drivers()}


def run_variants(rounds: int, seconds: int, omit: int, log=print) -> dict:
    from lab.hosts import Lab

    mtu, mtu_source = overlay_mtu()
    samples: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    order = list(VARIANTS)
    started = time.monotonic()
    with Lab(count=2, name="wfdp", sshd=False) as lab:
        h1, h2 = lab.hosts
        targets = _setup(lab, mtu)
        log(f"[{time.monotonic() - started:5.0f} s] configured: " + ", ".join(
            f"{v} {src}->{dst}" for v, (src, dst) in targets.items()))
        server = subprocess.Popen(
            ["ip", "netns", "exec", h2.netns, "iperf3", "-s", "-p", str(IPERF_PORT)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for v, (src, dst) in targets.items():
                if lab.exec(h1, "ping", "-c", 2, "-i", "0.2", "-W", 5, "-I", src, dst,
                            check=False).returncode:
                    raise RuntimeError(f"variant {v}: no ping {src} -> {dst}")
            for r in range(rounds):
                for v in order[r % len(order):] + order[:r % len(order)]:
                    before = _sa_bytes(lab, h1)
                    result = _iperf(lab, *targets[v], seconds, omit)
                    moved = {spi: n - before.get(spi, 0) for spi, n in _sa_bytes(lab, h1).items()
                             if n != before.get(spi, 0)}
                    own = SPIS.get(v, ())
                    esp = moved.get(own[0], 0) if own else 0
                    result.update(round=r + 1, esp_bytes_out=esp,
                                  other_sas_moved={hex(s): n for s, n in moved.items()
                                                   if s not in own})
                    samples[v].append(result)
                    log(f"[{time.monotonic() - started:5.0f} s] round {r + 1} {v}: "
                        f"{result['mbit_s']:8.1f} Mbit/s  retr {result['retransmits']}  "
                        f"ESP bytes out {esp}  ({VARIANTS[v]})")
                    if own and esp < result["bytes"]:
                        raise RuntimeError(f"variant {v}: traffic did not go through its SA "
                                           f"({esp} < {result['bytes']} bytes)")
                    # Idle overlays still send a few packets (ARP, IPv6 ND) through their
                    # SAs; a variant leaking into another's SA would move it by megabytes.
                    if any(n > max(20000, result["bytes"] // 100)
                           for n in result["other_sas_moved"].values()):
                        raise RuntimeError(f"variant {v}: other SAs moved: {moved}")
        finally:
            server.terminate()
            server.wait()
    return {"overlay_mtu": mtu, "overlay_mtu_source": mtu_source, "samples": samples,
            "addresses": {v: {"h1": s, "target": t} for v, (s, t) in targets.items()},
            "guest": guest_facts()}


# ---------------------------------------------------------------- on the host


def host_facts() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    return {"kernel": platform.release(), "cpu_model": model[1] if model else "?",
            "cpus": os.cpu_count(), "loadavg": Path("/proc/loadavg").read_text().split()[:3]}


def summarize(guest: dict) -> dict:
    medians = {v: statistics.median(s["mbit_s"] for s in samples)
               for v, samples in guest["samples"].items() if samples}
    ratios = {k: medians[k[0]] / medians[k[2]] for k in RATIOS
              if medians.get(k[0]) and medians.get(k[2])}
    per_round = {k: [x["mbit_s"] / y["mbit_s"] for x, y in
                     zip(guest["samples"][k[0]], guest["samples"][k[2]], strict=True)]
                 for k in ratios}
    return {"median_mbit_s": medians, "ratios": ratios, "ratios_per_round": per_round}


def print_table(run: dict) -> None:
    print(f"\ndata plane, {run['date']}: guest kernel {run['guest']['kernel']} "
          f"({run['guest']['virtualization']}, {run['guest']['cpus']} vCPUs, "
          f"{run['guest']['cpu_model']}); host {run['host']['cpu_model']}, "
          f"{run['host']['cpus']} CPUs, kernel {run['host']['kernel']}")
    s = run["settings"]
    print(f"iperf3 TCP -t {s['seconds']} -O {s['omit']}, h1 -> h2, {s['rounds']} rounds "
          f"interleaved; overlay MTU {run['overlay_mtu']} ({run['overlay_mtu_source']}); "
          f"guest run {run['guest_seconds']:.0f} s")
    drivers = run["guest"].get("crypto_drivers", {})
    print("guest crypto: " + "; ".join(f"{k} = {v}" for k, v in drivers.items())
          + f"; CPU flags {' '.join(run['guest'].get('cpu_crypto_flags', [])) or 'none'}\n")
    print(f"{'':2} {'variant':56} {'median Mbit/s':>13}  samples")
    for v, label in VARIANTS.items():
        samples = run["samples"].get(v, [])
        if samples:
            print(f"{v:2} {label:56} {run['median_mbit_s'][v]:13.1f}  "
                  + ", ".join(f"{x['mbit_s']:.1f}" for x in samples))
    print(f"\n{'ratio':6} {'median':>7}  {'per round':24} meaning")
    for k, label in RATIOS.items():
        if k in run["ratios"]:
            rounds = ", ".join(f"{x:.2f}" for x in run["ratios_per_round"][k])
            print(f"{k:6} {run['ratios'][k]:7.3f}  {rounds:24} {label}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each variant")
    parser.add_argument("--seconds", type=int, default=5, help="iperf3 -t")
    parser.add_argument("--omit", type=int, default=1, help="iperf3 -O (TCP ramp-up skipped)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--append", action="store_true",
                        help="keep the earlier runs of --output (default: replace them)")
    parser.add_argument("--guest-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.guest_out:  # the half that runs inside the guest
        if not in_guest():
            raise SystemExit("--guest-out is for the guest side")
        result = run_variants(args.rounds, args.seconds, args.omit,
                              log=lambda m: print(m, flush=True))
        args.guest_out.write_text(json.dumps(result, indent=1))
        return

    if in_guest():
        raise SystemExit("bench dataplane boots the guest: run it on the host")
    date = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    before = host_facts()
    rwdir = Path(tempfile.mkdtemp(prefix="wf-bench-dataplane-"))
    out = rwdir / "guest.json"
    guest = run_in_guest(f"python -m bench.dataplane --guest-out {out} --rounds {args.rounds} "
                         f"--seconds {args.seconds} --omit {args.omit}",
                         rwdir=rwdir, stream=True)
    if guest.returncode or not out.exists():
        raise SystemExit(f"guest: exit {guest.returncode}\n{guest.output[-4000:]}")
    result = json.loads(out.read_text())
    host = host_facts()
    host["loadavg_before"] = before["loadavg"]
    run = {
        "date": date,
        "command": "./run bench dataplane " + " ".join(sys.argv[1:]),
        "settings": {"rounds": args.rounds, "seconds": args.seconds, "omit": args.omit,
                     "iperf3": f"-c TARGET -p {IPERF_PORT} -t {args.seconds} -O {args.omit} -J",
                     "underlay_mtu": UNDERLAY_MTU, "plain_vxlan_mtu": result["overlay_mtu"]},
        "host": host,
        "guest": result["guest"],
        "guest_seconds": round(guest.seconds, 1),
        "overlay_mtu": result["overlay_mtu"],
        "overlay_mtu_source": result["overlay_mtu_source"],
        "variants": VARIANTS,
        "ratio_meanings": RATIOS,
        **summarize(result),
        "samples": result["samples"],
    }
    runs = []
    if args.append and args.output.exists():
        runs = json.loads(args.output.read_text()).get("runs", [])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"latest": len(runs), "runs": runs + [run]}, indent=1)
                           + "\n")
    print_table(run)
    print(f"\nsaved: {args.output}")


if __name__ == "__main__":
    main()
