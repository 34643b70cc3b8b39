#!/usr/bin/python
# Copyright (c) weave.fastdp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
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
    every pair, which holds when no host changed anything during the run. It skips the
    inbound half of a host whose preflight found it settled (see O(record)).
  - Between steps, O(guards.peers[].inbound_spis) come from the O(nonces) step when both are
    given, and O(outbound_policies) sends each peer's marked tunnel traffic through the newest
    outbound SA of the O(outbound_sas) step.
version_added: 0.1.0
author: weave.fastdp contributors (@weave-fastdp)
requirements:
  - python >= 3.8 (the distribution's own)
  - cryptography >= 3.3 (the distribution's python3-cryptography)
  - iptables, with iptables-save and iptables-restore (ip6tables for IPv6 underlays), for
    the O(guards) and O(verify) steps
options:
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
  record:
    description:
      - A fingerprint of the steps' options (the role computes it with the
        P(weave.fastdp.fingerprint#filter) filter). After every step succeeded, outside check mode,
        the steps' options without the password are kept under it in O(nonces.state_dir).
      - The next M(weave.fastdp.preflight) given the password checks them in check mode and
        returns the fingerprint when running them again would change nothing, so the controller
        can skip an inbound half whose options have the same fingerprint.
      - Only with the inbound half's steps (O(nonces) and any of O(guards), O(inbound_sas),
        O(vxlan)).
    type: str
extends_documentation_fragment:
  - weave.fastdp.steps.datapath
  - weave.fastdp.attributes
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
- name: Inbound half, recorded for the next run's preflight
  weave.fastdp.datapath:
    nonces: "{{ inbound_half.nonces }}"
    guards: "{{ inbound_half.guards }}"
    inbound_sas: "{{ inbound_half.inbound_sas }}"
    vxlan: "{{ inbound_half.vxlan }}"
    record: "{{ inbound_half | weave.fastdp.fingerprint }}"
  vars:
    inbound_half:
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
from ansible_collections.weave.fastdp.plugins.module_utils import arguments, datapath, keys


def main():
    module = AnsibleModule(
        argument_spec={**datapath.ARGUMENT_SPEC, "record": {"type": "str"}},
        required_by={"outbound_policies": "outbound_sas", "record": "nonces"},
        mutually_exclusive=[("record", step)
                            for step in ("outbound_sas", "outbound_policies", "verify")],
        supports_check_mode=True,
    )
    arguments.require(module, keys.MISSING)
    try:
        done, diffs = datapath.run_steps(module, module.params)
    except arguments.Failed as exc:
        module.fail_json(msg=str(exc), **exc.result)
    if module.params["record"] and not module.check_mode:
        datapath.record_inbound_half(module.params)
    module.exit_json(changed=any(r["changed"] for r in done.values()), diff=diffs, **done)


if __name__ == "__main__":
    main()
