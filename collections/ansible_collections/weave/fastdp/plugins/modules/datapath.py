#!/usr/bin/python
DOCUMENTATION = r"""
module: datapath
short_description: Several steps of a host's encrypted fast datapath in one module run
description:
  - Runs the steps it is given, each with the options of its own module, in the one order
    that never lets tunnel traffic out in clear, and stops at the first that fails
    (O(nonces), O(guards), O(inbound_sas), O(vxlan), O(outbound_sas), O(outbound_policies),
    then O(verify), which only reads and sends ICMP echo).
  - The same steps as the single modules, in one Python process. Every module run costs a
    Python start and Ansible's imports on the host, which dominate a converge that changes
    little (seconds per run under emulation). The mesh role runs it twice per host, the
    inbound half on every host before the outbound half on any; the outbound half verifies
    every pair, which holds when no host changed anything during the run.
  - Between steps, O(guards.peers[].inbound_spis) come from the O(nonces) step when both are
    given, and O(outbound_policies) sends each peer's marked tunnel traffic through the newest
    outbound SA of the O(outbound_sas) step.
version_added: 0.1.0
author: weave.fastdp developers
options:
  nonces:
    description: The options of M(weave.fastdp.nonces).
    type: dict
  guards:
    description: The options of M(weave.fastdp.guards); with O(nonces), each peer's
      C(inbound_spis) are those of the O(nonces) step (by peer C(name)).
    type: dict
  inbound_sas:
    description: The options of M(weave.fastdp.xfrm_state) for O(weave.fastdp.xfrm_state#module:direction=inbound),
      without C(state) and C(direction).
    type: dict
  vxlan:
    description: The options of M(weave.fastdp.vxlan).
    type: dict
  outbound_sas:
    description: The options of M(weave.fastdp.xfrm_state) for O(weave.fastdp.xfrm_state#module:direction=outbound),
      without C(state) and C(direction).
    type: dict
  outbound_policies:
    description: The outbound policy towards each peer of O(outbound_sas) (M(weave.fastdp.xfrm_policy)
      with its reqid and netns), marked tunnel traffic through the newest SA.
    type: dict
    suboptions:
      mark:
        description: The packet mark bit the policies select on (as the guards mark).
        type: raw
        default: 0x20000
      retain:
        description: Addresses of peers outside this run; policies naming them are never touched.
        type: list
        elements: str
        default: []
      purge:
        description: Remove this mesh's policies that are not wanted (and not retained).
        type: bool
        default: true
  verify:
    description: The options of M(weave.fastdp.mesh_info) but O(weave.fastdp.mesh_info#module:verify),
      always on; traffic to every peer must move the pair's ESP counters. Broken pairs are
      reported in RV(verify.broken), not failed on (a peer may still be converging).
    type: dict
attributes:
  check_mode:
    support: full
    details: Each step as in its module's check mode; a step sees only what earlier steps
      have really made, so SAs of nonces made in the same run are reported pending.
  diff_mode:
    support: full
    details: One diff per step that ran.
seealso:
  - module: weave.fastdp.nonces
  - module: weave.fastdp.guards
  - module: weave.fastdp.xfrm_state
  - module: weave.fastdp.vxlan
  - module: weave.fastdp.xfrm_policy
  - module: weave.fastdp.mesh_info
"""

EXAMPLES = r"""
- name: Inbound half
  weave.fastdp.datapath:
    nonces: "{{ nonce_options }}"
    guards: {mesh: weave, local_address: 198.51.100.11, peers: [{name: h2, address: 198.51.100.12}]}
    inbound_sas: "{{ sa_options }}"
    vxlan: {name: wf-weave, vni: 4242, local: 198.51.100.11, peers: [198.51.100.12]}
  register: inbound

- name: Outbound half
  weave.fastdp.datapath:
    outbound_sas: "{{ sa_options }}"
    outbound_policies: {mark: 0x20000}
    verify:
      mesh: weave
      reqid: 4242
      device: wf-weave
      local_address: 198.51.100.11
      peers: [{name: h2, address: 198.51.100.12, overlay_address: 203.0.113.2/24}]
  register: outbound

- name: Every pair carries traffic over ESP
  ansible.builtin.assert:
    that: outbound.verify.broken | length == 0
"""

RETURN = r"""
nonces:
  description: The result of the O(nonces) step (see M(weave.fastdp.nonces)), when it ran.
  type: dict
  returned: when given
guards:
  description: The result of the O(guards) step, when it ran.
  type: dict
  returned: when given
inbound_sas:
  description: The result of the O(inbound_sas) step, when it ran.
  type: dict
  returned: when given
vxlan:
  description: The result of the O(vxlan) step, when it ran.
  type: dict
  returned: when given
outbound_sas:
  description: The result of the O(outbound_sas) step (its C(outbound_spis), C(outbound_epochs)), when it ran.
  type: dict
  returned: when given
outbound_policies:
  description: The result of the O(outbound_policies) step, when it ran.
  type: dict
  returned: when given
verify:
  description: The result of the O(verify) step (see M(weave.fastdp.mesh_info)), when it ran.
  type: dict
  returned: when given
  contains:
    broken:
      description: One line per broken pair naming the likely cause.
      type: list
      elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.weave.fastdp.plugins.module_utils import arguments, guards, status, vxlan
from ansible_collections.weave.fastdp.plugins.module_utils import xfrm_inventory as inventory

# xfrm_state's options for one direction, always present: no state, no direction, and what
# state=present requires is required.
SA_STEP = {"type": "dict", "options": {
    **{k: v for k, v in inventory.SA_ARGUMENT_SPEC.items() if k not in ("state", "direction")},
    **{k: {**inventory.SA_ARGUMENT_SPEC[k], "required": True}
       for k in inventory.SA_REQUIRED_WHEN_PRESENT if k != "direction"},
}}


STEPS = (("nonces", inventory.converge_nonces), ("guards", guards.converge),
         ("inbound_sas", inventory.converge_sas), ("vxlan", vxlan.converge),
         ("outbound_sas", inventory.converge_sas),
         ("outbound_policies", inventory.converge_policies),  # never tunnel traffic in clear
         ("verify", status.report))


def wired(name: str, p: dict, done: dict) -> dict:
    """The parameters of step ``name``: its own, with what earlier steps (``done``) decided."""
    params = dict(p[name])
    if name == "guards" and "nonces" in done:
        spis = done["nonces"]["inbound_spis"]
        params["peers"] = [{**peer, "inbound_spis": spis.get(peer["name"], [])}
                           for peer in params["peers"]]
    elif name.endswith("_sas"):
        params.update(state="present", direction=name.removesuffix("_sas"))
    elif name == "outbound_policies":
        sas = p["outbound_sas"]
        params.update(reqid=sas["reqid"], netns=sas["netns"], policies=inventory.outbound_policies(
            done["outbound_sas"]["outbound_spis"], sas["local_address"], params.pop("mark"),
            sas["reqid"]))
    elif name == "verify":
        params["verify"] = True
    return params


def main():
    module = AnsibleModule(
        argument_spec={
            "nonces": {"type": "dict", "options": inventory.NONCES_ARGUMENT_SPEC},
            "guards": {"type": "dict", "options": guards.ARGUMENT_SPEC,
                       "required_if": guards.REQUIRED_IF},
            "inbound_sas": SA_STEP,
            "vxlan": {"type": "dict", "options": vxlan.ARGUMENT_SPEC,
                      "required_if": vxlan.REQUIRED_IF},
            "outbound_sas": SA_STEP,
            "outbound_policies": {"type": "dict", "options": {
                "mark": {"type": "raw", "default": guards.DEFAULT_MARK},
                **arguments.RETAIN_AND_PURGE,
            }},
            "verify": {"type": "dict", "options": {
                k: v for k, v in status.ARGUMENT_SPEC.items() if k != "verify"}},
        },
        required_by={"outbound_policies": "outbound_sas"},
        supports_check_mode=True,
    )
    done, diffs = {}, []
    for name, step in STEPS:
        if module.params[name] is None:
            continue
        try:
            result = step(module, wired(name, module.params, done))
        except arguments.Failed as exc:
            module.fail_json(msg=f"{name}: {exc}", **{name: exc.result}, **done,
                             changed=any(r["changed"] for r in done.values()))
        diffs.append(result.pop("diff", None) or {})
        done[name] = result
    module.exit_json(changed=any(r["changed"] for r in done.values()), diff=diffs, **done)


if __name__ == "__main__":
    main()
