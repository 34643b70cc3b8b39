"""The datapath module runs the steps of several modules in one process: in the order that
never lets tunnel traffic out in clear, each later step given what the earlier ones decided."""

import pytest
from ansible_collections.weave.fastdp.plugins.module_utils.datapath import STEPS, fingerprint, wired

pytestmark = pytest.mark.unit


def test_guards_come_before_any_sa_or_vxlan_device_policies_last_and_the_verification_after():
    assert [name for name, _ in STEPS] == [
        "nonces", "guards", "inbound_sas", "vxlan", "outbound_sas", "outbound_policies", "verify"]


def test_the_verify_step_always_sends_traffic():
    p = {"verify": {"mesh": "weave", "reqid": 7, "peers": []}}
    assert wired("verify", p, {})["verify"] is True


def test_guards_mark_every_inbound_spi_the_nonces_step_keeps_two_during_a_rotation():
    p = {"guards": {"mesh": "weave", "peers": [{"name": "h2", "address": "198.51.100.12"},
                                               {"name": "h3", "address": "198.51.100.13"}]}}
    done = {"nonces": {"inbound_spis": {"h2": [0x100, 0x200], "h3": [0x300]}}}
    assert wired("guards", p, done)["peers"] == [
        {"name": "h2", "address": "198.51.100.12", "inbound_spis": [0x100, 0x200]},
        {"name": "h3", "address": "198.51.100.13", "inbound_spis": [0x300]}]


def test_sa_steps_take_their_direction_from_their_name():
    p = {"inbound_sas": {"reqid": 7}, "outbound_sas": {"reqid": 7}}
    assert wired("inbound_sas", p, {})["direction"] == "inbound"
    assert wired("outbound_sas", p, {})["direction"] == "outbound"


def test_outbound_policies_go_through_the_newest_outbound_sa_of_each_peer():
    p = {"outbound_sas": {"reqid": 7, "netns": "ns1", "local_address": "198.51.100.11"},
         "outbound_policies": {"mark": "0x20000", "retain": [], "purge": True}}
    done = {"outbound_sas": {"outbound_spis": {"h2": {"address": "198.51.100.12", "spi": 0x1234}}}}
    params = wired("outbound_policies", p, done)
    assert (params["reqid"], params["netns"]) == (7, "ns1")
    assert params["policies"] == [{
        "src": "198.51.100.11", "dst": "198.51.100.12", "proto": "udp", "direction": "out",
        "mark": 0x20000, "mask": 0x20000,
        "template": {"src": "198.51.100.11", "dst": "198.51.100.12", "spi": 0x1234, "reqid": 7}}]


def test_the_inbound_half_fingerprint_leaves_the_password_out_and_every_other_option_in():
    half = {"nonces": {"mesh": "weave", "epoch": 1, "password": "one"},
            "vxlan": {"name": "wf-weave", "peers": ["198.51.100.12"]}}
    same_but_password = {**half, "nonces": {**half["nonces"], "password": "two"}}
    new_epoch = {**half, "nonces": {**half["nonces"], "epoch": 2}}
    new_peer = {**half, "vxlan": {**half["vxlan"], "peers": ["198.51.100.12", "198.51.100.13"]}}
    assert fingerprint(half) == fingerprint(same_but_password)
    assert len({fingerprint(half), fingerprint(new_epoch), fingerprint(new_peer)}) == 3
