"""The lab's command line: ``python -m lab {up,down,guest,smoke,demo}``."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

from lab.guest import in_guest, run_in_guest
from lab.hosts import Lab, LabError
from lab.rootfs import DEFAULT_PLATFORM, PLATFORMS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="create lab hosts with sshd, print the inventory path")
    up.add_argument("--hosts", type=int, default=3)
    up.add_argument("--name", default="wf")
    up.add_argument("--platform", action="append", choices=sorted(PLATFORMS),
                    help="each host's distribution, cycled over the hosts (repeat it; default "
                         f"{DEFAULT_PLATFORM})")
    down = sub.add_parser("down", help="destroy a lab, also the leftovers of a killed run")
    which = down.add_mutually_exclusive_group()
    which.add_argument("--name", default="wf")
    which.add_argument("--all", action="store_true", help="every lab found on this machine")
    guest = sub.add_parser("guest", help="run a command in the guest kernel: guest -- CMD")
    guest.add_argument("cmd", nargs=argparse.REMAINDER)
    smoke = sub.add_parser("smoke", help="hand-made encrypted fastdp between two hosts "
                                         "(needs ESP: run it in the guest kernel)")
    smoke.add_argument("--mismatched-key", action="store_true",
                       help="give one receiver a wrong key: the smoke must FAIL")
    sub.add_parser("demo", help="the main job: a 3-host mesh converged by playbooks/site.yml, "
                                "its status and an underlay capture, in the guest kernel")
    sub.add_parser("mesh-demo", help="the demo itself (needs ESP: run inside the guest)")
    args = parser.parse_args(argv)

    try:
        if args.command == "up":
            lab = Lab(count=args.hosts, name=args.name, sshd=True, platforms=args.platform,
                      detached=True).create()
            print(lab.inventory)
            return 0
        if args.command == "down":
            for name in Lab.existing() if args.all else [args.name]:
                Lab.destroy_stale(name)
            return 0
        if args.command == "smoke":
            from lab.smoke import run_smoke

            return 0 if run_smoke(mismatched_key=args.mismatched_key).passed else 1
        if args.command == "mesh-demo":
            from lab.demo import run_demo

            return 0 if run_demo(echo=True) else 1
    except LabError as e:
        print(f"lab: {e}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as e:
        print(f"lab: {shlex.join(map(str, e.cmd))}: {(e.stderr or '').strip()}", file=sys.stderr)
        return 1
    if args.command == "guest":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not cmd:
            parser.error("guest: a command is needed, e.g. python -m lab guest -- uname -r")
        return run_in_guest(shlex.join(cmd) if len(cmd) > 1 else cmd[0], stream=True).returncode
    if in_guest():
        parser.error("demo boots the guest: run it on the host")
    return run_in_guest("python -m lab mesh-demo", stream=True).returncode


if __name__ == "__main__":
    sys.exit(main())
