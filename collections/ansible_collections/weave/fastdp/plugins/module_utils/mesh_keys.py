"""From the host's state and what its peers published to the SAs it must have.

Direction sender->receiver: the receiver keeps (nonce, SPI) per key epoch in its state and
publishes them sealed; the sender opens them. Both derive the same 36-byte key. A peer's
entries are kept for every epoch still wanted, so a rotation can install the new epoch's SAs
next to the old ones (make before break) and remove the old ones later.
"""

from __future__ import annotations

import hashlib
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
                  allocate_spi: Callable[[str, set[int]], int],
                  spent: Callable[[str, dict], str | None], purge: bool,
                  retire: bool) -> tuple[dict, list[str]]:
    """The receiver's nonce table after this run and the changes, as readable lines.

    ``senders`` maps each sender of this run to the epoch of its outbound SA to this host,
    once known. Entries of earlier epochs stay until their sender has switched to ``epoch``
    and ``retire`` is set (make before break). ``retain`` are peers outside this run
    (``--limit``, later ``serial`` batches): their entries are left as they are.

    A key is never installed twice: a sender's recorded entry is kept only while ``spent(sender,
    entry)`` is None, i.e. the kernel still holds the inbound SA made for it; otherwise (its SA
    is gone after a reboot or a flush, or no longer what this run wants) the entry gets a fresh
    nonce and a fresh SPI, and the sender follows the new entry it is published. New SPIs come
    from ``allocate_spi(sender, recorded SPIs)`` (the kernel's ALLOCSPI outside check mode)."""
    recorded = recorded_epoch(table)
    if recorded is not None and epoch < recorded:
        raise MeshError(f"epoch: {epoch} is lower than the epoch {recorded} this host already uses")
    epochs = {e: dict(peers) for e, peers in table.get("epochs", {}).items()}
    epochs.setdefault(str(epoch), {})
    changes = []
    recorded_spis = {p["spi"] for peers in epochs.values() for p in peers.values()}

    def fresh(sender: str) -> dict:
        spi = allocate_spi(sender, recorded_spis)
        recorded_spis.add(spi)
        return {"spi": spi, "nonce": secrets.token_bytes(keys.NONCE_BYTES).hex()}

    for e, peers in sorted(epochs.items(), key=lambda item: int(item[0])):
        for sender in sorted(senders):
            if sender not in peers:
                if e == str(epoch):
                    peers[sender] = fresh(sender)
                    changes.append(f"+ nonce and inbound SPI {peers[sender]['spi']:#010x} for "
                                   f"{sender} (epoch {e})")
                continue
            why = spent(sender, peers[sender])
            if why is not None:
                old = peers[sender]["spi"]
                peers[sender] = fresh(sender)
                changes.append(f"~ fresh nonce and inbound SPI {peers[sender]['spi']:#010x} for "
                               f"{sender} (epoch {e}), replacing SPI {old:#010x}: {why}")
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


def installed_record(sa) -> dict:
    """What an entry records of the inbound SA installed for it (xfrm.SA): enough to tell
    that the kernel still holds that very SA, and with which options, without its key."""
    return {"src": sa.src, "reqid": sa.reqid, "aead": sa.aead, "replay_window": sa.replay_window,
            "key": installed_key(sa.key)}


def installed_key(key: bytes) -> str:
    """The digest an entry records of its SA's key (never the key)."""
    return hashlib.sha256(b"weave.fastdp installed key\0" + key).hexdigest()


def spent_reason(entry: dict, held, wanted: dict | None = None) -> str | None:
    """Why ``entry``'s nonce must not be used again, or None while the kernel still holds the
    SA made for it. ``held``: the kernel's SA at (this host, the entry's SPI), or None.
    ``wanted``: this run's options of that SA (src, reqid, aead, replay_window, and the
    installed_key of the key this run derives: another password, peer key or derivation makes
    another key), when known."""
    made = entry.get("installed")
    if made is None:  # its key was never installed: it may be, once, unless an SA holds its SPI
        if held is None or held.larval:
            return None
        return "the kernel holds an SA in its SPI that was not installed for it"
    if held is None or held.larval:
        return "the kernel no longer holds its SA"
    if installed_record(held) != made:
        return "the kernel's SA is not the one installed for it"
    changed = sorted(k for k, v in (wanted or {}).items() if made.get(k) != v)
    if changed:
        return "this run wants its SA with another " + ", ".join(changed)
    return None


def publish(table: dict, *, sessions: keys.Sessions, mesh: str, receiver: str,
            senders: dict[str, str], epochs: list[int]) -> dict:
    """For each sender (name -> public key): its entries [{epoch, spi, sealed_nonce}]."""
    published = {}
    for sender, public_key in senders.items():
        try:
            session = sessions.key(public_key)
        except keys.KeyMaterialError as exc:
            raise keys.KeyMaterialError(f"peers ({sender}): {exc}") from None
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


def inbound_sas(table, *, sessions, derived_keys, local_name, local_address, peers, epochs, aead):
    """SAs from each peer into this host, for each of its wanted epochs (``epochs``: peer name
    -> epochs) whose nonce this host keeps; keys from ``derived_keys``."""
    def sa_of(peer, session, epoch):
        entry = table["epochs"].get(str(epoch), {}).get(peer["name"])
        if entry is None:
            return None
        key = derived_keys.key(session, bytes.fromhex(entry["nonce"]), local_name, aead,
                               (local_address, entry["spi"]))
        return DerivedSA(peer["name"], epoch, peer["address"], local_address, entry["spi"], key)
    return _per_peer(peers, sessions, epochs, "inbound", sa_of)


def outbound_sas(*, sessions, derived_keys, mesh, local_name, local_address, peers, epochs, aead):
    """SAs from this host to each peer, for each of its wanted epochs (``epochs``: peer name
    -> epochs) the peer has published; keys from ``derived_keys``."""
    def sa_of(peer, session, epoch):
        entry = next((e for e in peer.get("published") or [] if e["epoch"] == epoch), None)
        if entry is None:
            return None
        nonce = keys.open_nonce(session, entry["sealed_nonce"], mesh=mesh, epoch=epoch,
                                sender=local_name, receiver=peer["name"], spi=entry["spi"])
        key = derived_keys.key(session, nonce, peer["name"], aead, (peer["address"], entry["spi"]))
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
