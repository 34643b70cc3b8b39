"""The main job on the local lab: a three-host encrypted fast datapath mesh, made the way a user
makes one. Lab hosts reached over SSH, ``playbooks/site.yml`` converges them, ``status.yml``
prints every pair's state, and a capture on the underlay while every pair pings across the
overlay shows that only ESP crossed the wire. Needs ESP: ``python -m lab demo`` runs it in the
guest kernel (User-Mode Linux).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

from lab.capture import TUNNEL_PORT, capture
from lab.hosts import Lab
from lab.playbook import run_playbook
from lab.smoke import ping


def run_demo(*, hosts: int = 3, log: Callable[[str], None] = print, echo: bool = False) -> bool:
    """``echo`` prints each playbook's output as it comes (the command line's demo does)."""
    with Lab(count=hosts, name="wfdemo", sshd=True) as lab:
        log(f"lab: {', '.join(f'{h.name} {h.address}' for h in lab.hosts)} (inventory "
            f"{lab.inventory})")
        log("ansible-playbook playbooks/site.yml ...")
        converge = run_playbook(lab, "site.yml", echo=echo)
        if not echo:
            log(converge.output[converge.output.find("PLAY RECAP"):].strip())
        if converge.returncode:
            if not echo:
                log(converge.output)
            return False
        status = run_playbook(lab, "status.yml", echo=echo)
        tables = re.findall(r'ok: \[(\S+)\] => \{\n\s*"msg": \[\n(.*?)\n\s*\]', status.output,
                            re.DOTALL)
        for host, table in tables:
            log(f"{host}:\n" + "\n".join("  " + line.strip().strip(',').strip('"')
                                          for line in table.splitlines()))
        with capture(lab, None, f"esp or udp port {TUNNEL_PORT}") as wire:
            reached = [ping(lab, a, b, count=2) for a, b in itertools.permutations(lab.hosts, 2)]
        esp, plaintext = wire.count("esp"), wire.count(f"udp port {TUNNEL_PORT}")
        log(f"ping across the overlay: {sum(reached)}/{len(reached)} pairs answered")
        log(f"capture on the underlay bridge: {esp} ESP packets, {plaintext} to UDP "
            f"{TUNNEL_PORT} (plaintext tunnel)")
        passed = all(reached) and esp > 0 and plaintext == 0
        log(f"demo: {'PASS' if passed else 'FAIL'}")
        return passed
