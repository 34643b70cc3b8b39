"""The receiver's nonces and SPIs, carried sealed to the sender, give both ends the same SA."""

import pytest
from ansible_collections.weave.fastdp.plugins.module_utils import keys, mesh_keys
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

pytestmark = pytest.mark.unit

A, B = "198.51.100.11", "198.51.100.12"


def _peers():
    return {"a": X25519PrivateKey.generate(), "b": X25519PrivateKey.generate()}


def _b_publishes_for_a(private, table, epochs):
    return mesh_keys.publish(table, private=private["b"], password="pw", mesh="m", receiver="b",
                             senders={"a": keys.public_key_text(private["a"])}, epochs=epochs)["a"]


def _sa_pair(private, table, epoch):
    """(B's inbound SA from A, A's outbound SA to B) of ``epoch``."""
    inbound, _ = mesh_keys.inbound_sas(
        table, private=private["b"], password="pw", local_name="b", local_address=B,
        peers=[{"name": "a", "address": A, "public_key": keys.public_key_text(private["a"])}],
        epochs=[epoch])
    outbound, _ = mesh_keys.outbound_sas(
        private=private["a"], password="pw", mesh="m", local_name="a", local_address=A,
        peers=[{"name": "b", "address": B, "public_key": keys.public_key_text(private["b"]),
                "published": _b_publishes_for_a(private, table, [epoch])}],
        epochs=[epoch])
    return inbound[0], outbound[0]


def test_inbound_sa_on_b_and_outbound_sa_on_a_agree_on_spi_and_key():
    private = _peers()
    table, changes = mesh_keys.ensure_nonces({}, epoch=1, keep_epochs=[], senders=["a"], retain=[],
                                             spis_in_use=set(), purge=True)
    assert len(changes) == 1 and "for a (epoch 1)" in changes[0]
    inbound, outbound = _sa_pair(private, table, 1)
    assert (inbound.src, inbound.dst) == (outbound.src, outbound.dst) == (A, B)
    assert inbound.spi == outbound.spi and inbound.key == outbound.key


def test_a_rerun_keeps_nonces_and_a_new_epoch_makes_new_keys():
    private = _peers()
    table, _ = mesh_keys.ensure_nonces({}, epoch=1, keep_epochs=[], senders=["a"], retain=[],
                                       spis_in_use=set(), purge=True)
    again, changes = mesh_keys.ensure_nonces(table, epoch=1, keep_epochs=[], senders=["a"],
                                             retain=[], spis_in_use=set(), purge=True)
    assert changes == [] and again == table
    rotated, _ = mesh_keys.ensure_nonces(table, epoch=2, keep_epochs=[1], senders=["a"], retain=[],
                                         spis_in_use=set(), purge=True)
    old, new = _sa_pair(private, rotated, 1)[0], _sa_pair(private, rotated, 2)[0]
    assert old.key == _sa_pair(private, table, 1)[0].key
    assert new.key != old.key and new.spi != old.spi


def test_lowering_the_epoch_is_refused():
    table, _ = mesh_keys.ensure_nonces({}, epoch=3, keep_epochs=[], senders=["a"], retain=[],
                                       spis_in_use=set(), purge=True)
    with pytest.raises(mesh_keys.MeshError, match="epoch: 2 is lower than the epoch 3"):
        mesh_keys.ensure_nonces(table, epoch=2, keep_epochs=[], senders=["a"], retain=[],
                                spis_in_use=set(), purge=True)


def test_purge_drops_removed_senders_but_keeps_peers_outside_the_run():
    table, _ = mesh_keys.ensure_nonces({}, epoch=1, keep_epochs=[], senders=["a", "c", "d"],
                                       retain=[], spis_in_use=set(), purge=True)
    after, changes = mesh_keys.ensure_nonces(table, epoch=1, keep_epochs=[], senders=["a"],
                                             retain=["d"], spis_in_use=set(), purge=True)
    assert sorted(after["epochs"]["1"]) == ["a", "d"]
    assert len(changes) == 1 and "of c (epoch 1)" in changes[0]


def test_published_entries_hold_no_nonce():
    private = _peers()
    table, _ = mesh_keys.ensure_nonces({}, epoch=1, keep_epochs=[], senders=["a"], retain=[],
                                       spis_in_use=set(), purge=True)
    text = repr(_b_publishes_for_a(private, table, [1]))
    assert table["epochs"]["1"]["a"]["nonce"] not in text
