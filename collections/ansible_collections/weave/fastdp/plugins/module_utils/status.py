"""The state of every pair, the way `weave status connections` reports it.

A pair is "encrypted fastdp" when this host has an inbound SA from the peer, an outbound SA to
it and an outbound policy whose template uses that SA; otherwise it is "incomplete" and says
which part is missing. Counters come from the kernel's SA dump.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class SAView:
    """What the status needs of one SA (never its key)."""

    src: str
    dst: str
    spi: int
    bytes: int = 0
    packets: int = 0
    replay_errors: int = 0
    integrity_errors: int = 0


@dataclass
class PeerStatus:
    peer: str
    address: str
    mode: str
    missing: list[str] = field(default_factory=list)
    spi_in: int | None = None
    spi_out: int | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    packets_out: int = 0
    replay_errors: int = 0
    integrity_errors: int = 0
    mtu: int | None = None


def pair_status(peers, local_address, sas: list[SAView], policy_spis: dict[str, int],
                guarded: set[str], mtu: int | None) -> list[dict]:
    """``policy_spis``: peer address -> SPI of the outbound policy's template;
    ``guarded``: peer addresses the guard chains cover."""
    rows = []
    for peer in peers:
        address = peer["address"]
        inbound = [sa for sa in sas if sa.src == address and sa.dst == local_address]
        outbound = {sa.spi: sa for sa in sas if sa.src == local_address and sa.dst == address}
        policy_spi = policy_spis.get(address)
        missing = []
        if not inbound:
            missing.append("inbound SA")
        if not outbound:
            missing.append("outbound SA")
        if policy_spi is None:
            missing.append("outbound policy")
        elif outbound and policy_spi not in outbound:
            missing.append(f"outbound SA for the policy's SPI {policy_spi:#010x}")
        if address not in guarded:
            missing.append("guard rules")
        used_out = outbound.get(policy_spi)
        newest_in = max(inbound, key=lambda sa: sa.packets, default=None)
        rows.append(PeerStatus(
            peer=peer["name"], address=address,
            mode="encrypted fastdp" if not missing else "incomplete",
            missing=missing,
            spi_in=newest_in.spi if newest_in else None,
            spi_out=policy_spi,
            bytes_in=sum(sa.bytes for sa in inbound), packets_in=sum(sa.packets for sa in inbound),
            bytes_out=used_out.bytes if used_out else 0,
            packets_out=used_out.packets if used_out else 0,
            replay_errors=sum(sa.replay_errors for sa in inbound),
            integrity_errors=sum(sa.integrity_errors for sa in inbound),
            mtu=mtu,
        ))
    return [asdict(r) for r in rows]


COLUMNS = [("peer", "PEER"), ("address", "ADDRESS"), ("mode", "MODE"), ("spi_in", "SPI IN"),
           ("spi_out", "SPI OUT"), ("packets_in", "PKTS IN"), ("packets_out", "PKTS OUT"),
           ("bytes_in", "BYTES IN"), ("bytes_out", "BYTES OUT"), ("replay_errors", "REPLAY"),
           ("integrity_errors", "INTEGRITY"), ("mtu", "MTU")]


def table(rows: list[dict]) -> str:
    def cell(row, key):
        value = row[key]
        if key.startswith("spi") and value is not None:
            return f"{value:#010x}"
        if key == "mode" and row["missing"]:
            return f"incomplete (no {', '.join(row['missing'])})"
        return "-" if value is None else str(value)

    cells = [[title for _, title in COLUMNS]] + [[cell(r, k) for k, _ in COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells)
