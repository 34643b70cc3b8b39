"""From the host's state and what its peers published to the SAs it must have.

Direction sender->receiver: the receiver keeps (nonce, SPI) per key epoch in its state and
publishes them sealed; the sender opens them. Both derive the same 36-byte key. A peer's
entries are kept for every epoch still wanted, so a rotation can install the new epoch's SAs
next to the old ones (make before break) and remove the old ones later.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from ansible_collections.weave.fastdp.plugins.module_utils import keys
from ansible_collections.weave.fastdp.plugins.module_utils.compat import SLOTS


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


def ensure_nonces(table: dict, *, epoch: int, senders: dict[str, int | None], retain: list[str],
                  spis_in_use: Callable[[], set[int]], purge: bool,
                  retire: bool) -> tuple[dict, list[str]]:
    """The receiver's nonce table after this run and the changes, as readable lines.

    ``senders`` maps each sender of this run to the epoch of its outbound SA to this host,
    once known. Entries of earlier epochs stay until their sender has switched to ``epoch``
    and ``retire`` is set (make before break). ``retain`` are peers outside this run
    (``--limit``, later ``serial`` batches): their entries are left as they are.
    ``spis_in_use`` reads the SPIs of every SA towards this host, only when a new inbound SPI is
    made (a run that makes none reads nothing from the kernel)."""
    recorded = recorded_epoch(table)
    if recorded is not None and epoch < recorded:
        raise MeshError(f"epoch: {epoch} is lower than the epoch {recorded} this host already uses")
    epochs = {e: dict(peers) for e, peers in table.get("epochs", {}).items()}
    used = None
    changes = []
    current = epochs.setdefault(str(epoch), {})
    for sender in senders:
        if sender not in current:
            if used is None:
                used = spis_in_use() | {p["spi"] for peers in epochs.values() for p in peers.values()}
            spi = keys.new_spi(used)
            used.add(spi)
            current[sender] = {"spi": spi, "nonce": secrets.token_bytes(keys.NONCE_BYTES).hex()}
            changes.append(f"+ nonce and inbound SPI {spi:#010x} for {sender} (epoch {epoch})")
    for e, peers in sorted(epochs.items()):
        for sender in sorted(peers):
            removed_peer = purge and sender not in senders and sender not in retain
            switched = retire and int(e) < epoch and senders.get(sender) == epoch
            if removed_peer or switched:
                why = f"switched to epoch {epoch}" if switched else "no longer a peer"
                changes.append(f"- nonce and inbound SPI {peers[sender]['spi']:#010x} of {sender} "
                               f"(epoch {e}): {why}")
                del peers[sender]
    return {"epochs": {e: peers for e, peers in epochs.items() if peers}}, changes


def publish(table: dict, *, sessions: keys.Sessions, mesh: str, receiver: str,
            senders: dict[str, str], epochs: list[int]) -> dict:
    """For each sender (name -> public key): its entries [{epoch, spi, sealed_nonce}]."""
    published = {}
    for sender, public_key in senders.items():
        session = sessions.key(public_key)
        entries = []
        for epoch in sorted(epochs):
            entry = table["epochs"].get(str(epoch), {}).get(sender)
            if entry:
                entries.append({"epoch": epoch, "spi": entry["spi"], "sealed_nonce": keys.seal_nonce(
                    session, bytes.fromhex(entry["nonce"]), mesh=mesh, epoch=epoch, sender=sender,
                    receiver=receiver, spi=entry["spi"])})
        published[sender] = entries
    return published


@dataclass(frozen=True, **SLOTS)
class DerivedSA:
    peer: str
    epoch: int
    src: str
    dst: str
    spi: int
    key: bytes


def inbound_sas(table, *, sessions, derived_keys, local_name, local_address, peers, epochs):
    """SAs from each peer into this host, for each of its wanted epochs (``epochs``: peer name
    -> epochs) whose nonce this host keeps; keys from ``derived_keys``."""
    def sa_of(peer, session, epoch):
        entry = table["epochs"].get(str(epoch), {}).get(peer["name"])
        if entry is None:
            return None
        key = derived_keys.key(session, bytes.fromhex(entry["nonce"]), local_name,
                               (local_address, entry["spi"]))
        return DerivedSA(peer["name"], epoch, peer["address"], local_address, entry["spi"], key)
    return _per_peer(peers, sessions, epochs, "inbound", sa_of)


def outbound_sas(*, sessions, derived_keys, mesh, local_name, local_address, peers, epochs):
    """SAs from this host to each peer, for each of its wanted epochs (``epochs``: peer name
    -> epochs) the peer has published; keys from ``derived_keys``."""
    def sa_of(peer, session, epoch):
        entry = next((e for e in peer.get("published") or [] if e["epoch"] == epoch), None)
        if entry is None:
            return None
        nonce = keys.open_nonce(session, entry["sealed_nonce"], mesh=mesh, epoch=epoch,
                                sender=local_name, receiver=peer["name"], spi=entry["spi"])
        key = derived_keys.key(session, nonce, peer["name"], (peer["address"], entry["spi"]))
        return DerivedSA(peer["name"], epoch, local_address, peer["address"], entry["spi"], key)
    return _per_peer(peers, sessions, epochs, "outbound", sa_of)


def _per_peer(peers, sessions, epochs, direction, sa_of) -> tuple[list[DerivedSA], list[Pending]]:
    """``sa_of(peer, session key, epoch)`` for each peer and each of its epochs: derived, or
    pending when it gives None or no session key can be formed yet (``sessions`` None: this
    host has no key pair; a peer without ``public_key``: it has none yet). A key that cannot
    be made raises KeyMaterialError naming ``peers[i]``."""
    derived, pending = [], []
    for i, peer in enumerate(peers):
        try:
            session = sessions.key(peer["public_key"]) if sessions and peer.get("public_key") else None
            for epoch in epochs[peer["name"]]:
                sa = sa_of(peer, session, epoch) if session else None
                if sa is None:
                    pending.append(Pending(peer["name"], epoch, direction))
                else:
                    derived.append(sa)
        except keys.KeyMaterialError as exc:
            raise keys.KeyMaterialError(f"peers[{i}] ({peer['name']}): {exc}") from None
    return derived, pending
