"""The status table says which part of a pair is missing and shows its counters."""

import pytest
from ansible_collections.weave.fastdp.plugins.module_utils.status import (
    SAView,
    _checksum,
    _echo_request,
    diagnose,
    pair_status,
    table,
)

pytestmark = pytest.mark.unit

A, B, C = "198.51.100.11", "198.51.100.12", "198.51.100.13"
PEERS = [{"name": "h2", "address": B}, {"name": "h3", "address": C}]


def test_a_complete_pair_is_encrypted_fastdp_and_an_incomplete_one_names_what_is_missing():
    sas = [SAView(B, A, 0x1001, bytes=980, packets=10, integrity_errors=1),
           SAView(A, B, 0x2001, bytes=1000, packets=11),
           SAView(C, A, 0x1002)]
    rows = pair_status(PEERS, A, sas, policy_spis={B: 0x2001}, guarded={B, C}, mtu=1416)
    h2, h3 = rows
    assert h2["mode"] == "encrypted fastdp" and h2["missing"] == []
    assert (h2["spi_in"], h2["spi_out"], h2["packets_out"], h2["integrity_errors"]) == (0x1001, 0x2001, 11, 1)
    assert h3["mode"] == "incomplete" and h3["missing"] == ["outbound SA", "outbound policy"]
    text = table(rows)
    assert "encrypted fastdp" in text and "incomplete (no outbound SA, outbound policy)" in text
    assert "0x00002001" in text


def test_a_policy_pointing_at_a_missing_sa_is_incomplete():
    sas = [SAView(B, A, 0x1001), SAView(A, B, 0x2001)]
    rows = pair_status(PEERS[:1], A, sas, policy_spis={B: 0x2002}, guarded=set(), mtu=None)
    assert rows[0]["missing"] == ["outbound SA for the policy's SPI 0x00002002", "guard rules"]


def row(**counters):
    base = {"missing": [], "packets_out": 0, "packets_in": 0, "integrity_errors": 0,
            "replay_errors": 0}
    return {**base, **counters}


@pytest.mark.parametrize(("after", "answered", "cause"), [
    (row(missing=["outbound policy"]), False, "incomplete: no outbound policy"),
    (row(packets_out=5, integrity_errors=3), False, "key mismatch"),
    (row(), False, "no traffic went through the outbound SA"),
    (row(packets_out=5), False, "ESP (IP protocol 50) blocked on the path"),
    (row(packets_out=5, packets_in=5), True, None),
])
def test_verification_names_the_likely_cause_of_a_broken_pair(after, answered, cause):
    why = diagnose(after, row(), answered)
    assert (why is None) if cause is None else (cause in why)


def test_counters_that_moved_before_the_echo_do_not_count_as_verified():
    assert "no traffic" in diagnose(row(packets_out=7, packets_in=7), row(packets_out=7,
                                                                           packets_in=7), True)


def test_echo_checksum_is_the_internet_checksum():
    request = _echo_request(4, ident=0x1234, seq=1)
    assert _checksum(request) == 0, "a packet with its checksum sums to zero"
