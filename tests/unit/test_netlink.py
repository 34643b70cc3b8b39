"""module_utils.netlink on hand-built datagrams: framing of requests, several messages in one
datagram, dumps over several datagrams up to NLMSG_DONE, acks, refusals with and without the
kernel's extended ack message, attributes."""

import errno
import struct

import pytest
from ansible_collections.weave.fastdp.plugins.module_utils import netlink

from tests.netlink_fake import done, error, install, message

pytestmark = pytest.mark.unit


def test_a_dump_reads_every_datagram_up_to_done_and_skips_stale_answers(monkeypatch):
    fake = install(monkeypatch,
                   message(20, b"old!", seq=0) + message(20, b"one", seq=1) + message(20, b"two!", seq=1),
                   message(20, b"three", seq=1) + done(1))
    with netlink.Netlink(6) as nl:
        answers = nl.request(0x15, netlink.NLM_F_DUMP)
    # the body of each answer, its padding left out
    assert [bytes(a) for a in answers] == [b"one", b"two!", b"three"]
    assert fake.sent == [struct.pack("=IHHII", 16, 0x15, 0x301, 1, 0)]
    assert fake.options == {(270, 10): 1, (270, 11): 1}  # NETLINK_CAP_ACK, NETLINK_EXT_ACK
    assert fake.closed and not fake.datagrams


def test_an_acked_request_returns_nothing_and_numbers_requests(monkeypatch):
    fake = install(monkeypatch, error(1, 0), error(2, 0))
    with netlink.Netlink(6) as nl:
        assert nl.request(0x13, netlink.NLM_F_ACK | netlink.NLM_F_CREATE, b"body") == []
        assert nl.request(0x14, netlink.NLM_F_ACK) == []
    assert fake.sent == [struct.pack("=IHHII", 20, 0x13, 0x405, 1, 0) + b"body",
                         struct.pack("=IHHII", 16, 0x14, 0x5, 2, 0)]


def test_a_request_without_ack_returns_its_one_reply(monkeypatch):
    install(monkeypatch, message(16, b"link", seq=1, flags=0))
    with netlink.Netlink(0) as nl:
        assert [bytes(a) for a in nl.request(18, 0, b"x")] == [b"link"]


@pytest.mark.parametrize(("answer", "code", "text"), [
    (error(1, errno.EEXIST), errno.EEXIST, "File exists"),
    (error(1, errno.EEXIST, "Policy exists"), errno.EEXIST, "File exists (Policy exists)"),
    (error(1, errno.EINVAL, "Invalid argument"), errno.EINVAL, "Invalid argument"),
    (done(1, errno.ENOMEM), errno.ENOMEM, "Cannot allocate memory"),
])
def test_a_refusal_raises_with_the_kernels_message(monkeypatch, answer, code, text):
    install(monkeypatch, answer)
    with netlink.Netlink(6) as nl, pytest.raises(netlink.NetlinkError) as raised:
        nl.request(0x13, netlink.NLM_F_ACK, b"body")
    assert isinstance(raised.value, OSError) and raised.value.errno == code
    assert str(raised.value) == text


def test_the_extended_ack_follows_a_whole_echoed_request_when_not_capped():
    request = struct.pack("=IHHII", 24, 0x13, 0x605, 1, 0) + b"8 bytes!"
    text = b"Policy exists\0"
    attr = struct.pack("=HH", 4 + len(text), 1) + text + bytes(2)
    data = message(2, struct.pack("=i", -errno.EEXIST) + request + attr, seq=1, flags=0x200)
    with pytest.raises(netlink.NetlinkError, match=r"^File exists \(Policy exists\)$"):
        list(netlink.messages(data, 1))


def test_a_done_in_a_dump_with_extended_ack():
    text = b"dump failed\0"
    attr = struct.pack("=HH", 4 + len(text), 1) + text
    data = message(3, struct.pack("=i", -errno.EINVAL) + attr, seq=5, flags=0x202)
    with pytest.raises(netlink.NetlinkError, match=r"\(dump failed\)$"):
        list(netlink.messages(data, 5))


def test_answers_to_other_requests_are_skipped_even_errors():
    data = error(3, errno.EEXIST) + message(20, b"mine", seq=4) + done(4)
    assert [(t, bytes(b)) for t, b in netlink.messages(data, 4)] == [(20, b"mine"), (3, bytes(4))]


def test_a_malformed_message_length_is_an_error_not_a_loop():
    with pytest.raises(netlink.NetlinkError, match="message of length 8"):
        list(netlink.messages(struct.pack("=IHHII", 8, 20, 0, 1, 0), 1))
    with pytest.raises(netlink.NetlinkError, match="attribute of length 2"):
        netlink.attributes(struct.pack("=HH", 2, 1))


def test_attributes_are_padded_and_read_without_their_flag_bits():
    data = netlink.attr(1, b"abc") + netlink.attr(0x8002, b"\1\2\3\4") + netlink.attr(3, b"")
    assert data == (struct.pack("=HH", 7, 1) + b"abc\0" + struct.pack("=HH", 8, 0x8002)
                    + b"\1\2\3\4" + struct.pack("=HH", 4, 3))
    assert {k: bytes(v) for k, v in netlink.attributes(data).items()} == {
        1: b"abc", 2: b"\1\2\3\4", 3: b""}
    assert netlink.attributes(b"skip" + data, 4).keys() == {1, 2, 3}


def test_only_the_attributes_asked_for_are_read_up_to_the_last_of_them():
    data = netlink.attr(2, b"mac") + netlink.attr(1, b"dst") + struct.pack("=HH", 2, 3)
    # the malformed third attribute is never reached: both asked for come before it
    assert {k: bytes(v) for k, v in netlink.attributes(data, only=(1, 2)).items()} == {
        1: b"dst", 2: b"mac"}
    one_of_two = netlink.attr(3, b"x") + netlink.attr(2, b"y")
    assert netlink.attributes(one_of_two, only=(1, 2)).keys() == {2}
