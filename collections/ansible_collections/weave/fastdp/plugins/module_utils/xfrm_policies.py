"""The mesh's XFRM policies, compared with the kernel's: the backend of the xfrm_policy module
(its step is at the end), and the changes every XFRM step makes (``Change``, ``apply``).

Decide first (pure functions from the declared policies and one kernel dump to a list of
changes), act second (``apply``), so check mode reports exactly what a real run does. Only
policies whose template carries this mesh's reqid are ours; peers in ``retain`` (outside this
run) are never touched. Nothing here derives a key: no cryptography is imported (xfrm_policy
and the controller's filters run without it).
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
from dataclasses import dataclass

from ansible_collections.weave.fastdp.plugins.module_utils import arguments, inet
from ansible_collections.weave.fastdp.plugins.module_utils.netns import NetnsError
from ansible_collections.weave.fastdp.plugins.module_utils.xfrm import (
    SA,
    Policy,
    Selector,
    Template,
    XfrmError,
    XfrmSocket,
    check_spi,
)

PROTOCOL_NUMBERS = {"any": 0, "icmp": 1, "tcp": 6, "udp": 17}


@dataclass(frozen=True)
class Change:
    """One added (+), changed (~) or removed (-) SA or policy, readable without any key."""

    sign: str
    what: str  # "inbound SA from h2 (epoch 1)", "outbound policy to 198.51.100.12", ...
    before: SA | Policy | None = None
    after: SA | Policy | None = None

    def __str__(self) -> str:
        if self.sign == "~":
            return f"~ {self.what}: {self.before}; changed: " + ", ".join(
                _differences(self.before, self.after))
        shown = self.after if self.sign == "+" else self.before
        return f"{self.sign} {self.what}: {shown if shown is not None else 'key not made yet (check mode)'}"


def _differences(before, after) -> list[str]:
    out = []
    for f in dataclasses.fields(before):
        old, new = getattr(before, f.name), getattr(after, f.name)
        if f.compare and old != new:
            if f.name == "key":
                old, new = before.fingerprint, after.fingerprint
            elif f.name == "templates":
                old, new = "; ".join(map(str, old)), "; ".join(map(str, new))
            out.append(f"{f.name} {old} -> {new}")
    return out


def apply(xfrm: XfrmSocket, changes: list[Change]) -> None:
    """Make before break: additions first, then changes, removals last. An SA cannot be
    changed in place (see xfrm.XFRM_MSG_UPDSA), so it is deleted and added again; a policy's
    templates are switched in place."""
    for change in sorted(changes, key=lambda c: "+~-".index(c.sign)):
        if change.after is None and change.sign == "+":
            continue  # pending: only check mode gets here
        if isinstance(change.before or change.after, SA):
            if change.before is not None:
                xfrm.delete_sa(change.before)
            if change.after is not None:
                xfrm.add_sa(change.after)
        elif change.sign == "+":
            xfrm.add_policy(change.after)
        elif change.sign == "~":
            xfrm.update_policy(change.after)
        else:
            xfrm.delete_policy(change.before)


# --- policies ---------------------------------------------------------------------------

def wanted_policies(declared: list[dict], reqid: int) -> list[Policy]:
    """Policies as declared; raise XfrmError naming the bad field."""
    wanted, seen = [], {}
    for i, p in enumerate(declared):
        try:
            policy = _wanted_policy(p, reqid)
        except XfrmError as exc:  # names a field of the policy: the index is added only now
            raise XfrmError(f"policies[{i}].{exc}") from None
        if policy.identity in seen:
            raise XfrmError(f"policies[{i}]: same selector, direction and mark as "
                            f"policies[{seen[policy.identity]}]")
        seen[policy.identity] = i
        wanted.append(policy)
    return wanted


def _wanted_policy(p: dict, reqid: int) -> Policy:
    """One declared policy; XfrmError naming the field (``dst``, ``template.src``)."""
    src, src_len, src_version = _prefix(p["src"], "src")
    dst, dst_len, dst_version = _prefix(p["dst"], "dst")
    if src_version != dst_version:
        raise XfrmError(f"dst: {p['dst']} is not of the family of src {p['src']}")
    proto = p["proto"]
    if isinstance(proto, str):
        proto = int(proto) if proto.isdigit() else PROTOCOL_NUMBERS.get(proto)
    if not isinstance(proto, int) or not 0 <= proto <= 255:
        raise XfrmError(f"proto: {p['proto']!r} is not one of {sorted(PROTOCOL_NUMBERS)} or a "
                        "protocol number")
    t = p["template"]
    tmpl_reqid = reqid if t.get("reqid") is None else t["reqid"]
    if tmpl_reqid != reqid:
        raise XfrmError(f"template.reqid: {tmpl_reqid} differs from reqid {reqid}: the policy "
                        "would not be ours and its SA would not match")
    try:
        check_spi(t["spi"])
        template = Template(src=inet.field("src", t["src"], XfrmError),
                            dst=inet.field("dst", t["dst"], XfrmError), spi=t["spi"], reqid=reqid)
    except XfrmError as exc:
        raise XfrmError(f"template.{exc}") from None
    return Policy(selector=Selector(src, dst, src_len, dst_len, proto), dir=p["direction"],
                  templates=(template,), mark=p["mark"] or 0,
                  mask=p["mask"] if p["mask"] is not None else (p["mark"] or 0))


def _prefix(value, name) -> tuple[str, int, int]:
    """(address, prefix length, IP version) of an address or network."""
    network = _network(value)
    if network is None:
        raise XfrmError(f"{name}: {value!r} is not an IP address or network "
                        "(host bits must be zero)")
    return network


@functools.lru_cache(maxsize=4096)  # a declared mesh names the local address in every policy
def _network(value) -> tuple[str, int, int] | None:
    if "/" not in str(value):  # an address, as the mesh declares its policies: no ipaddress
        try:
            raw = inet.packed(str(value))
        except ValueError:
            return None
        return inet.text(raw), len(raw) * 8, 4 if len(raw) == 4 else 6
    try:
        network = ipaddress.ip_network(value)
    except ValueError:
        return None
    return inet.text(network.network_address.packed), network.prefixlen, network.version


def _is_ours(policy: Policy, reqid: int) -> bool:
    return any(t.reqid == reqid for t in policy.templates)


def _label(policy: Policy) -> str:
    return f"{policy.dir} policy {policy.selector}"


def policy_changes(have: list[Policy], wanted: list[Policy], *, reqid, retain,
                   purge) -> list[Change]:
    """Changes that make the policies with a template of ``reqid`` the wanted ones. A wanted
    policy whose place (selector, direction, mark) a foreign policy holds is an error."""
    present = {p.identity: p for p in have}
    changes = []
    for i, policy in enumerate(wanted):
        old = present.get(policy.identity)
        if old is None:
            changes.append(Change("+", _label(policy), after=policy))
        elif not _is_ours(old, reqid):
            raise XfrmError(f"policies[{i}]: a policy of another owner holds its place ({old}); "
                            "it is not touched")
        elif old != policy:
            changes.append(Change("~", _label(policy), before=old, after=policy))
    wanted_ids = {p.identity for p in wanted}
    for policy in have:
        if (purge and _is_ours(policy, reqid) and policy.identity not in wanted_ids
                and not _retained(policy, retain)):
            changes.append(Change("-", _label(policy), before=policy))
    return changes


def _retained(policy: Policy, retain) -> bool:
    ends = {policy.selector.src, policy.selector.dst}
    ends |= {a for t in policy.templates for a in (t.src, t.dst)}
    return bool(ends & set(retain))


def outbound_policies(outbound_spis: dict, local_address: str, mark, reqid: int) -> list[dict]:
    """The outbound policy towards each peer (as xfrm_policy declares them): its marked tunnel
    traffic goes through the SA of the newest epoch the peer published (``outbound_spis``:
    {peer: {address, spi}}, from the outbound SAs' step)."""
    mark = int(mark, 0) if isinstance(mark, str) else int(mark)
    return [{"src": local_address, "dst": sa["address"], "proto": "udp", "direction": "out",
             "mark": mark, "mask": mark,
             "template": {"src": local_address, "dst": sa["address"], "spi": sa["spi"],
                          "reqid": int(reqid)}}
            for _peer, sa in sorted(outbound_spis.items())]


# --- the module's step -------------------------------------------------------------------

POLICY_ARGUMENT_SPEC = {
    "reqid": {"type": "int", "required": True},
    "policies": {"type": "list", "elements": "dict", "required": True, "options": {
        "src": {"type": "str", "required": True},
        "dst": {"type": "str", "required": True},
        "proto": {"type": "raw", "default": "any"},
        "direction": {"type": "str", "choices": ["out", "in", "fwd"], "default": "out"},
        "mark": {"type": "int", "default": 0},
        "mask": {"type": "int"},
        "template": {"type": "dict", "required": True, "options": {
            "src": {"type": "str", "required": True},
            "dst": {"type": "str", "required": True},
            "spi": {"type": "int", "required": True},
            "reqid": {"type": "int"},
        }},
    }},
    **arguments.RETAIN_AND_PURGE,
    **arguments.NETNS,
}


def converge_policies(module, p: dict) -> dict:
    """The xfrm_policy module's step: this mesh's policies, exactly the declared set."""
    try:
        wanted = wanted_policies(p["policies"], p["reqid"])
        with XfrmSocket(p["netns"]) as xfrm:
            changes = policy_changes(xfrm.policies(), wanted, reqid=p["reqid"],
                                     retain=p["retain"], purge=p["purge"])
            if not module.check_mode:
                apply(xfrm, changes)
    except (XfrmError, NetnsError) as exc:
        raise arguments.Failed(str(exc)) from exc
    lines = [str(c) for c in changes]
    return {"changed": bool(changes), "changes": lines,
            "diff": {"prepared": "".join(f"{line}\n" for line in lines)}}
