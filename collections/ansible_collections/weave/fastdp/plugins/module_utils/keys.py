"""Per-pair, per-direction ESP keys, derived on the hosts. Exactly (``||``: concatenation):

    shared      = X25519(own private key, peer public key)     (32 bytes; low-order keys refused)
    session key = SHA-256(shared || mesh password as UTF-8)
    key A->B    = HKDF-SHA256(ikm=session key, salt=nonce made by B (32 random bytes),
                              info=B's peer name as UTF-8 || 0x00 || the SA's AEAD name,
                              e.g. "rfc4106(gcm(aes))"), 36 bytes

36 bytes: a 32-byte AES-256-GCM (or ChaCha20) key and its 4-byte salt. This is modelled on
Weave Net and differs from it in three inputs: Weave hashes HSalsa20(X25519) with the password
(here the raw X25519 output), its HKDF info is the receiver's 64-bit peer name as 8 bytes (here
the peer name's text and the AEAD name, so switching cipher never reuses a key), and its key
pairs are per connection (here the host's identity). Keys are therefore not interchangeable
with Weave's. The receiver B makes the nonce and the SPI (allocated by the kernel) of its
inbound SA and keeps both in its state directory, per key epoch, only while the kernel holds
that SA: a lost or changed SA gets a fresh nonce and SPI, so no key is installed twice. The
controller carries a nonce to the sender only sealed (AES-GCM under a key the two peers alone
can form, bound to mesh, epoch, both names and the SPI, each length-prefixed), so no nonce
appears in a log; the private key never leaves the host.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import tempfile
import traceback

# python3-cryptography as the distributions ship it, Debian 11's 3.3.2 the oldest (no
# ``backend`` argument is needed from 3.1 on; Ubuntu 20.04 has 2.8). The modules that derive
# keys check MISSING before they change anything (arguments.require): this imports without it.
_LIBRARY = "cryptography >= 3.3 (the distribution's python3-cryptography)"
try:
    from cryptography import __version__ as _version
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
except ImportError:
    MISSING = {"library": _LIBRARY, "exception": traceback.format_exc()}
else:
    MISSING = None
    if tuple(int(n) for n in re.findall(r"\d+", _version)[:2]) < (3, 3):
        MISSING = {"library": _LIBRARY, "exception": f"cryptography {_version} is older than 3.3",
                   "reason": f"to derive the mesh's keys, and {_version} is installed"}

SA_KEY_BYTES = 36
NONCE_BYTES = 32
SPI_MIN = 0x100  # 1-255 are reserved by RFC 4303
SPI_MAX = 0xFFFFFFFF
_SEAL_INFO = b"weave.fastdp nonce seal"


class KeyMaterialError(Exception):
    """Bad key material or state (named, so callers can report the field)."""


def hkdf_sha256(ikm: bytes, salt: bytes | None, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def shared_secret(private: X25519PrivateKey, peer_public: str) -> bytes:
    try:
        return private.exchange(decode_public_key(peer_public))
    except ValueError:  # OpenSSL refuses the all-zero result of a small-order point
        raise KeyMaterialError(
            "public key of low order (X25519 with it gives an all-zero shared secret, which "
            "anybody knows): refused") from None


def session_key(shared: bytes, password: str) -> bytes:
    return hashlib.sha256(shared + password.encode()).digest()


class Sessions:
    """This host's session keys with its peers, each X25519 shared secret computed once per
    peer public key and then kept in the state directory.

    X25519 was most of what a run that changes nothing spends at 1000 peers (it must know
    every key to compare it with the kernel's). A shared secret is no more than
    ``identity.key`` beside it can make again, and no password-derived value is kept."""

    def __init__(self, private: X25519PrivateKey, password: str, known: dict[str, str]):
        self.private, self.password = private, password
        self.known = known  # peer public key (base64) -> shared secret (hex)
        self.learned = False

    def key(self, peer_public: str) -> bytes:
        shared = self.known.get(peer_public)
        if shared is None:
            shared = shared_secret(self.private, peer_public).hex()
            self.known[peer_public] = shared
            self.learned = True
        return session_key(bytes.fromhex(shared), self.password)


def sa_key(session: bytes, nonce: bytes, receiver: str, aead: str) -> bytes:
    """Key + salt of the direction towards ``receiver`` for an SA of ``aead`` (the same on
    both ends). Peer names never hold a NUL, so the info is unambiguous."""
    return hkdf_sha256(session, nonce, receiver.encode() + b"\0" + aead.encode(), SA_KEY_BYTES)


def _digest(*parts: bytes) -> str:
    return hashlib.sha256(b"".join(parts)).hexdigest()


class DerivedKeys:
    """The SA keys of one direction, each confirmed rather than derived again when it is
    installed already and recorded as what its inputs derive.

    A run that changes nothing must check every installed key; an HKDF per SA was the most of
    what it spent at 1000 peers. The record maps a digest of the inputs (session key, nonce,
    receiver) to a digest of the key they derived: two SHA-256 confirm an installed key, and
    neither digest gives a key or anything to make one. ``installed``: (dst, SPI) -> the key
    the kernel holds for that SA of this mesh."""

    def __init__(self, recorded: dict[str, str], installed: dict[tuple[str, int], bytes]):
        self.recorded, self.installed = recorded, installed
        self.used: dict[str, str] = {}  # what this run derived or confirmed: the next record

    def key(self, session: bytes, nonce: bytes, receiver: str, aead: str,
            sa: tuple[str, int]) -> bytes:
        """The key of SA ``sa`` (dst, SPI): keys.sa_key(session, nonce, receiver, aead)."""
        inputs = _digest(b"weave.fastdp SA key inputs\0", session, nonce, receiver.encode(),
                         b"\0", aead.encode())
        key = self.installed.get(sa)
        digest = None if key is None else _digest(key)
        if digest is None or self.recorded.get(inputs) != digest:
            key = sa_key(session, nonce, receiver, aead)
            digest = _digest(key)
        self.used[inputs] = digest
        return key


def sent_digest(key: bytes) -> str:
    """Names an outbound key this host installed (outbound-sent.json) without giving it."""
    return _digest(b"weave.fastdp sent key\0", key)


def public_key_text(private: X25519PrivateKey) -> str:
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def decode_public_key(text: str) -> X25519PublicKey:
    try:
        raw = base64.b64decode(text, validate=True)
        return X25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise KeyMaterialError(f"not a base64 X25519 public key ({exc})") from None


def _seal_context(mesh: str, epoch: int, sender: str, receiver: str, spi: int) -> bytes:
    """The seal's additional data: each field length-prefixed (so no two tuples of names
    encode alike, whatever the names hold), epoch and SPI as fixed-size integers."""
    def field(text: str) -> bytes:
        raw = text.encode()
        return len(raw).to_bytes(4, "big") + raw
    return (b"weave.fastdp seal v2\0" + field(mesh) + epoch.to_bytes(8, "big") + field(sender)
            + field(receiver) + spi.to_bytes(4, "big"))


def seal_nonce(session: bytes, nonce: bytes, *, mesh, epoch, sender, receiver, spi) -> str:
    """The nonce of direction sender->receiver, sealed for the sender; bound to its SPI."""
    iv = secrets.token_bytes(12)
    sealing_key = hkdf_sha256(session, None, _SEAL_INFO, 32)
    sealed = AESGCM(sealing_key).encrypt(iv, nonce, _seal_context(mesh, epoch, sender, receiver, spi))
    return base64.b64encode(iv + sealed).decode()


def open_nonce(session: bytes, sealed: str, *, mesh, epoch, sender, receiver, spi) -> bytes:
    try:
        blob = base64.b64decode(sealed, validate=True)
        sealing_key = hkdf_sha256(session, None, _SEAL_INFO, 32)
        context = _seal_context(mesh, epoch, sender, receiver, spi)
        return AESGCM(sealing_key).decrypt(blob[:12], blob[12:], context)
    except (ValueError, InvalidTag):
        raise KeyMaterialError(
            f"the nonce {receiver} published for {sender} (epoch {epoch}) does not open: "
            "different mesh password, stale public key, or tampered in transit"
        ) from None


def new_spi(in_use: set[int]) -> int:
    """A random SPI outside the reserved range and not used by any SA towards this host."""
    while True:
        spi = secrets.randbelow(SPI_MAX - SPI_MIN + 1) + SPI_MIN
        if spi not in in_use:
            return spi


class StateDir:
    """The host's root-only state directory (0700; files 0600).

    identity.key     raw X25519 private key
    shared-secrets.json  {"identity": own public key, "peers": {"<peer public key>": hex}}
    inbound.json     {"epochs": {"<epoch>": {"<sender>": {"spi": int, "nonce": hex}}}}
    inbound-half.json  {"fingerprint": hex, "steps": {"<step>": options without password}}
    derived-keys.json  {"inbound"|"outbound": {"<digest of an SA key's inputs>": digest of the key}}
    outbound-sent.json  {"<digest of an outbound SA's key>": {"peer", "dst", "spi"}}
    """

    def __init__(self, path: str):
        self.path = path

    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def exists(self) -> bool:
        return os.path.isdir(self.path)

    def identity(self) -> X25519PrivateKey | None:
        try:
            with open(self._file("identity.key"), "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        if len(raw) != 32:
            raise KeyMaterialError(f"{self._file('identity.key')} is damaged ({len(raw)} bytes, want 32)")
        return X25519PrivateKey.from_private_bytes(raw)

    def create_identity(self) -> X25519PrivateKey:
        private = X25519PrivateKey.generate()
        raw = private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        self._write("identity.key", raw)
        return private

    def sessions(self, password: str) -> Sessions | None:
        """Session keys under this host's identity (None without one). Shared secrets recorded
        under another identity, or unreadable, are made again."""
        private = self.identity()
        if private is None:
            return None
        try:
            with open(self._file("shared-secrets.json")) as f:
                recorded = json.load(f)
        except (FileNotFoundError, ValueError):
            recorded = {}
        own = public_key_text(private)
        known = dict(recorded.get("peers", {})) if recorded.get("identity") == own else {}
        return Sessions(private, password, known)

    def save_sessions(self, sessions: Sessions) -> None:
        """Record the shared secrets a run has newly made (nothing if it made none)."""
        if sessions.learned:
            record = {"identity": public_key_text(sessions.private), "peers": sessions.known}
            self._write("shared-secrets.json", json.dumps(record, sort_keys=True).encode())
            sessions.learned = False

    def derived_keys(self, direction: str, installed: dict[tuple[str, int], bytes]) -> DerivedKeys:
        """The record of ``direction``'s SA keys (empty if none or unreadable: then derived)."""
        return DerivedKeys(self._derived_keys_record().get(direction, {}), installed)

    def save_derived_keys(self, direction: str, derived: DerivedKeys) -> None:
        """Record the keys of ``direction`` a run derived or confirmed, those alone (an SA no
        longer wanted leaves the record with it); nothing if the record holds just those."""
        if derived.used != derived.recorded:
            record = {**self._derived_keys_record(), direction: derived.used}
            self._write("derived-keys.json", json.dumps(record, sort_keys=True).encode())

    def _derived_keys_record(self) -> dict:
        try:
            with open(self._file("derived-keys.json")) as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return {}

    def inbound(self) -> dict:
        try:
            with open(self._file("inbound.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            return {"epochs": {}}

    def save_inbound(self, data: dict) -> None:
        self._write("inbound.json", json.dumps(data, sort_keys=True).encode())

    def sent(self) -> dict:
        """The outbound SAs this host installed: {digest of the key: {peer, dst, spi}}. A key
        recorded here is never installed again (its sequence numbers would start over)."""
        try:
            with open(self._file("outbound-sent.json")) as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return {}

    def save_sent(self, record: dict) -> None:
        self._write("outbound-sent.json", json.dumps(record, sort_keys=True).encode())

    def inbound_half(self) -> dict | None:
        """The inbound half's last record, or None (none yet, or unreadable: then it runs)."""
        try:
            with open(self._file("inbound-half.json")) as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return None

    def save_inbound_half(self, record: dict) -> None:
        self._write("inbound-half.json", json.dumps(record, sort_keys=True).encode())

    def _write(self, name: str, data: bytes) -> None:
        """Atomic write of a 0600 file in a 0700 directory."""
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        os.chmod(self.path, 0o700)
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=f".{name}.")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._file(name))
        except BaseException:
            os.unlink(tmp)
            raise
