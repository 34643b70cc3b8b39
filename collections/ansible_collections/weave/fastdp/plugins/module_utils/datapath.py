"""Several converge steps in one Python process (weave.fastdp.datapath), and the record of the
inbound half that lets weave.fastdp.preflight tell the controller it need not run again.

A no-op converge costs one module run per half per host; under emulation each run costs
seconds. The inbound half records its options (never a password) under the fingerprint the
controller computed of them. The next run's preflight re-runs the recorded steps in check mode
with this run's password: when nothing would change and the controller's fingerprint of this
run's options is the recorded one, the inbound half would change nothing, so the controller
skips it and uses what the check published."""

from __future__ import annotations

from ansible_collections.weave.fastdp.plugins.module_utils import (
    arguments,
    guards,
    keys,
    status,
    vxlan,
)
from ansible_collections.weave.fastdp.plugins.module_utils import xfrm_inventory as inventory
from ansible_collections.weave.fastdp.plugins.module_utils.fingerprint import (  # noqa: F401  # pylint: disable=unused-import
    PASSWORD,
    fingerprint,
    without_password,
)

# xfrm_state's options for one direction, always present: no state, no direction, and what
# state=present requires is required.
SA_STEP = {"type": "dict", "options": {
    **{k: v for k, v in inventory.SA_ARGUMENT_SPEC.items() if k not in ("state", "direction")},
    **{k: {**inventory.SA_ARGUMENT_SPEC[k], "required": True}
       for k in inventory.SA_REQUIRED_WHEN_PRESENT if k != "direction"},
}}

ARGUMENT_SPEC = {
    "nonces": {"type": "dict", "options": inventory.NONCES_ARGUMENT_SPEC},
    "guards": {"type": "dict", "options": guards.ARGUMENT_SPEC, "required_if": guards.REQUIRED_IF},
    "inbound_sas": SA_STEP,
    "vxlan": {"type": "dict", "options": vxlan.ARGUMENT_SPEC, "required_if": vxlan.REQUIRED_IF},
    "outbound_sas": SA_STEP,
    "outbound_policies": {"type": "dict", "options": {
        "mark": {"type": "raw", "default": guards.DEFAULT_MARK},
        **arguments.RETAIN_AND_PURGE,
    }},
    "verify": {"type": "dict", "options": {
        k: v for k, v in status.ARGUMENT_SPEC.items() if k != "verify"}},
}

STEPS = (("nonces", inventory.converge_nonces), ("guards", guards.converge),
         ("inbound_sas", inventory.converge_sas), ("vxlan", vxlan.converge),
         ("outbound_sas", inventory.converge_sas),
         ("outbound_policies", inventory.converge_policies),  # never tunnel traffic in clear
         ("verify", status.report))


def wired(name: str, p: dict, done: dict) -> dict:
    """The parameters of step ``name``: its own, with what earlier steps (``done``) decided."""
    params = dict(p[name])
    if name == "nonces" and p.get("inbound_sas") is not None:
        # A recorded nonce is kept only while the kernel holds its SA with these options.
        sas = p["inbound_sas"]
        params["_inbound_sa"] = {
            "reqid": sas["reqid"], "cipher": sas["cipher"], "replay_window": sas["replay_window"],
            "addresses": {peer["name"]: peer["address"] for peer in sas["peers"]}}
    elif name == "guards" and "nonces" in done:
        spis = done["nonces"]["inbound_spis"]
        params["peers"] = [{**peer, "inbound_spis": spis.get(peer["name"], [])}
                           for peer in params["peers"]]
    elif name.endswith("_sas"):
        params.update(state="present", direction=name[:-len("_sas")])
    elif name == "outbound_policies":
        sas = p["outbound_sas"]
        params.update(reqid=sas["reqid"], netns=sas["netns"], policies=inventory.outbound_policies(
            done["outbound_sas"]["outbound_spis"], sas["local_address"], params.pop("mark"),
            sas["reqid"]))
    elif name == "verify":
        params["verify"] = True
    return params


def run_steps(module, p: dict) -> tuple[dict, list]:
    """Each step given in ``p`` in STEPS order: ({step: result}, [diff per step]). A failing
    step raises Failed naming itself, with the results of the steps before it."""
    done, diffs = {}, []
    for name, step in STEPS:
        if p.get(name) is None:
            continue
        try:
            result = step(module, wired(name, p, done))
        except arguments.Failed as exc:
            raise arguments.Failed(f"{name}: {exc}", **{name: exc.result}, **done,
                                   changed=any(r["changed"] for r in done.values())) from exc
        diffs.append(result.pop("diff", None) or {})
        done[name] = result
    return done, diffs


def record_inbound_half(p: dict) -> None:
    """Keep the inbound half's options (no password) under the controller's fingerprint."""
    steps = without_password({name: p[name] for name, _step in STEPS})
    keys.StateDir(p["nonces"]["state_dir"]).save_inbound_half(
        {"fingerprint": p["record"], "steps": steps})


def settled_inbound_half(module, state_dir: str, password: str) -> dict | None:
    """{fingerprint, nonces, cipher} of the recorded inbound half when running it again with
    ``password`` would change nothing, else None; ``cipher`` is its SAs' when it holds guards,
    inbound SAs and a VXLAN device (the kernel runs every part a preflight probes), else None.
    Runs the steps with ``module.check_mode``, which the caller must have set."""
    if not module.check_mode:
        raise RuntimeError("the recorded inbound half is only ever checked in check mode")
    record = keys.StateDir(state_dir).inbound_half()
    if record is None:
        return None
    steps = {name: {**options, PASSWORD: password} if PASSWORD in ARGUMENT_SPEC[name]["options"]
             else options for name, options in record["steps"].items()}
    try:
        done, _diffs = run_steps(module, steps)
    except arguments.Failed:
        return None
    if any(result["changed"] for result in done.values()):
        return None
    runs_every_part = {"guards", "inbound_sas", "vxlan"} <= set(done)
    return {"fingerprint": record["fingerprint"], "nonces": done.get("nonces"),
            "cipher": steps["inbound_sas"]["cipher"] if runs_every_part else None}
