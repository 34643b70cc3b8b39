"""How long the lab takes: create+destroy of 3 and 20 hosts with sshd (best of a few runs),
and the guest kernel's boot-to-command time. Run as root: python -m bench.lab_timing"""

from __future__ import annotations

import argparse
import time

from lab.guest import run_in_guest
from lab.hosts import Lab


def lab_cycle(count: int) -> tuple[float, float]:
    """Seconds to create (sshd accepting on every host) and to destroy a lab of ``count``."""
    lab = Lab(count=count, name="wfbench", sshd=True)
    started = time.monotonic()
    lab.create()
    created = time.monotonic()
    lab.destroy()
    return created - started, time.monotonic() - created


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--guest-runs", type=int, default=2)
    args = parser.parse_args()
    for count in (3, 20):
        cycles = [lab_cycle(count) for _ in range(args.runs)]
        create, destroy = min(cycles, key=sum)
        print(f"lab {count:2d} hosts with sshd: create+destroy {create + destroy:.3f} s "
              f"(create {create:.3f}, destroy {destroy:.3f}; best of {args.runs})")
    boots = [run_in_guest("true") for _ in range(args.guest_runs)]
    failed = [b for b in boots if b.returncode]
    if failed:
        raise SystemExit(f"guest: exit {failed[0].returncode}\n{failed[0].output}")
    print(f"guest boot-to-command (run_in_guest('true')): best {min(b.seconds for b in boots):.1f} s"
          f", all {', '.join(f'{b.seconds:.1f}' for b in boots)} s")


if __name__ == "__main__":
    main()
