"""From the host's state and what its peers published to the SAs it must have.

Direction sender->receiver: the receiver keeps (nonce, SPI) per key epoch in its state and
publishes them sealed; the sender opens them. Both derive the same 36-byte key. A peer's
entries are kept for every epoch still wanted, so a rotation can install the new epoch's SAs
next to the old ones (make before break) and remove the old ones later.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from ansible_collections.weave.fastdp.plugins.module_utils import keys


class MeshError(Exception):
    pass


@dataclass(frozen=True)
class Pending:
    """An SA whose key cannot be derived yet (check mode before the nonce exists)."""

    peer: str
    epoch: int
    direction: str


def recorded_epoch(table: dict) -> int | None:
    return max((int(e) for e in table.get("epochs", {})), default=None)


def ensure_nonces(table: dict, *, epoch: int, keep_epochs: list[int], senders: list[str],
                  retain: list[str], spis_in_use: set[int], purge: bool) -> tuple[dict, list[str]]:
    """The receiver's nonce table after this run and the changes, as readable lines.

    ``retain`` are peers outside this run (``--limit``): their entries are left as they are."""
    recorded = recorded_epoch(table)
    if recorded is not None and epoch < recorded:
        raise MeshError(f"epoch: {epoch} is lower than the epoch {recorded} this host already uses")
    epochs = {str(e): dict(peers) for e, peers in table.get("epochs", {}).items()}
    used = set(spis_in_use) | {p["spi"] for peers in epochs.values() for p in peers.values()}
    changes = []
    current = epochs.setdefault(str(epoch), {})
    for sender in senders:
        if sender not in current:
            spi = keys.new_spi(used)
            used.add(spi)
            current[sender] = {"spi": spi, "nonce": secrets.token_bytes(keys.NONCE_BYTES).hex()}
            changes.append(f"+ nonce and inbound SPI {spi:#010x} for {sender} (epoch {epoch})")
    if purge:
        wanted_epochs = {str(epoch), *map(str, keep_epochs)}
        for e in sorted(set(epochs) - wanted_epochs):
            changes.append(f"- nonces of epoch {e}")
            del epochs[e]
        keep_senders = set(senders) | set(retain)
        for e, peers in epochs.items():
            for sender in sorted(set(peers) - keep_senders):
                changes.append(f"- nonce and inbound SPI {peers[sender]['spi']:#010x} of {sender} (epoch {e})")
                del peers[sender]
    return {"epochs": epochs}, changes


def publish(table: dict, *, private, password: str, mesh: str, receiver: str,
            senders: dict[str, str], epochs: list[int]) -> dict:
    """For each sender (name -> public key): its entries [{epoch, spi, sealed_nonce}]."""
    published = {}
    for sender, public_key in senders.items():
        session = keys.session_key(private, public_key, password)
        entries = []
        for epoch in sorted(epochs):
            entry = table["epochs"].get(str(epoch), {}).get(sender)
            if entry:
                entries.append({"epoch": epoch, "spi": entry["spi"], "sealed_nonce": keys.seal_nonce(
                    session, bytes.fromhex(entry["nonce"]), mesh=mesh, epoch=epoch, sender=sender,
                    receiver=receiver, spi=entry["spi"])})
        published[sender] = entries
    return published


@dataclass(frozen=True)
class DerivedSA:
    peer: str
    epoch: int
    src: str
    dst: str
    spi: int
    key: bytes


def inbound_sas(table, *, private, password, local_name, local_address, peers, epochs):
    """SAs from each peer into this host, for each wanted epoch whose nonce exists."""
    derived, pending = [], []
    for peer in peers:
        session = keys.session_key(private, peer["public_key"], password)
        for epoch in epochs:
            entry = table["epochs"].get(str(epoch), {}).get(peer["name"])
            if entry is None:
                pending.append(Pending(peer["name"], epoch, "inbound"))
                continue
            key = keys.sa_key(session, bytes.fromhex(entry["nonce"]), local_name)
            derived.append(DerivedSA(peer["name"], epoch, peer["address"], local_address,
                                     entry["spi"], key))
    return derived, pending


def outbound_sas(*, private, password, mesh, local_name, local_address, peers, epochs):
    """SAs from this host to each peer, for each wanted epoch the peer has published."""
    derived, pending = [], []
    for peer in peers:
        session = keys.session_key(private, peer["public_key"], password)
        published = {e["epoch"]: e for e in peer.get("published") or []}
        for epoch in epochs:
            entry = published.get(epoch)
            if entry is None:
                pending.append(Pending(peer["name"], epoch, "outbound"))
                continue
            nonce = keys.open_nonce(session, entry["sealed_nonce"], mesh=mesh, epoch=epoch,
                                    sender=local_name, receiver=peer["name"], spi=entry["spi"])
            key = keys.sa_key(session, nonce, peer["name"])
            derived.append(DerivedSA(peer["name"], epoch, local_address, peer["address"],
                                     entry["spi"], key))
    return derived, pending
