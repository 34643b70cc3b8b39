"""What a lab host's kernel holds, read with the kernel's own tools (``ip``, ``iptables-save``,
``bridge``), and the mesh lab the kernel-tier scenarios share: lab hosts h1-h3 in the mesh,
h4 outside it until it joins."""

from __future__ import annotations

import re
from contextlib import contextmanager

from lab.hosts import Lab
from lab.playbook import mesh_inventory, run_playbook, vault_password


@contextmanager
def mesh_lab(name: str, *, platforms: list[str] | None = None):
    """Four lab hosts; ``lab.three`` is the inventory of the mesh h1-h3, ``lab.password`` the
    mesh password (vaulted in the lab's group_vars)."""
    with Lab(count=4, name=name, sshd=True, platforms=platforms) as lab:
        lab.password = vault_password(lab)
        lab.three = mesh_inventory(lab, ["h1", "h2", "h3"])
        yield lab


def converge(lab, *args, inventory=None, **options):
    """``site.yml`` on the mesh h1-h3 (or on ``inventory``)."""
    return run_playbook(lab, "site.yml", *args, inventory=inventory or lab.three, **options)


def snapshot(lab: Lab) -> dict:
    """Everything of each host the collection (or a package install) could change: links, XFRM,
    rules, the state dir and, on a host with its own root filesystem, its installed packages."""
    state = {}
    for h in lab.hosts:
        out = []
        for argv in (["ip", "-d", "link", "show"], ["ip", "xfrm", "state"],
                     ["ip", "xfrm", "policy"], ["iptables-save"], ["ip6tables-save"]):
            text = lab.exec(h, *argv).stdout
            out.append(re.sub(r"\[\d+:\d+\]|^#.*$", "", text, flags=re.MULTILINE))
        files = sorted(p.name for p in lab.state_dir(h).glob("**/*"))
        packages = (h.root / "var/lib/dpkg/status").read_text() if h.root else ""
        state[h.name] = (out, files, packages)
    return state


def mesh_hosts(lab):
    return lab.hosts[:3]


def xfrm_states(lab, host) -> list[dict]:
    """The host's SAs from ``ip -s xfrm state`` (which has no JSON output) as dicts: src,
    dst, spi, reqid, key (hex) and the whole text of the SA."""
    text = lab.exec(host, "ip", "-s", "xfrm", "state").stdout
    states = []
    for block in re.split(r"^(?=src )", text, flags=re.MULTILINE):
        head = re.match(r"src (\S+) dst (\S+)\s+proto esp spi (0x[0-9a-f]+)(?:\(\d+\))? "
                        r"reqid (\d+)", block)
        if head:
            key = re.search(r"aead \S+ (0x[0-9a-f]+)", block)
            states.append({"src": head[1], "dst": head[2], "spi": int(head[3], 16),
                           "reqid": int(head[4]), "key": key[1][2:] if key else "",
                           "text": block})
    return states


def sa_stats(lab, host, src, dst) -> dict:
    """replay and integrity ("failed") counters of the host's SAs src->dst, summed."""
    total = {"replay": 0, "failed": 0}
    for sa in xfrm_states(lab, host):
        if (sa["src"], sa["dst"]) == (src.address, dst.address):
            m = re.search(r"replay-window \d+ replay (\d+) failed (\d+)", sa["text"])
            total["replay"] += int(m[1])
            total["failed"] += int(m[2])
    return total


def host_state(lab, host) -> dict:
    """The host's kernel objects of any owner, keys hidden behind the SPI and peer."""
    return {
        "sas": sorted((s["src"], s["dst"], s["spi"], s["key"]) for s in xfrm_states(lab, host)),
        "policies": lab.exec(host, "ip", "xfrm", "policy").stdout,
        "rules": re.sub(r"\[\d+:\d+\]|^#.*$", "", lab.exec(host, "iptables-save").stdout,
                        flags=re.MULTILINE),
        "fdb": lab.exec(host, "bridge", "fdb", "show", "dev", "wf-weave", check=False).stdout,
    }
