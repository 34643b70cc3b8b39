"""The receiver's nonces and SPIs, carried sealed to the sender, give both ends the same SA."""

import dataclasses

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
        epochs={"a": [epoch]}, aead="rfc4106(gcm(aes))")
    outbound, _ = mesh_keys.outbound_sas(
        sessions=_sessions(private["a"]), derived_keys=keys.DerivedKeys({}, {}), mesh="m",
        local_name="a", local_address=A,
        peers=[{"name": "b", "address": B, "public_key": keys.public_key_text(private["b"]),
                "published": _b_publishes_for_a(private, table, [epoch])}],
        epochs={"b": [epoch]}, aead="rfc4106(gcm(aes))")
    return inbound[0], outbound[0]


def test_inbound_sa_on_b_and_outbound_sa_on_a_agree_on_spi_and_key():
    private = _peers()
    table, changes = _ensure({}, epoch=1)
    assert len(changes) == 1 and "for a (epoch 1)" in changes[0]
    inbound, outbound = _sa_pair(private, table, 1)
    assert (inbound.src, inbound.dst) == (outbound.src, outbound.dst) == (A, B)
    assert inbound.spi == outbound.spi and inbound.key == outbound.key


def _ensure(table, epoch, senders=None, retain=(), retire=False, spis_in_use=(), spent=None):
    return mesh_keys.ensure_nonces(
        table, epoch=epoch, senders=senders or {"a": None}, retain=list(retain),
        allocate_spi=lambda sender, recorded: keys.new_spi(set(spis_in_use) | recorded),
        spent=spent or (lambda sender, entry: None), purge=True, retire=retire)


def _held(entry, **changed):
    """The SA the kernel holds for ``entry`` as recorded, with ``changed`` fields."""
    from ansible_collections.weave.fastdp.plugins.module_utils.xfrm import esp_transport_sa
    sa = esp_transport_sa(src=A, dst=B, spi=entry["spi"], reqid=7, aead="rfc4106(gcm(aes))",
                          key=bytes(range(36)), replay_window=256)
    return dataclasses.replace(sa, **changed)


def test_a_nonce_whose_sa_the_kernel_lost_is_never_used_again():
    """The finding: after a reboot or `ip xfrm state flush` the same key and SPI came back, so
    ESP captured earlier was accepted again. Now the entry gets a fresh nonce and SPI."""
    private = _peers()
    table, _ = _ensure({}, epoch=1, senders={"a": None, "c": None})
    for entry in table["epochs"]["1"].values():
        entry["installed"] = mesh_keys.installed_record(_held(entry))
    kernel = {"c": _held(table["epochs"]["1"]["c"])}  # a's SA is gone, c's still held

    def spent(sender, entry):
        return mesh_keys.spent_reason(entry, kernel.get(sender))

    again, changes = _ensure(table, epoch=1, senders={"a": None, "c": None}, spent=spent)
    assert again["epochs"]["1"]["c"] == table["epochs"]["1"]["c"], "c's SA is held: kept"
    old, new = table["epochs"]["1"]["a"], again["epochs"]["1"]["a"]
    assert new["spi"] != old["spi"] and new["nonce"] != old["nonce"] and "installed" not in new
    assert len(changes) == 1 and changes[0].startswith(f"~ fresh nonce and inbound SPI {new['spi']:#010x} for a (epoch 1)")
    assert "the kernel no longer holds its SA" in changes[0]
    assert _sa_pair(private, again, 1)[0].key != _sa_pair(private, table, 1)[0].key


def test_spent_reason_keeps_a_nonce_only_while_the_kernel_holds_its_very_sa():
    entry = {"spi": 0x1234, "nonce": "00" * 32}
    assert mesh_keys.spent_reason(entry, None) is None, "never installed: it may be, once"
    assert mesh_keys.spent_reason(entry, _held(entry, larval=True)) is None
    assert mesh_keys.spent_reason(entry, _held(entry)) == \
        "the kernel holds an SA in its SPI that was not installed for it"
    entry["installed"] = mesh_keys.installed_record(_held(entry))
    assert mesh_keys.spent_reason(entry, _held(entry)) is None
    assert mesh_keys.spent_reason(entry, None) == "the kernel no longer holds its SA"
    assert mesh_keys.spent_reason(entry, _held(entry, larval=True)) == "the kernel no longer holds its SA"
    assert mesh_keys.spent_reason(entry, _held(entry, key=bytes(36))) == \
        "the kernel's SA is not the one installed for it"
    assert mesh_keys.spent_reason(entry, _held(entry, replay_window=64)) == \
        "the kernel's SA is not the one installed for it"
    same = {"src": A, "reqid": 7, "aead": "rfc4106(gcm(aes))", "replay_window": 256}
    assert mesh_keys.spent_reason(entry, _held(entry), same) is None
    assert mesh_keys.spent_reason(entry, _held(entry), {**same, "replay_window": 128}) == \
        "this run wants its SA with another replay_window"
    assert mesh_keys.spent_reason(entry, _held(entry), {**same, "aead": "rfc7539esp(chacha20,poly1305)"}) == \
        "this run wants its SA with another aead"
    assert mesh_keys.spent_reason(entry, _held(entry), {**same, "key": "another password's"}) == \
        "this run wants its SA with another key"


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
