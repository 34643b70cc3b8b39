"""XFRM messages byte for byte as include/uapi/linux/xfrm.h lays them out, and dumps decoded.

The expected bytes are built here by offset from the C structs, independently of the struct
layouts in module_utils.xfrm. The policy dump is a real kernel's answer (captured from a netns
with `ip xfrm policy add`); the SA dump is built by hand (the host kernel cannot make SAs), and
the bytes encode_sa sends the kernel decode back to the same SA. XfrmSocket runs here on a fake
socket that answers with given datagrams (tests/netns has the real kernel).
"""

import errno
import socket
import struct
from pathlib import Path

import pytest
from ansible_collections.weave.fastdp.plugins.module_utils import netlink, xfrm

from tests.netlink_fake import done, error, install, message

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "xfrm"
A, B = "198.51.100.11", "198.51.100.12"
INF = 0xFFFFFFFFFFFFFFFF
KEY = bytes(range(36))  # a fake key


def test_struct_sizes_match_the_kernel():
    assert xfrm.xfrm_usersa_info.size == 224
    assert xfrm.xfrm_userpolicy_info.size == 168
    assert xfrm.xfrm_user_tmpl.size == 64
    assert xfrm.xfrm_usersa_id.size == 24
    assert xfrm.xfrm_userpolicy_id.size == 64
    assert xfrm.xfrm_algo_aead.size == 72
    assert xfrm.xfrm_replay_state_esn.size == 24


def _nla(attr_type, payload):
    return struct.pack("=HH", 4 + len(payload), attr_type) + payload


def _header(length, msg_type, flags=0x605, seq=7):
    return struct.pack("=IHHII", length, msg_type, flags, seq, 0)


def _usersa_info(*, sel_family=2, reqid=4242, flags=128, curlft=(0, 0), stats=(0, 0, 0)):
    """struct xfrm_usersa_info by offset: sel 0, id 56, saddr 80, lft 96, curlft 160,
    stats 192, seq 204, reqid 208, family 212, mode 214, replay_window 215, flags 216."""
    buf = bytearray(224)
    struct.pack_into("=H", buf, 40, sel_family)
    buf[56:60] = socket.inet_aton(B)
    struct.pack_into(">I", buf, 72, 0x1234ABCD)
    buf[76] = 50
    buf[80:84] = socket.inet_aton(A)
    struct.pack_into("=4Q", buf, 96, INF, INF, INF, INF)
    struct.pack_into("=2Q", buf, 160, *curlft)
    struct.pack_into("=3I", buf, 192, *stats)
    struct.pack_into("=IH", buf, 208, reqid, socket.AF_INET)
    buf[216] = flags
    return bytes(buf)


def _sa_attrs():
    aead = b"rfc4106(gcm(aes))".ljust(64, b"\0") + struct.pack("=II", 288, 128) + KEY
    esn = struct.pack("=6I", 8, 0, 0, 0, 0, 256) + bytes(32)
    return _nla(18, aead) + _nla(23, esn)


def _sa():
    return xfrm.esp_transport_sa(src=A, dst=B, spi=0x1234ABCD, reqid=4242,
                                 aead="rfc4106(gcm(aes))", key=KEY, replay_window=256)


def test_newsa_is_byte_exact():
    body = _usersa_info() + _sa_attrs()
    assert len(_usersa_info()) == 224 and len(_sa_attrs()) == 112 + 60
    assert xfrm.encode_sa(_sa()) == body


def test_sa_with_a_mark_carries_xfrma_mark():
    import dataclasses

    sa = dataclasses.replace(_sa(), mark=0x20000, mask=0x30000)
    data = xfrm.encode_sa(sa)
    assert data.endswith(_nla(21, struct.pack("=II", 0x20000, 0x30000)))
    assert xfrm.decode_sa(data) == sa


def test_delsa_is_byte_exact():
    body = socket.inet_aton(B) + bytes(12) + struct.pack(">I", 0x1234ABCD) + struct.pack("=HBx", 2, 50)
    assert len(body) == 24
    assert xfrm.encode_sa_id(_sa()) == body


def _policy():
    return xfrm.Policy(
        selector=xfrm.Selector(A, B, 32, 32, 17), dir="out", mark=0x20000, mask=0x20000,
        templates=(xfrm.Template(src=A, dst=B, spi=0x1234ABCD, reqid=4242),))


def _userpolicy_info():
    """struct xfrm_userpolicy_info by offset: sel 0, lft 56, curlft 120, priority 152,
    index 156, dir 160, action 161, flags 162, share 163, 4 bytes padding."""
    buf = bytearray(168)
    buf[0:4] = socket.inet_aton(B)
    buf[16:20] = socket.inet_aton(A)
    struct.pack_into("=HBBB", buf, 40, 2, 32, 32, 17)
    struct.pack_into("=4Q", buf, 56, INF, INF, INF, INF)
    buf[160] = 1
    return bytes(buf)


def _user_tmpl():
    """struct xfrm_user_tmpl by offset: id.daddr 0, id.spi 16, id.proto 20, family 24,
    saddr 28, reqid 44, mode 48, share 49, optional 50, aalgos 52, ealgos 56, calgos 60."""
    buf = bytearray(64)
    buf[0:4] = socket.inet_aton(B)
    struct.pack_into(">I", buf, 16, 0x1234ABCD)
    buf[20] = 50
    struct.pack_into("=H", buf, 24, 2)
    buf[28:32] = socket.inet_aton(A)
    struct.pack_into("=I", buf, 44, 4242)
    struct.pack_into("=3I", buf, 52, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    return bytes(buf)


def test_newpolicy_is_byte_exact():
    body = (_userpolicy_info() + _nla(5, _user_tmpl())
            + _nla(21, struct.pack("=II", 0x20000, 0x20000)))
    assert xfrm.encode_policy(_policy()) == body


def test_delpolicy_is_byte_exact():
    body = _userpolicy_info()[:56] + struct.pack("=IB3x", 0, 1) + _nla(21, struct.pack("=II", 0x20000, 0x20000))
    assert xfrm.encode_policy_id(_policy()) == body


def test_a_real_kernel_policy_dump_decodes():
    data = (FIXTURES / "policy_dump.bin").read_bytes()  # one NEWPOLICY, sequence number 1
    ((msg_type, body),) = netlink.messages(data, 1)
    assert msg_type == xfrm.XFRM_MSG_NEWPOLICY
    policy = xfrm.decode_policy(body)
    assert policy == _policy()
    assert policy.index > 0 and policy.priority == 0
    assert str(policy) == ("out 198.51.100.11/32 -> 198.51.100.12/32 udp mark 0x20000/0x20000 "
                           "priority 0 tmpl 198.51.100.11 -> 198.51.100.12 esp spi 0x1234abcd "
                           "reqid 4242 transport")


def test_a_kernel_sa_dump_decodes_with_counters_and_never_shows_the_key():
    lastused = _nla(15, struct.pack("=Q", 1700000000))  # attributes a dump adds are skipped
    body = _usersa_info(curlft=(9000, 42), stats=(0, 3, 5)) + lastused + _sa_attrs()
    sa = xfrm.decode_sa(body)
    assert sa == _sa()
    assert (sa.bytes, sa.packets, sa.replay_errors, sa.integrity_failures) == (9000, 42, 3, 5)
    assert (sa.key, sa.icv_bits, sa.replay_window, sa.esn) == (KEY, 128, 256, True)
    assert sa.selector == xfrm.Selector("0.0.0.0", "0.0.0.0", 0, 0)
    for text in (repr(sa), str(sa)):
        assert KEY.hex() not in text and "key=" not in text
        assert sa.fingerprint in str(sa)
    assert sa.fingerprint.startswith("sha256:") and len(sa.fingerprint) == 15


def test_a_different_key_is_a_different_sa_but_counters_are_not():
    import dataclasses

    assert dataclasses.replace(_sa(), packets=5) == _sa()
    assert dataclasses.replace(_sa(), key=bytes(36)) != _sa()


@pytest.mark.parametrize(("change", "field"), [
    ({"spi": 0}, "spi"), ({"spi": 255}, "spi"), ({"spi": 1 << 32}, "spi"),
    ({"key": bytes(35)}, "key"), ({"aead": "cbc(aes)"}, "aead"),
    ({"src": "198.51.100"}, "src"), ({"dst": "2001:db8::1"}, "dst"),
    ({"replay_window": 0}, "replay_window"), ({"replay_window": 4097}, "replay_window"),
])
def test_a_bad_sa_is_refused_naming_the_field(change, field):
    args = {"src": A, "dst": B, "spi": 0x1234ABCD, "reqid": 1, "aead": "rfc4106(gcm(aes))",
            "key": KEY, "replay_window": 256, **change}
    with pytest.raises(xfrm.XfrmError, match=rf"^{field}: "):
        xfrm.esp_transport_sa(**args)


# --- decoding what encoding makes, and the socket on a fake kernel ------------------------

def _sas():
    import dataclasses

    v6 = xfrm.esp_transport_sa(src="2001:db8::11", dst="2001:db8::1:0:0:12", spi=0xFFFFFFFF,
                               reqid=7, aead="rfc7539esp(chacha20,poly1305)", key=KEY[::-1],
                               replay_window=4096)
    return [_sa(), v6, dataclasses.replace(_sa(), esn=False, replay_window=64),
            dataclasses.replace(v6, mark=0x20000, mask=0x30000, mode="tunnel",
                                selector=xfrm.Selector("2001:db8::", "::", 32, 0, 17, 0, 4500))]


@pytest.mark.parametrize("sa", _sas(), ids=str)
def test_an_encoded_sa_decodes_to_the_same_sa(sa):
    assert xfrm.decode_sa(xfrm.encode_sa(sa)) == sa


def _policies():
    v6 = xfrm.Policy(
        selector=xfrm.Selector("2001:db8::11", "2001:db8::", 128, 64, 6, 1234, 443),
        dir="fwd", priority=100, index=0x1234,
        templates=(xfrm.Template(src="2001:db8::11", dst="2001:db8::12", spi=0x100, reqid=1),
                   xfrm.Template(src="::", dst="2001:db8::13", spi=0xABCDEF01, reqid=2,
                                 mode="tunnel")))
    return [_policy(), v6, xfrm.Policy(selector=xfrm.Selector.any(A), dir="in")]


@pytest.mark.parametrize("policy", _policies(), ids=str)
def test_an_encoded_policy_decodes_to_the_same_policy(policy):
    decoded = xfrm.decode_policy(xfrm.encode_policy(policy))
    assert decoded == policy and decoded.index == policy.index


def test_a_policy_dump_over_two_datagrams(monkeypatch):
    real = (FIXTURES / "policy_dump.bin").read_bytes()
    v6 = _policies()[1]
    fake = install(monkeypatch, real + real,
                   message(xfrm.XFRM_MSG_NEWPOLICY, xfrm.encode_policy(v6), seq=1) + done(1))
    with xfrm.XfrmSocket() as sock:
        assert sock.policies() == [_policy(), _policy(), v6]
    assert fake.sent == [struct.pack("=IHHII", 16, xfrm.XFRM_MSG_GETPOLICY, 0x301, 1, 0)]


def test_an_sa_dump(monkeypatch):
    fake = install(monkeypatch, b"".join(message(xfrm.XFRM_MSG_NEWSA, xfrm.encode_sa(sa), seq=1)
                                         for sa in _sas()) + done(1))
    with xfrm.XfrmSocket() as sock:
        assert sock.sas() == _sas()
    assert fake.sent == [struct.pack("=IHHII", 16, xfrm.XFRM_MSG_GETSA, 0x301, 1, 0)]


def test_requests_are_acknowledged_and_refusals_name_the_object(monkeypatch):
    fake = install(monkeypatch, error(1, 0), error(2, 0),
                   error(3, errno.EEXIST, "Policy exists"), done(4, errno.EINVAL))
    with xfrm.XfrmSocket() as sock:
        sock.add_policy(_policy())
        sock.delete_sa(_sa())
        with pytest.raises(xfrm.XfrmError) as raised:
            sock.update_policy(_policy())
        assert str(raised.value) == f"update policy {_policy()}: File exists (Policy exists)"
        with pytest.raises(xfrm.XfrmError, match=r"^dump SAs: Invalid argument$"):
            sock.sas()
    body = xfrm.encode_policy(_policy())
    assert fake.sent[:3] == [
        struct.pack("=IHHII", 16 + len(body), xfrm.XFRM_MSG_NEWPOLICY, 0x605, 1, 0) + body,
        struct.pack("=IHHII", 40, xfrm.XFRM_MSG_DELSA, 0x5, 2, 0) + xfrm.encode_sa_id(_sa()),
        struct.pack("=IHHII", 16 + len(body), xfrm.XFRM_MSG_UPDPOLICY, 0x5, 3, 0) + body]


def test_an_sa_the_kernel_cannot_make_names_what_it_lacks(monkeypatch):
    fake = install(monkeypatch, error(1, errno.ENOSYS), error(2, errno.EPROTONOSUPPORT))
    with xfrm.XfrmSocket() as sock, pytest.raises(xfrm.XfrmError) as raised:
        sock.add_sa(_sa())
    assert str(raised.value) == (f"add SA {_sa()}: the kernel lacks {xfrm.ESP_MISSING} and the "
                                 "AEAD rfc4106(gcm(aes)) (its crypto modules)")
    probe = fake.sent[1][16:]  # the same SA with the null cipher instead of its AEAD
    crypt = _nla(2, b"ecb(cipher_null)".ljust(64, b"\0") + struct.pack("=I", 0))
    assert probe == _usersa_info() + crypt + _sa_attrs()[112:]
    assert KEY not in probe


def test_allocspi_is_byte_exact_and_its_answer_is_the_larval_sa(monkeypatch):
    """XFRM_MSG_ALLOCSPI, as Weave Net allocates its inbound SPIs: struct xfrm_userspi_info
    (an xfrm_usersa_info, then min and max); the kernel answers with the larval SA."""
    assert xfrm.xfrm_userspi_info.size == 232
    body = xfrm.encode_alloc_spi(src=A, dst=B, reqid=7, low=0x100, high=0xFFFFFFFF)
    assert len(body) == 232
    assert body[56:60] == socket.inet_aton(B) and body[72:76] == bytes(4)  # id.daddr, id.spi 0
    assert body[76] == xfrm.IPPROTO_ESP and body[80:84] == socket.inet_aton(A)  # id.proto, saddr
    assert struct.unpack_from("=IHB", body, 208) == (7, socket.AF_INET, 0)  # reqid, family, mode
    assert struct.unpack_from("=II", body, 224) == (0x100, 0xFFFFFFFF)
    larval = _usersa_info()[:72] + struct.pack("!I", 0xC0FFEE) + _usersa_info()[76:]
    fake = install(monkeypatch, message(xfrm.XFRM_MSG_NEWSA, larval, seq=1, flags=0))
    with xfrm.XfrmSocket() as sock:
        assert sock.allocate_spi(src=A, dst=B, reqid=7) == 0xC0FFEE
    assert fake.sent == [struct.pack("=IHHII", 16 + 232, xfrm.XFRM_MSG_ALLOCSPI, 0x1, 1, 0) + body]
    assert xfrm.decode_sa(larval).larval and not xfrm.decode_sa(_usersa_info() + _sa_attrs()).larval
