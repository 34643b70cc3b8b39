"""What XFRM SAs a host must have for the mesh, compared with what its kernel has.

Backends of the nonces and xfrm_state modules (their steps are at the end): decide first (pure
functions from the declared mesh and one kernel dump to a list of changes), act second
(``apply``), so check mode reports exactly what a real run does. Only SAs carrying this
mesh's reqid are ours. Peers in ``retain`` (outside this run) are never touched. The keys are
derived here (mesh_keys, with cryptography); the policies' half, which derives none, is
xfrm_policies, its names offered here too for the callers of both (datapath's steps).
"""

from __future__ import annotations

from dataclasses import dataclass

from ansible_collections.weave.fastdp.plugins.module_utils import arguments, inet, keys, mesh_keys
from ansible_collections.weave.fastdp.plugins.module_utils.compat import SLOTS
from ansible_collections.weave.fastdp.plugins.module_utils.mesh import CIPHERS
from ansible_collections.weave.fastdp.plugins.module_utils.netns import NetnsError
from ansible_collections.weave.fastdp.plugins.module_utils.xfrm import (
    SA,
    XfrmError,
    XfrmSocket,
    check_replay_window,
    check_spi,
    esp_transport_sa,
)

# The policies' half has a module of its own; its step and planning are also reached from here.
from ansible_collections.weave.fastdp.plugins.module_utils.xfrm_policies import (  # noqa: F401  # pylint: disable=unused-import
    POLICY_ARGUMENT_SPEC,
    Change,
    apply,
    converge_policies,
    outbound_policies,
    policy_changes,
    wanted_policies,
)


def sas_towards(local_address: str, netns: str | None = None) -> dict[int, SA]:
    """Every SA (anybody's) whose destination is this host, by SPI. One dump."""
    with XfrmSocket(netns) as xfrm:
        return {sa.spi: sa for sa in xfrm.sas() if sa.dst == local_address}


# --- SAs --------------------------------------------------------------------------------

@dataclass(frozen=True, **SLOTS)
class WantedSA:
    peer: str
    epoch: int
    sa: SA | None  # None: its key cannot be known yet (check mode before the nonce exists)


def declared_mesh(*, local_address, peers, retain, password,
                  replay_window) -> tuple[str, list[dict], list[str]]:
    """(local address, peers, retain) with every address spelled as the kernel spells it, so
    that declared and dumped SAs compare equal; XfrmError naming the first bad field."""
    local = inet.field("local_address", local_address, XfrmError)
    if not password:
        raise XfrmError("password: missing or empty")
    check_replay_window(replay_window)
    names, addresses, spelled = set(), {}, []
    for i, peer in enumerate(peers):
        address = inet.field(f"peers[{i}].address", peer["address"], XfrmError)
        if not peer["name"]:
            raise XfrmError(f"peers[{i}].name: empty")
        if peer["name"] in names:
            raise XfrmError(f"peers[{i}].name: {peer['name']} is declared twice")
        if address == local:
            raise XfrmError(f"peers[{i}].address: {address} ({peer['name']}) is this host's "
                            "own address (local_address)")
        if inet.is_ipv6(address) != inet.is_ipv6(local):
            raise XfrmError(f"peers[{i}].address: {address} is not of the address family of "
                            f"local_address {local}")
        if address in addresses:
            raise XfrmError(f"peers[{i}].address: {address} is also {addresses[address]}'s")
        for j, entry in enumerate(peer.get("published") or []):
            try:
                check_spi(entry.get("spi", 0))
            except XfrmError as exc:
                raise XfrmError(f"peers[{i}].published[{j}].{exc}") from None
        names.add(peer["name"])
        addresses[address] = peer["name"]
        spelled.append({**peer, "address": address})
    return local, spelled, [inet.field(f"retain[{i}]", a, XfrmError) for i, a in enumerate(retain)]


def wanted_sas(*, direction, table, sessions, derived_keys, mesh, peer_name, local_address, peers,
               epoch, retire, reqid, aead, replay_window) -> list[WantedSA]:
    """The SAs of one direction this host must have, keys derived here (mesh_keys;
    ``derived_keys``, keys.DerivedKeys, confirms those installed already).

    Inbound: each epoch this host keeps a nonce for the peer. Outbound: each epoch the peer
    published for this host, only the newest with ``retire``. ``epoch`` (the mesh's current
    one, optional) is wanted too: without its nonce yet (check mode) the SA is pending."""
    epochs = {}
    for peer in peers:
        if direction == "inbound":
            kept = {int(e) for e, senders in table["epochs"].items() if peer["name"] in senders}
        else:
            kept = {entry["epoch"] for entry in peer.get("published") or []}
        ordered = sorted(kept | ({epoch} if epoch is not None else set()))
        epochs[peer["name"]] = ordered[-1:] if retire and direction == "outbound" else ordered
    try:
        if direction == "inbound":
            derived, pending = mesh_keys.inbound_sas(
                table, sessions=sessions, derived_keys=derived_keys, local_name=peer_name,
                local_address=local_address, peers=peers, epochs=epochs, aead=aead)
        else:
            derived, pending = mesh_keys.outbound_sas(
                sessions=sessions, derived_keys=derived_keys, mesh=mesh, local_name=peer_name,
                local_address=local_address, peers=peers, epochs=epochs, aead=aead)
    except keys.KeyMaterialError as exc:
        raise XfrmError(str(exc)) from None
    wanted = []
    for d in derived:
        try:
            sa = esp_transport_sa(src=d.src, dst=d.dst, spi=d.spi, reqid=reqid, aead=aead,
                                  key=d.key, replay_window=replay_window)
        except XfrmError as exc:
            where = "state_dir" if direction == "inbound" else "peers[{}].published".format(
                next(i for i, peer in enumerate(peers) if peer["name"] == d.peer))
            raise XfrmError(f"{where} ({d.peer}, epoch {d.epoch}): {exc}") from None
        wanted.append(WantedSA(d.peer, d.epoch, sa))
    return wanted + [WantedSA(p.peer, p.epoch, None) for p in pending]


def _is_outbound(sa: SA, local_address: str) -> bool:
    return sa.src == local_address


def sa_changes(have: list[SA], wanted: list[WantedSA], *, direction, local_address, peers,
               reqid, retain, purge) -> list[Change]:
    """Changes that make this direction's SAs with ``reqid`` exactly the wanted ones.

    An SA of ours is outbound when its source is this host, inbound otherwise (so SAs of an
    old local address are inbound leftovers). A declared peer's SAs are converged exactly;
    SAs of other peers go with ``purge``; ``retain`` addresses are left alone."""
    names = {peer["address"]: peer["name"] for peer in peers}
    outbound = direction == "outbound"
    ours = {(sa.dst, sa.spi): sa for sa in have
            if sa.reqid == reqid and _is_outbound(sa, local_address) == outbound}
    wanted_keys = set()
    changes = []
    for w in wanted:
        what = f"{direction} SA {'to' if outbound else 'from'} {w.peer} (epoch {w.epoch})"
        if w.sa is None:
            changes.append(Change("+", what))
            continue
        key = (w.sa.dst, w.sa.spi)
        wanted_keys.add(key)
        if key not in ours:
            changes.append(Change("+", what, after=w.sa))
        elif ours[key] != w.sa:
            changes.append(Change("~", what, before=ours[key], after=w.sa))
    for key, sa in sorted(ours.items()):
        if key in wanted_keys:
            continue
        peer_address = sa.dst if outbound else sa.src
        if peer_address in retain:
            continue
        peer = names.get(peer_address)
        if peer is None and not purge:
            continue
        what = f"{direction} SA {'to' if outbound else 'from'} " + (
            f"{peer} (epoch no longer wanted)" if peer else f"{peer_address} (not a peer)")
        changes.append(Change("-", what, before=sa))
    return changes


def never_twice(changes: list[Change], have: list[SA], table: dict, wanted: list[WantedSA],
                check_mode: bool) -> list[Change]:
    """The inbound changes with no key installed twice. An SA wanted in an SPI the kernel holds
    as a larval SA (ALLOCSPI) replaces it. An SA whose nonce was installed before (the kernel
    lost it, or holds it otherwise) is refused outside check mode: only the nonces step may
    make its fresh nonce and SPI; check mode reports it without a key."""
    larval = {(sa.dst, sa.spi): sa for sa in have if sa.larval}
    of = {(w.sa.dst, w.sa.spi): (w.peer, w.epoch) for w in wanted if w.sa is not None}
    out = []
    for change in changes:
        after = change.after
        if change.sign == "-" or not isinstance(after, SA):
            out.append(change)
            continue
        held = larval.get((after.dst, after.spi))
        if held is not None:
            out.append(Change("+", f"{change.what} (in the SPI the kernel allocated)",
                              before=held, after=after))
            continue
        peer, epoch = of[(after.dst, after.spi)]
        entry = table["epochs"].get(str(epoch), {}).get(peer, {})
        if change.sign == "+" and entry.get("installed") is None:
            out.append(change)
            continue
        why = (f"{change.what}: SPI {after.spi:#010x} was installed before with this nonce and "
               "the kernel " + ("holds it otherwise" if change.sign == "~" else "lost it"))
        if not check_mode:
            raise XfrmError(f"{why}; a key is never installed twice: converge the nonces step "
                            "first (weave.fastdp.nonces, or datapath with nonces), which makes "
                            "a fresh nonce and SPI")
        out.append(Change("+", f"{change.what} (a fresh nonce and SPI first)"))
    return out


def record_installed(state: keys.StateDir, table: dict, wanted: list[WantedSA]) -> None:
    """Record in each entry the inbound SA the kernel now holds for it (mesh_keys.spent_reason
    compares the kernel's with it)."""
    changed = False
    for w in wanted:
        entry = table["epochs"].get(str(w.epoch), {}).get(w.peer)
        if w.sa is None or entry is None or entry["spi"] != w.sa.spi:
            continue
        made = mesh_keys.installed_record(w.sa)
        if entry.get("installed") != made:
            entry["installed"] = made
            changed = True
    if changed:
        state.save_inbound(table)


def never_sent_twice(changes: list[Change], sent: dict) -> tuple[list[Change], list]:
    """The outbound changes without the SAs whose key this host installed before (lost since:
    a reboot, a flush): their sequence numbers would start over under the same key. Their peer
    makes a fresh nonce and SPI once the preflight reports them (lost_outbound)."""
    out, spent = [], []
    for change in changes:
        if change.sign != "-" and isinstance(change.after, SA) and \
                keys.sent_digest(change.after.key) in sent:
            spent.append((sent[keys.sent_digest(change.after.key)]["peer"], change.after.spi))
            continue
        out.append(change)
    return out, spent


def record_sent(state: keys.StateDir, sent: dict, wanted: list[WantedSA]) -> None:
    """Record the key of every wanted outbound SA: the kernel now holds it, or lost it and it
    was not given again. SAs no longer wanted leave the record."""
    record = {}
    for w in wanted:
        if w.sa is None:
            continue
        digest = keys.sent_digest(w.sa.key)
        record[digest] = {"peer": w.peer, "dst": w.sa.dst, "spi": w.sa.spi}
    if record != sent:
        state.save_sent(record)


def lost_outbound(sent: dict, have: list[SA]) -> dict[str, list[int]]:
    """{peer: [SPI]} of the outbound SAs this host installed that the kernel no longer holds
    with their key: the peer must make a fresh nonce and SPI for each (never the same key)."""
    held = {(sa.dst, sa.spi): keys.sent_digest(sa.key) for sa in have if not sa.larval}
    lost = {}
    for digest, sa in sorted(sent.items(), key=lambda item: (item[1]["peer"], item[1]["spi"])):
        if held.get((sa["dst"], sa["spi"])) != digest:
            lost.setdefault(sa["peer"], []).append(sa["spi"])
    return lost


def unrecord_refused(state: keys.StateDir, table: dict, wanted: list[WantedSA],
                     have: list[SA]) -> None:
    """After a failed apply: entries whose SA the kernel does not hold were never installed."""
    held = {(sa.dst, sa.spi) for sa in have if not sa.larval}
    changed = False
    for w in wanted:
        entry = table["epochs"].get(str(w.epoch), {}).get(w.peer)
        if w.sa is not None and entry is not None and (w.sa.dst, w.sa.spi) not in held \
                and entry.pop("installed", None) is not None:
            changed = True
    if changed:
        state.save_inbound(table)


def all_sas_removed(have: list[SA], reqid: int) -> list[Change]:
    return [Change("-", f"SA of reqid {reqid}", before=sa) for sa in have if sa.reqid == reqid]


def outbound_view(wanted: list[WantedSA]) -> tuple[dict, dict]:
    """({peer: {address, spi}}, {peer: epoch}) of the newest installed outbound SA per peer:
    what the outbound policy uses and what the peer may retire older epochs against."""
    spis, epochs = {}, {}
    for w in sorted((w for w in wanted if w.sa is not None), key=lambda w: w.epoch):
        spis[w.peer] = {"address": w.sa.dst, "spi": w.sa.spi}
        epochs[w.peer] = w.epoch
    return spis, epochs


# --- the modules' steps -------------------------------------------------------------------

NONCES_ARGUMENT_SPEC = {
    "mesh": {"type": "str", "required": True},
    "peer_name": {"type": "str", "required": True},
    "local_address": {"type": "str", "required": True},
    "epoch": {"type": "int", "required": True},
    "peers": {"type": "list", "elements": "dict", "required": True, "options": {
        "name": {"type": "str", "required": True},
        "public_key": {"type": "str"},
        "switched_epoch": {"type": "int"},
        "lost_spis": {"type": "list", "elements": "int", "default": []},
    }},
    "password": {"type": "str", "required": True, "no_log": True},
    "retire": {"type": "bool", "default": False},
    **arguments.RETAIN_AND_PURGE,
    **arguments.NETNS,
    **arguments.STATE_DIR,
}


def _spelled(address: str) -> str:
    try:
        return inet.spelled(address)
    except ValueError:
        return address  # the inbound SAs' step names it


def converge_nonces(module, p: dict) -> dict:
    """The nonces module's step: this epoch's nonce and inbound SPI per sender, published sealed.

    A recorded nonce is published again only while the kernel holds the inbound SA installed
    for it (and, given the inbound SAs' options as the datapath module gives them, with those
    options); otherwise it gets a fresh nonce and an SPI the kernel allocates (ALLOCSPI),
    so no key is ever installed twice."""
    state = keys.StateDir(p["state_dir"])
    sa = p.get("_inbound_sa")  # the inbound SAs' options: datapath wires them in
    addresses = {name: _spelled(address) for name, address in (sa or {}).get("addresses", {}).items()}
    lost = {peer["name"]: set(peer.get("lost_spis") or ()) for peer in p["peers"]}
    public_keys = {peer["name"]: peer.get("public_key") for peer in p["peers"]}
    try:
        local = inet.field("local_address", p["local_address"], XfrmError)
        sessions = state.sessions(p["password"])
        before = state.inbound()
        held = derived = None

        def spent(sender, entry):
            nonlocal held
            if held is None:
                held = sas_towards(local, p["netns"])
            wanted = None
            if sa is not None:
                aead = CIPHERS[sa["cipher"]]
                wanted = {"reqid": sa["reqid"], "aead": aead, "replay_window": sa["replay_window"]}
                if sender in addresses:
                    wanted["src"] = addresses[sender]
                if sessions is not None and public_keys.get(sender):
                    nonlocal derived
                    if derived is None:  # confirms installed keys with two SHA-256 each
                        derived = state.derived_keys("inbound", {
                            (local, s.spi): s.key for s in held.values() if not s.larval})
                    try:
                        session = sessions.key(public_keys[sender])
                    except keys.KeyMaterialError as exc:
                        raise keys.KeyMaterialError(f"peers ({sender}): {exc}") from None
                    key = derived.key(session, bytes.fromhex(entry["nonce"]), p["peer_name"],
                                      aead, (local, entry["spi"]))
                    wanted["key"] = mesh_keys.installed_key(key)
            if entry["spi"] in lost.get(sender, ()):
                return "the sender lost its outbound SA (its sequence numbers would start over)"
            return mesh_keys.spent_reason(entry, held.get(entry["spi"]), wanted)

        def allocate_spi(sender, recorded):
            nonlocal held
            if held is None:
                held = sas_towards(local, p["netns"])
            # Nothing is made in check mode: any SPI names the change. Run alone (no inbound
            # SAs' options), the nonces step picks a free SPI itself: the kernel's larval SA
            # would expire (net.core.xfrm_acq_expires) before a separate xfrm_state run.
            if module.check_mode or sa is None:
                return keys.new_spi(set(held) | recorded)
            with XfrmSocket(p["netns"]) as xfrm:
                while True:  # the kernel's SPI is free towards this host; never a recorded one
                    spi = xfrm.allocate_spi(
                        src=addresses.get(sender) or ("::" if inet.is_ipv6(local) else "0.0.0.0"),
                        dst=local, reqid=(sa or {}).get("reqid", 0))
                    if spi not in recorded:
                        return spi

        table, changes = mesh_keys.ensure_nonces(
            before, epoch=p["epoch"], retain=p["retain"],
            senders={peer["name"]: peer["switched_epoch"] for peer in p["peers"]},
            allocate_spi=allocate_spi, spent=spent, purge=p["purge"], retire=p["retire"])
        if module.check_mode:
            table = before  # nothing is made in check mode, so nothing new is published
        elif changes:
            state.save_inbound(table)
        published = {}
        if sessions is not None:
            published = mesh_keys.publish(
                table, sessions=sessions, mesh=p["mesh"],
                receiver=p["peer_name"], epochs=sorted(int(e) for e in table["epochs"]),
                senders={peer["name"]: peer["public_key"] for peer in p["peers"]
                         if peer["public_key"]})
            if not module.check_mode:
                state.save_sessions(sessions)
    except (keys.KeyMaterialError, mesh_keys.MeshError, XfrmError, NetnsError) as exc:
        raise arguments.Failed(str(exc)) from exc
    epochs = sorted(int(e) for e in table["epochs"])
    inbound_spis = {}
    for e in epochs:
        for sender, entry in table["epochs"][str(e)].items():
            inbound_spis.setdefault(sender, []).append(entry["spi"])
    return {"changed": bool(changes), "published": published, "inbound_spis": inbound_spis,
            "epochs": epochs, "diff": {"prepared": "".join(f"{c}\n" for c in changes)}}


SA_ARGUMENT_SPEC = {
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "direction": {"type": "str", "choices": ["inbound", "outbound"]},
    "retire": {"type": "bool", "default": False},
    "mesh": {"type": "str"},
    "peer_name": {"type": "str"},
    "local_address": {"type": "str"},
    "epoch": {"type": "int"},
    "peers": {"type": "list", "elements": "dict", "options": {
        "name": {"type": "str", "required": True},
        "address": {"type": "str", "required": True},
        "public_key": {"type": "str"},
        "published": {"type": "list", "elements": "dict"},
        "switched_epoch": {"type": "int"},
    }},
    "password": {"type": "str", "no_log": True},
    "reqid": {"type": "int", "required": True},
    "cipher": {"type": "str", "choices": sorted(CIPHERS), "default": "aes-gcm"},
    "replay_window": {"type": "int", "default": 256},
    **arguments.RETAIN_AND_PURGE,
    **arguments.NETNS,
    **arguments.STATE_DIR,
}
SA_REQUIRED_WHEN_PRESENT = ["direction", "mesh", "peer_name", "local_address", "peers", "password"]
SA_REQUIRED_IF = [("state", "present", SA_REQUIRED_WHEN_PRESENT)]


def converge_sas(module, p: dict) -> dict:
    """The xfrm_state module's step: this mesh's SAs of one direction (or all of them absent)."""
    present = p["state"] == "present"
    wanted = []
    try:
        if present:
            local, peers, retain = declared_mesh(
                local_address=p["local_address"], peers=p["peers"], retain=p["retain"],
                password=p["password"], replay_window=p["replay_window"])
            state = keys.StateDir(p["state_dir"])
            sessions = state.sessions(p["password"])
        with XfrmSocket(p["netns"]) as xfrm:
            have = xfrm.sas()
            if present:
                derived_keys = state.derived_keys(p["direction"], {
                    (sa.dst, sa.spi): sa.key for sa in have if sa.reqid == p["reqid"]})
                table = state.inbound()
                wanted = wanted_sas(
                    direction=p["direction"], table=table, sessions=sessions,
                    derived_keys=derived_keys, mesh=p["mesh"], peer_name=p["peer_name"],
                    local_address=local, peers=peers, epoch=p["epoch"], retire=p["retire"],
                    reqid=p["reqid"], aead=CIPHERS[p["cipher"]], replay_window=p["replay_window"])
                changes = sa_changes(
                    have, wanted, direction=p["direction"], local_address=local, peers=peers,
                    reqid=p["reqid"], retain=retain, purge=p["purge"])
                if p["direction"] == "inbound":
                    changes = never_twice(changes, have, table, wanted, module.check_mode)
                else:
                    sent = state.sent()
                    changes, spent = never_sent_twice(changes, sent)
                    for peer, spi in spent:
                        module.warn(f"outbound SA to {peer} (SPI {spi:#010x}): its key was "
                                    "installed before and the kernel lost it; not installed "
                                    "again until the peer publishes a fresh nonce and SPI")
            else:
                changes = all_sas_removed(have, p["reqid"])
            pending = [f"{w.peer} {w.epoch}" for w in wanted if w.sa is None]
            if not module.check_mode:
                if present and p["direction"] == "inbound":  # recorded before it is made:
                    record_installed(state, table, wanted)  # a kill cannot lose the record
                try:
                    apply(xfrm, changes)
                except XfrmError:
                    if present and p["direction"] == "inbound":  # what the kernel refused
                        unrecord_refused(state, table, wanted, xfrm.sas())  # was never made
                    raise
                if present:
                    if sessions is not None:
                        state.save_sessions(sessions)
                    state.save_derived_keys(p["direction"], derived_keys)
                    if p["direction"] == "outbound":
                        record_sent(state, sent, wanted)
                for item in pending:
                    module.warn(f"{p['direction']} SA of {item}: no nonce yet, not installed")
                changes = [c for c in changes if c.before or c.after]
    except (XfrmError, keys.KeyMaterialError, NetnsError) as exc:
        raise arguments.Failed(str(exc)) from exc
    lines = [str(c) for c in changes]
    spis, epochs = outbound_view(wanted) if p["direction"] == "outbound" else ({}, {})
    return {
        "changed": bool(changes), "changes": lines, "outbound_spis": spis,
        "outbound_epochs": epochs, "pending": pending,
        "sas": [{"peer": w.peer, "epoch": w.epoch, "src": w.sa.src, "dst": w.sa.dst,
                 "spi": w.sa.spi, "key": w.sa.fingerprint} for w in wanted if w.sa is not None],
        "diff": {"prepared": "".join(f"{line}\n" for line in lines)}}
