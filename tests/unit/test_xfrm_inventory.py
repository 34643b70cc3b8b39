"""Deciding what changes: ownership by reqid, retain, purge, make before break."""

import dataclasses

import pytest
from ansible_collections.weave.fastdp.plugins.module_utils import xfrm
from ansible_collections.weave.fastdp.plugins.module_utils import xfrm_inventory as inventory

pytestmark = pytest.mark.unit

LOCAL, PEER, GONE, KEPT = "198.51.100.11", "198.51.100.12", "198.51.100.13", "198.51.100.14"
REQID = 4242


def _sa(src, dst, spi, key=bytes(36), reqid=REQID):
    return xfrm.esp_transport_sa(src=src, dst=dst, spi=spi, reqid=reqid,
                                 aead="rfc4106(gcm(aes))", key=key, replay_window=256)


def _inbound_changes(have, wanted, purge=True):
    return inventory.sa_changes(have, wanted, direction="inbound", local_address=LOCAL,
                                peers=[{"name": "h2", "address": PEER}], reqid=REQID,
                                retain=[KEPT], purge=purge)


def test_only_our_inbound_sas_change_and_retained_peers_are_left_alone():
    wanted = [inventory.WantedSA("h2", 2, _sa(PEER, LOCAL, 0x2000)),
              inventory.WantedSA("h2", 3, _sa(PEER, LOCAL, 0x3000, key=b"k" * 36))]
    have = [_sa(PEER, LOCAL, 0x2000),                      # as wanted
            _sa(PEER, LOCAL, 0x3000),                      # other key: replaced
            _sa(PEER, LOCAL, 0x1000),                      # old epoch of a declared peer
            _sa(GONE, LOCAL, 0x4000),                      # undeclared peer: purge
            _sa(KEPT, LOCAL, 0x5000),                      # peer outside this run
            _sa(GONE, LOCAL, 0x6000, reqid=99),            # somebody else's
            _sa(LOCAL, PEER, 0x7000)]                      # ours, but outbound
    lines = [str(c) for c in _inbound_changes(have, wanted)]
    expected = ["~ inbound SA from h2 (epoch 3): 198.51.100.12 -> 198.51.100.11 spi 0x00003000",
                ("- inbound SA from h2 (epoch no longer wanted): 198.51.100.12 -> 198.51.100.11 "
                "spi 0x00001000"),
                ("- inbound SA from 198.51.100.13 (not a peer): 198.51.100.13 -> 198.51.100.11 "
                "spi 0x00004000")]
    assert [line[:len(want)] for line, want in zip(lines, expected, strict=True)] == expected
    assert lines[0].endswith(f"changed: key {have[1].fingerprint} -> {wanted[1].sa.fingerprint}")
    without_purge = [str(c) for c in _inbound_changes(have, wanted, purge=False)]
    assert without_purge == lines[:2]


def test_pending_sas_are_reported_and_never_applied():
    changes = _inbound_changes([], [inventory.WantedSA("h2", 1, None)])
    assert [str(c) for c in changes] == [
        "+ inbound SA from h2 (epoch 1): key not made yet (check mode)"]
    calls = _Recorder()
    inventory.apply(calls, changes)
    assert calls == []


class _Recorder(list):
    def __getattr__(self, name):
        return lambda obj: self.append((name, obj.spi if isinstance(obj, xfrm.SA) else obj.dir))


def test_apply_makes_before_it_breaks():
    old, new, changed = _sa(PEER, LOCAL, 0x1000), _sa(PEER, LOCAL, 0x2000), _sa(PEER, LOCAL, 0x3000)
    changes = [inventory.Change("-", "old", before=old),
               inventory.Change("~", "changed", before=changed,
                                after=dataclasses.replace(changed, key=b"k" * 36)),
               inventory.Change("+", "new", after=new)]
    calls = _Recorder()
    inventory.apply(calls, changes)
    assert calls == [("add_sa", 0x2000), ("delete_sa", 0x3000), ("add_sa", 0x3000),
                     ("delete_sa", 0x1000)]


def test_outbound_view_is_the_newest_epoch_per_peer():
    wanted = [inventory.WantedSA("h2", 1, _sa(LOCAL, PEER, 0x1000)),
              inventory.WantedSA("h2", 2, _sa(LOCAL, PEER, 0x2000)),
              inventory.WantedSA("h2", 3, None),
              inventory.WantedSA("h3", 1, _sa(LOCAL, GONE, 0x3000))]
    assert inventory.outbound_view(wanted) == (
        {"h2": {"address": PEER, "spi": 0x2000}, "h3": {"address": GONE, "spi": 0x3000}},
        {"h2": 2, "h3": 1})


def _declared(dst, spi=0x1000):
    return {"src": LOCAL, "dst": dst, "proto": "udp", "direction": "out", "mark": 0x20000,
            "mask": None, "template": {"src": LOCAL, "dst": dst, "spi": spi, "reqid": None}}


def test_policies_ours_by_template_reqid():
    wanted = inventory.wanted_policies([_declared(PEER, 0x2000)], REQID)
    assert wanted[0].mask == 0x20000 and wanted[0].templates[0].reqid == REQID
    ours_old = dataclasses.replace(wanted[0], templates=(
        dataclasses.replace(wanted[0].templates[0], spi=0x1000),), index=9)
    stale = inventory.wanted_policies([_declared(GONE)], REQID)[0]
    retained = inventory.wanted_policies([_declared(KEPT)], REQID)[0]
    foreign = inventory.wanted_policies([_declared(GONE)], 99)[0]
    foreign = dataclasses.replace(foreign, selector=dataclasses.replace(foreign.selector, dst_len=24))
    changes = inventory.policy_changes([ours_old, stale, retained, foreign], wanted, reqid=REQID,
                                       retain=[KEPT], purge=True)
    assert [(c.sign, c.before, c.after) for c in changes] == [
        ("~", ours_old, wanted[0]), ("-", stale, None)]
    with pytest.raises(xfrm.XfrmError, match=r"^policies\[0\]: a policy of another owner"):
        inventory.policy_changes([dataclasses.replace(foreign, selector=wanted[0].selector)],
                                 wanted, reqid=REQID, retain=[], purge=True)


@pytest.mark.parametrize(("local", "peer", "network", "spelled"), [
    ("2001:DB8:0:0::11", "2001:0db8::0:12", "2001:db8:0::12/128", "2001:db8::12"),
    ("198.51.100.11", "198.51.100.12", "198.51.100.12/32", "198.51.100.12"),
    ("::ffff:198.51.100.11", "::FFFF:c633:640c", "::ffff:198.51.100.12/128",
     "::ffff:198.51.100.12"),
])
def test_declared_addresses_in_any_spelling_are_the_dumped_ones(local, peer, network, spelled):
    declared = {**_declared(peer), "src": local, "dst": network,
                "template": {"src": local, "dst": peer, "spi": 0x2000, "reqid": None}}
    (wanted,) = inventory.wanted_policies([declared], REQID)
    dumped = xfrm.decode_policy(xfrm.encode_policy(wanted))
    assert dumped == wanted and inventory.policy_changes(
        [dumped], [wanted], reqid=REQID, retain=[], purge=True) == []
    assert dumped.templates[0].dst == dumped.selector.dst == spelled


def test_sas_declared_in_any_spelling_are_the_dumped_ones():
    local, peers, retain = inventory.declared_mesh(
        local_address="2001:DB8:0:0::11", peers=[{"name": "h2", "address": "2001:0db8::0:12"}],
        retain=["2001:DB8::14"], password="pw", replay_window=256)
    assert (local, peers[0]["address"], retain) == ("2001:db8::11", "2001:db8::12",
                                                     ["2001:db8::14"])
    wanted = _sa("2001:0DB8::12", "2001:db8:0::11", 0x2000)
    assert (wanted.src, wanted.dst) == ("2001:db8::12", "2001:db8::11")
    dumped = xfrm.decode_sa(xfrm.encode_sa(wanted))
    assert inventory.sa_changes([dumped], [inventory.WantedSA("h2", 1, wanted)],
                                direction="inbound", local_address=local, peers=peers,
                                reqid=REQID, retain=retain, purge=True) == []


@pytest.mark.parametrize(("field", "value"), [
    ("src", "198.51.100"), ("dst", "198.51.100.12/24"), ("dst", "2001:db8::zz")])
def test_a_declared_policy_that_is_no_address_or_network_is_refused_naming_the_field(field,
                                                                                     value):
    with pytest.raises(xfrm.XfrmError, match=rf"^policies\[0\]\.{field}: '{value}' is not an IP"):
        inventory.wanted_policies([{**_declared(PEER), field: value}], REQID)


def test_two_declared_policies_in_one_place_are_refused():
    with pytest.raises(xfrm.XfrmError, match=r"^policies\[1\]: same selector"):
        inventory.wanted_policies([_declared(PEER), _declared(PEER, 0x2000)], REQID)


# --- never the same key twice ---------------------------------------------------------------

def _table(spi, installed=None):
    entry = {"spi": spi, "nonce": "00" * 32}
    if installed is not None:
        from ansible_collections.weave.fastdp.plugins.module_utils import mesh_keys
        entry["installed"] = mesh_keys.installed_record(installed)
    return {"epochs": {"1": {"h2": entry}}}


def test_an_inbound_sa_takes_the_place_of_the_larval_sa_its_spi_was_allocated_in():
    wanted = [inventory.WantedSA("h2", 1, _sa(PEER, LOCAL, 0x2000))]
    larval = dataclasses.replace(_sa(PEER, LOCAL, 0x2000), aead=None, key=b"", larval=True)
    changes = inventory.never_twice(_inbound_changes([larval], wanted), [larval],
                                    _table(0x2000), wanted, check_mode=False)
    assert [(c.sign, c.before, c.after) for c in changes] == [("+", larval, wanted[0].sa)]
    calls = _Recorder()
    inventory.apply(calls, changes)
    assert calls == [("delete_sa", 0x2000), ("add_sa", 0x2000)]


def test_an_inbound_key_installed_before_is_never_installed_again():
    """The finding: the `~` path and a lost SA re-added the recorded key (replay accepted)."""
    sa = _sa(PEER, LOCAL, 0x2000)
    wanted = [inventory.WantedSA("h2", 1, sa)]
    for have in ([], [dataclasses.replace(sa, replay_window=64)]):  # lost; changed
        changes = _inbound_changes(have, wanted)
        with pytest.raises(xfrm.XfrmError, match="installed before with this nonce.*never "
                                                 "installed twice: converge the nonces step"):
            inventory.never_twice(changes, have, _table(0x2000, sa), wanted, check_mode=False)
        (predicted,) = inventory.never_twice(changes, have, _table(0x2000, sa), wanted,
                                             check_mode=True)
        assert predicted.after is None and "fresh nonce and SPI first" in str(predicted)
    first = inventory.never_twice(_inbound_changes([], wanted), [], _table(0x2000), wanted,
                                  check_mode=False)
    assert [c.after for c in first] == [sa], "a nonce never installed is installed once"


def test_an_outbound_key_sent_with_before_is_never_installed_again_and_is_reported_lost():
    """The finding: a sender re-added its lost outbound SA with the same key, so its sequence
    numbers (GCM's IV) started over. It keeps the key out and reports the SPI lost instead."""
    from ansible_collections.weave.fastdp.plugins.module_utils import keys

    sa = _sa(LOCAL, PEER, 0x2000, key=b"s" * 36)
    sent = {keys.sent_digest(sa.key): {"peer": "h2", "dst": PEER, "spi": 0x2000}}
    changes = [inventory.Change("+", "outbound SA to h2 (epoch 1)", after=sa)]
    assert inventory.never_sent_twice(changes, sent) == ([], [("h2", 0x2000)])
    assert inventory.never_sent_twice(changes, {}) == (changes, [])
    assert inventory.lost_outbound(sent, [sa]) == {}
    assert inventory.lost_outbound(sent, []) == {"h2": [0x2000]}
    assert inventory.lost_outbound(sent, [dataclasses.replace(sa, key=bytes(36))]) == {"h2": [0x2000]}
