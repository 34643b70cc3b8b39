"""xfrm_state and xfrm_policy in a kernel with ESP: two lab hosts, keys derived on each host.

One whole scenario (the guest is slow: every module run costs seconds): identity and nonces
make the state, check mode predicts the SAs, real runs install them, both ends hold the same
key per direction, re-runs change nothing, a ping crosses a hand-made VXLAN with only ESP on
the wire, and purge removes a dropped peer's SAs while a foreign SA stays.
"""

import subprocess

import pytest
from ansible_collections.weave.fastdp.plugins.filter.mesh import outbound_policies
from ansible_collections.weave.fastdp.plugins.module_utils.xfrm import XfrmSocket

from lab.capture import TUNNEL_PORT, capture
from lab.modules import run_module
from lab.smoke import MARK, add_vxlan, mark_tunnel_traffic, ping

pytestmark = pytest.mark.kernel(seconds=35)  # wall time in a guest, to balance the guests

REQID = 4242
FOREIGN_REQID = 99
PASSWORD = "correct horse battery staple"


def _sas(lab, host):
    with XfrmSocket(lab.host(host).netns) as xfrm:
        return xfrm.sas()


def _sa_identities(lab, host):
    """Each SA's identity and key (not its live counters, which traffic moves)."""
    return sorted((sa.src, sa.dst, sa.spi, sa.reqid, sa.key) for sa in _sas(lab, host))


def test_two_hosts_converge_sas_carry_esp_only_and_purge_keeps_foreign_sa(lab_factory):
    lab = lab_factory(count=2, sshd=False)
    a, b = lab.hosts
    other = {a: b, b: a}
    public = {h: run_module("identity", {"peer_name": h.name, "state_dir": str(lab.state_dir(h))})
              ["public_key"] for h in lab.hosts}
    published = {}
    for h in lab.hosts:
        result = run_module("nonces", {
            "mesh": "lab", "peer_name": h.name, "local_address": h.address, "epoch": 1,
            "peers": [{"name": other[h].name, "public_key": public[other[h]]}],
            "password": PASSWORD, "state_dir": str(lab.state_dir(h)), "netns": h.netns})
        published[h] = result["published"]

    def converge(h, direction, *, peers=None, **kw):
        peer = other[h]
        declared = [{"name": peer.name, "address": peer.address, "public_key": public[peer],
                     "published": published[peer][h.name]}]
        return run_module("xfrm_state", {
            "direction": direction, "mesh": "lab", "peer_name": h.name, "local_address": h.address,
            "epoch": 1, "peers": declared if peers is None else peers, "password": PASSWORD,
            "reqid": REQID, "state_dir": str(lab.state_dir(h)), "netns": h.netns}, **kw)

    # Check mode predicts the inbound SA of a and changes nothing; the real run does just that.
    predicted = converge(a, "inbound", check=True, diff=True)
    assert predicted["changed"] and len(predicted["changes"]) == 1, predicted["changes"]
    assert predicted["changes"][0].startswith(f"+ inbound SA from {b.name} (epoch 1)")
    assert _sas(lab, a) == []
    done = converge(a, "inbound", diff=True)
    assert done["changes"] == predicted["changes"]
    assert done["diff"]["prepared"] == predicted["diff"]["prepared"]

    results = {(a, "inbound"): done}
    for h, direction in ((b, "inbound"), (a, "outbound"), (b, "outbound")):
        results[h, direction] = converge(h, direction)
        assert results[h, direction]["changed"]
    for (h, direction), result in results.items():
        assert not converge(h, direction)["changed"], f"{h.name} {direction} re-run changed"

    # Each direction: the sender's outbound SA and the receiver's inbound SA are the same SA.
    sas = {h: _sas(lab, h) for h in lab.hosts}
    for sender, receiver in ((a, b), (b, a)):
        spi = results[sender, "outbound"]["outbound_spis"][receiver.name]["spi"]
        assert results[sender, "outbound"]["outbound_epochs"] == {receiver.name: 1}
        out = [sa for sa in sas[sender] if sa.dst == receiver.address]
        into = [sa for sa in sas[receiver] if sa.src == sender.address]
        assert len(out) == 1 and len(into) == 1
        assert out[0] == into[0], f"{sender.name}->{receiver.name}: {out[0]} != {into[0]}"
        assert out[0].spi == spi and out[0].reqid == REQID
        assert (out[0].aead, len(out[0].key), out[0].icv_bits) == ("rfc4106(gcm(aes))", 36, 128)
        assert out[0].esn and out[0].replay_window == 256 and out[0].mode == "transport"
        for result in (results[sender, "outbound"], results[receiver, "inbound"]):
            assert out[0].key.hex() not in str(result), "key bytes in a module result"
        assert out[0].key.hex() not in repr(out[0]) + str(out[0])

    # Traffic: VXLAN between the hosts, marked tunnel packets, out policies made by the module.
    for h in lab.hosts:
        add_vxlan(lab, h, other[h])
        mark_tunnel_traffic(lab, h, other[h])
        policies = outbound_policies(results[h, "outbound"]["outbound_spis"], h.address, MARK, REQID)
        assert run_module("xfrm_policy", {"reqid": REQID, "policies": policies,
                                          "netns": h.netns})["changed"]
    with capture(lab, a) as cap:
        reached = ping(lab, a, b)
    assert reached, "ping across the overlay"
    assert cap.count(f"esp and src {a.address} and dst {b.address}") > 0
    assert cap.count(f"esp and src {b.address} and dst {a.address}") > 0
    assert cap.count(f"udp port {TUNNEL_PORT}") == 0, "plaintext tunnel packets on the wire"
    counted = {(sa.src, sa.dst): sa for sa in _sas(lab, a)}
    assert counted[a.address, b.address].packets > 0 and counted[b.address, a.address].packets > 0
    assert counted[b.address, a.address].integrity_failures == 0

    # Purge: b dropped from a's inbound peers. Check mode predicts, a foreign SA survives.
    lab.exec(a, "ip", "xfrm", "state", "add", "src", "198.51.100.99", "dst", a.address,
             "proto", "esp", "spi", "0x999", "reqid", FOREIGN_REQID, "mode", "transport",
             "aead", "rfc4106(gcm(aes))", "0x" + "11" * 36, 128)
    before = _sa_identities(lab, a)
    predicted = converge(a, "inbound", peers=[], check=True)
    assert predicted["changed"] and len(predicted["changes"]) == 1
    assert predicted["changes"][0].startswith(f"- inbound SA from {b.address} (not a peer)")
    assert _sa_identities(lab, a) == before
    done = converge(a, "inbound", peers=[])
    assert done["changes"] == predicted["changes"]
    left = {(sa.src, sa.reqid) for sa in _sas(lab, a)}
    assert left == {(a.address, REQID), ("198.51.100.99", FOREIGN_REQID)}

    # Teardown: every SA and policy of the reqid goes, the foreign SA stays.
    assert run_module("xfrm_policy", {"reqid": REQID, "policies": [], "netns": a.netns})["changed"]
    assert run_module("xfrm_state", {"state": "absent", "reqid": REQID, "netns": a.netns})["changed"]
    assert [(sa.spi, sa.reqid) for sa in _sas(lab, a)] == [(0x999, FOREIGN_REQID)]
    assert subprocess.run(["ip", "-n", a.netns, "xfrm", "policy"], capture_output=True,
                          text=True, check=True).stdout.strip() == ""
