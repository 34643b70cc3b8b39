"""Key derivation as Weave forms it, and the host's state directory."""

import os
import stat

import pytest
from ansible_collections.weave.fastdp.plugins.module_utils import keys
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

pytestmark = pytest.mark.unit
GCM, CHACHA = "rfc4106(gcm(aes))", "rfc7539esp(chacha20,poly1305)"

RFC5869_SHA256 = [  # (IKM, salt, info, L, OKM) of RFC 5869 appendix A, test cases 1-3
    ("0b" * 22, "000102030405060708090a0b0c", "f0f1f2f3f4f5f6f7f8f9", 42,
     "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"),
    ("".join(f"{i:02x}" for i in range(0x50)),
     "".join(f"{i:02x}" for i in range(0x60, 0xB0)),
     "".join(f"{i:02x}" for i in range(0xB0, 0x100)), 82,
     ("b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e"
     "590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87")),
    ("0b" * 22, "", "", 42,
     "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"),
]


def _session(private, peer_public, password):
    return keys.session_key(keys.shared_secret(private, peer_public), password)


@pytest.mark.parametrize("ikm,salt,info,length,okm", RFC5869_SHA256)
def test_hkdf_matches_rfc5869_sha256_vectors(ikm, salt, info, length, okm):
    derived = keys.hkdf_sha256(bytes.fromhex(ikm), bytes.fromhex(salt), bytes.fromhex(info), length)
    assert derived.hex() == okm


def _pair():
    return X25519PrivateKey.generate(), X25519PrivateKey.generate()


def test_key_of_direction_a_to_b_is_the_same_on_a_and_on_b():
    a, b = _pair()
    nonce = os.urandom(32)
    on_a = keys.sa_key(_session(a, keys.public_key_text(b), "pw"), nonce, "b", GCM)
    on_b = keys.sa_key(_session(b, keys.public_key_text(a), "pw"), nonce, "b", GCM)
    assert on_a == on_b
    assert len(on_a) == 36


def test_the_two_directions_and_a_new_epoch_nonce_give_different_keys():
    a, b = _pair()
    session = _session(a, keys.public_key_text(b), "pw")
    nonce, next_epoch_nonce = os.urandom(32), os.urandom(32)
    a_to_b = keys.sa_key(session, nonce, "b", GCM)
    assert keys.sa_key(session, nonce, "a", GCM) != a_to_b
    assert keys.sa_key(session, next_epoch_nonce, "b", GCM) != a_to_b


def test_the_password_is_part_of_the_session_key():
    a, b = _pair()
    assert _session(a, keys.public_key_text(b), "pw") != _session(
        a, keys.public_key_text(b), "other")


def test_a_sealed_nonce_opens_only_for_the_same_pair_password_and_spi():
    a, b = _pair()
    on_b = _session(b, keys.public_key_text(a), "pw")
    on_a = _session(a, keys.public_key_text(b), "pw")
    nonce = os.urandom(32)
    where = {"mesh": "m", "epoch": 1, "sender": "a", "receiver": "b", "spi": 0x1234}
    sealed = keys.seal_nonce(on_b, nonce, **where)
    assert nonce.hex() not in sealed and nonce not in sealed.encode()
    assert keys.open_nonce(on_a, sealed, **where) == nonce
    with pytest.raises(keys.KeyMaterialError, match="does not open"):
        keys.open_nonce(on_a, sealed, **{**where, "spi": 0x1235})
    wrong_password = _session(a, keys.public_key_text(b), "not-pw")
    with pytest.raises(keys.KeyMaterialError, match="does not open"):
        keys.open_nonce(wrong_password, sealed, **where)


def test_state_files_are_root_only(tmp_path):
    state = keys.StateDir(str(tmp_path / "state"))
    private = state.create_identity()
    state.save_inbound({"epochs": {"1": {"b": {"spi": 0x100, "nonce": "00" * 32}}}})
    assert stat.S_IMODE(os.stat(state.path).st_mode) == 0o700
    for name in ("identity.key", "inbound.json"):
        assert stat.S_IMODE(os.stat(os.path.join(state.path, name)).st_mode) == 0o600
    assert keys.public_key_text(state.identity()) == keys.public_key_text(private)
    assert sorted(os.listdir(state.path)) == ["identity.key", "inbound.json"]


class _NoExchange:
    """A private key that fails any X25519 exchange: proves a session key came from the record."""

    def exchange(self, _peer):
        raise AssertionError("X25519 was computed again")


def test_a_shared_secret_is_computed_once_per_peer_and_the_record_holds_no_password(tmp_path):
    password = "mesh-password!"  # '-' and '!' never occur in the record's base64, hex or JSON
    state = keys.StateDir(str(tmp_path / "state"))
    private, peer = state.create_identity(), keys.public_key_text(X25519PrivateKey.generate())
    first = state.sessions(password)
    assert first.key(peer) == _session(private, peer, password)
    state.save_sessions(first)
    record = (tmp_path / "state" / "shared-secrets.json").read_bytes()
    assert stat.S_IMODE(os.stat(tmp_path / "state" / "shared-secrets.json").st_mode) == 0o600
    assert password.encode() not in record and first.key(peer).hex().encode() not in record

    again = state.sessions(password)
    again.private = _NoExchange()
    assert again.key(peer) == _session(private, peer, password)
    assert again.key(peer) != state.sessions("another password").key(peer)


@pytest.mark.parametrize("spoil", ["new identity", "damaged record"])
def test_shared_secrets_of_another_identity_or_a_damaged_record_are_made_again(tmp_path, spoil):
    state = keys.StateDir(str(tmp_path / "state"))
    state.create_identity()
    peer = keys.public_key_text(X25519PrivateKey.generate())
    sessions = state.sessions("pw")
    sessions.key(peer)
    state.save_sessions(sessions)
    if spoil == "new identity":
        private = state.create_identity()
    else:
        private = state.identity()
        (tmp_path / "state" / "shared-secrets.json").write_text("{not json")
    again = state.sessions("pw")
    assert again.known == {}
    assert again.key(peer) == _session(private, peer, "pw") and again.learned


SA_AT = ("198.51.100.11", 0x2000)  # (dst, SPI) of the SA whose key the record confirms


def _record_one_key(state, session, nonce):
    """A real run that derives the key of SA_AT and records it; the key."""
    derived = state.derived_keys("inbound", {})
    key = derived.key(session, nonce, "h1", GCM, SA_AT)
    state.save_derived_keys("inbound", derived)
    return key


def _no_hkdf(*_):
    raise AssertionError("the SA key was derived again")


def test_an_installed_key_recorded_as_its_inputs_derive_is_confirmed_without_hkdf(
        tmp_path, monkeypatch):
    state = keys.StateDir(str(tmp_path / "state"))
    session, nonce = bytes(range(32)), bytes(32)
    key = _record_one_key(state, session, nonce)
    assert key == keys.sa_key(session, nonce, "h1", GCM)
    path = tmp_path / "state" / "derived-keys.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    record = path.read_bytes()
    assert key.hex().encode() not in record and session.hex().encode() not in record

    monkeypatch.setattr(keys, "sa_key", _no_hkdf)
    assert state.derived_keys("inbound", {SA_AT: key}).key(session, nonce, "h1", GCM, SA_AT) == key


@pytest.mark.parametrize("change", ["another key installed", "another session key",
                                    "another nonce", "the outbound record"])
def test_a_key_is_derived_again_unless_installed_and_recorded_for_the_same_inputs(tmp_path,
                                                                                   change):
    state = keys.StateDir(str(tmp_path / "state"))
    session, nonce = bytes(range(32)), bytes(32)
    key = _record_one_key(state, session, nonce)
    installed, direction = key, "inbound"
    if change == "another key installed":
        installed = bytes(36)
    elif change == "another session key":
        session = bytes(range(1, 33))
    elif change == "another nonce":
        nonce = bytes(range(32))
    else:
        direction = "outbound"
    derived = state.derived_keys(direction, {SA_AT: installed})
    assert derived.key(session, nonce, "h1", GCM, SA_AT) == keys.sa_key(session, nonce, "h1", GCM)


def test_the_record_keeps_the_keys_of_the_last_run_and_the_other_direction(tmp_path):
    state = keys.StateDir(str(tmp_path / "state"))
    _record_one_key(state, bytes(range(32)), bytes(32))
    outbound = state.derived_keys("outbound", {})
    outbound.key(bytes(32), bytes(32), "h2", GCM, ("198.51.100.12", 0x3000))
    state.save_derived_keys("outbound", outbound)
    inbound = state.derived_keys("inbound", {})
    state.save_derived_keys("inbound", inbound)  # a run with no inbound SA left
    assert state.derived_keys("inbound", {}).recorded == {}
    assert state.derived_keys("outbound", {}).recorded == outbound.used != {}


def test_new_spi_avoids_reserved_and_used_values():
    in_use = set(range(0x100, 0x200))
    for _ in range(200):
        spi = keys.new_spi(in_use)
        assert spi >= 0x100 and spi not in in_use


def test_the_key_derivation_is_exactly_the_documented_one():
    """An independent computation of the documented formula (module docstring of keys)."""
    import hashlib
    import hmac

    a, b = _pair()
    nonce = bytes(range(32))
    shared = a.exchange(b.public_key())
    session = hashlib.sha256(shared + b"pw").digest()
    prk = hmac.new(nonce, session, hashlib.sha256).digest()  # HKDF-Extract(salt=nonce)
    info = b"b" + b"\0" + GCM.encode()
    t1 = hmac.new(prk, info + b"\x01", hashlib.sha256).digest()
    t2 = hmac.new(prk, t1 + info + b"\x02", hashlib.sha256).digest()
    assert keys.sa_key(_session(a, keys.public_key_text(b), "pw"), nonce, "b", GCM) == (t1 + t2)[:36]


def test_the_cipher_is_an_input_of_the_key():
    a, b = _pair()
    session, nonce = _session(a, keys.public_key_text(b), "pw"), os.urandom(32)
    assert keys.sa_key(session, nonce, "b", GCM) != keys.sa_key(session, nonce, "b", CHACHA)


@pytest.mark.parametrize("raw", [bytes(32), b"\x01" + bytes(31), bytes.fromhex(
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")])
def test_a_low_order_public_key_is_refused_with_a_clear_error(raw):
    import base64

    with pytest.raises(keys.KeyMaterialError, match="public key of low order"):
        keys.shared_secret(X25519PrivateKey.generate(), base64.b64encode(raw).decode())


def test_the_seals_additional_data_tells_apart_names_that_concatenate_alike():
    """The finding: `mesh/epoch/sender->receiver/spi` read the same for a->b->c as sender
    `a->b`, receiver `c` and for sender `a`, receiver `b->c`."""
    context = keys._seal_context
    assert context("m", 1, "a->b", "c", 0x1234) != context("m", 1, "a", "b->c", 0x1234)
    assert context("m/1", 1, "a", "b", 0x1234) != context("m", 11, "a", "b", 0x1234)
    a, b = _pair()
    on_b, on_a = (_session(b, keys.public_key_text(a), "pw"),
                  _session(a, keys.public_key_text(b), "pw"))
    sealed = keys.seal_nonce(on_b, b"n" * 32, mesh="m", epoch=1, sender="a->b", receiver="c", spi=0x1234)
    with pytest.raises(keys.KeyMaterialError, match="does not open"):
        keys.open_nonce(on_a, sealed, mesh="m", epoch=1, sender="a", receiver="b->c", spi=0x1234)
