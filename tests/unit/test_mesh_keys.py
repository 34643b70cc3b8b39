"""The receiver's nonces and SPIs, carried sealed to the sender, give both ends the same SA."""

import pytest
from ansible_collections.weave.fastdp.plugins.module_utils import keys, mesh_keys
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

pytestmark = pytest.mark.unit

A, B = "198.51.100.11", "198.51.100.12"


def _peers():
    return {"a": X25519PrivateKey.generate(), "b": X25519PrivateKey.generate()}


def _sessions(private):
    return keys.Sessions(private, "pw", {})


def _b_publishes_for_a(private, table, epochs):
    return mesh_keys.publish(table, sessions=_sessions(private["b"]), mesh="m", receiver="b",
                             senders={"a": keys.public_key_text(private["a"])}, epochs=epochs)["a"]


def _sa_pair(private, table, epoch):
    """(B's inbound SA from A, A's outbound SA to B) of ``epoch``."""
    inbound, _ = mesh_keys.inbound_sas(
        table, sessions=_sessions(private["b"]), derived_keys=keys.DerivedKeys({}, {}),
        local_name="b", local_address=B,
        peers=[{"name": "a", "address": A, "public_key": keys.public_key_text(private["a"])}],
        epochs={"a": [epoch]})
    outbound, _ = mesh_keys.outbound_sas(
        sessions=_sessions(private["a"]), derived_keys=keys.DerivedKeys({}, {}), mesh="m",
        local_name="a", local_address=A,
        peers=[{"name": "b", "address": B, "public_key": keys.public_key_text(private["b"]),
                "published": _b_publishes_for_a(private, table, [epoch])}],
        epochs={"b": [epoch]})
    return inbound[0], outbound[0]


def test_inbound_sa_on_b_and_outbound_sa_on_a_agree_on_spi_and_key():
    private = _peers()
    table, changes = _ensure({}, epoch=1)
    assert len(changes) == 1 and "for a (epoch 1)" in changes[0]
    inbound, outbound = _sa_pair(private, table, 1)
    assert (inbound.src, inbound.dst) == (outbound.src, outbound.dst) == (A, B)
    assert inbound.spi == outbound.spi and inbound.key == outbound.key


def _ensure(table, epoch, senders=None, retain=(), retire=False, spis_in_use=()):
    return mesh_keys.ensure_nonces(table, epoch=epoch, senders=senders or {"a": None},
                                   retain=list(retain), spis_in_use=lambda: set(spis_in_use), purge=True,
                                   retire=retire)


def test_a_rerun_that_makes_no_nonce_reads_no_spi_from_the_kernel():
    table, _ = _ensure({}, epoch=1, senders={"a": None, "c": None})

    def no_dump():
        raise AssertionError("the SA dump was read although no inbound SPI was made")

    again, changes = mesh_keys.ensure_nonces(table, epoch=1, senders={"a": None, "c": None},
                                             retain=[], spis_in_use=no_dump, purge=True,
                                             retire=False)
    assert changes == [] and again == table


def test_a_rerun_keeps_nonces_and_a_new_epoch_makes_new_keys():
    private = _peers()
    table, _ = _ensure({}, epoch=1)
    again, changes = _ensure(table, epoch=1)
    assert changes == [] and again == table
    rotated, _ = _ensure(table, epoch=2)
    old, new = _sa_pair(private, rotated, 1)[0], _sa_pair(private, rotated, 2)[0]
    assert old.key == _sa_pair(private, table, 1)[0].key
    assert new.key != old.key and new.spi != old.spi


def test_old_epoch_stays_until_its_sender_switched_and_retire_is_asked():
    table, _ = _ensure({}, epoch=1, senders={"a": None, "c": None})
    rotated, _ = _ensure(table, epoch=2, senders={"a": 1, "c": 1})
    assert sorted(rotated["epochs"]) == ["1", "2"]
    not_yet, changes = _ensure(rotated, epoch=2, senders={"a": 2, "c": 1})
    assert changes == [] and not_yet == rotated
    retired, changes = _ensure(rotated, epoch=2, senders={"a": 2, "c": 1}, retire=True)
    assert sorted(retired["epochs"]["1"]) == ["c"] and sorted(retired["epochs"]["2"]) == ["a", "c"]
    assert len(changes) == 1 and "of a (epoch 1): switched to epoch 2" in changes[0]


def test_lowering_the_epoch_is_refused():
    table, _ = _ensure({}, epoch=3)
    with pytest.raises(mesh_keys.MeshError, match="epoch: 2 is lower than the epoch 3"):
        _ensure(table, epoch=2)


def test_purge_drops_removed_senders_but_keeps_peers_outside_the_run():
    table, _ = _ensure({}, epoch=1, senders={"a": None, "c": None, "d": None})
    after, changes = _ensure(table, epoch=1, retain=["d"])
    assert sorted(after["epochs"]["1"]) == ["a", "d"]
    assert len(changes) == 1 and "of c (epoch 1): no longer a peer" in changes[0]


def test_spis_are_unique_towards_this_host():
    table, _ = _ensure({}, epoch=1, senders={f"p{i}": None for i in range(50)},
                       spis_in_use=range(0x100, 0x1000))
    spis = [e["spi"] for e in table["epochs"]["1"].values()]
    assert len(set(spis)) == 50 and min(spis) >= 0x1000


def test_published_entries_hold_no_nonce():
    private = _peers()
    table, _ = _ensure({}, epoch=1)
    text = repr(_b_publishes_for_a(private, table, [1]))
    assert table["epochs"]["1"]["a"]["nonce"] not in text
