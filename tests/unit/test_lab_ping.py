"""Counting the echo requests a continuous ping lost (the rotation test's measure)."""

import pytest

from lab.smoke import unanswered

pytestmark = pytest.mark.unit


def replies(*seqs):
    return "".join(f"64 bytes from 203.0.113.2: icmp_seq={s} ttl=64 time=0.1 ms\n"
                   for s in seqs)


def test_every_request_answered_but_the_last_in_flight_is_no_loss():
    assert unanswered(replies(*range(1, 100)), sent=100) == []


def test_a_gap_is_lost_requests_by_number():
    assert unanswered(replies(1, 2, 5, 6), sent=7) == [3, 4]


def test_a_stop_in_answers_counts_every_request_after_it():
    assert unanswered(replies(1, 2, 3), sent=6) == [4, 5]


def test_icmp_seq_wrapping_at_65536_is_undone():
    seqs = list(range(1, 65536)) + [0, 1, 3]
    assert unanswered(replies(*seqs), sent=65536 + 4) == [65536 + 2]
