#!/usr/bin/python
# Copyright (c) weave.fastdp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
DOCUMENTATION = r"""
module: gcp_esp_firewall
short_description: The Google Cloud VPC firewall rule that lets a mesh's ESP in
description:
  - Google Cloud drops ESP (IP protocol 50) unless a VPC firewall rule allows it. This module
    ensures one ingress rule per mesh and network that allows C(esp) (and only what
    O(extra_allowed) adds) from the mesh members' underlay addresses or source tags, to the
    target tags or service accounts of the mesh's instances.
  - Reads the rule, compares it order-insensitively with the API's defaults filled in (an ESP
    entry has no C(ports)), then inserts, patches only the fields that differ, or deletes it,
    and waits for the global operation to be C(DONE). Nothing is written when nothing differs.
  - The rule's description carries the marker C([managed by weave.fastdp]). A rule of the same
    name without it is refused unless O(take_over=true).
  - Requests with HTTP 429 or 5xx are retried with exponential backoff for at most
    O(retry_timeout) seconds; each write carries a request ID, so a retried write applies once.
  - Runs on the controller (with C(delegate_to) V(localhost)) and needs C(google-auth) and C(requests).
version_added: 0.1.0
author: weave.fastdp contributors (@weave-fastdp)
requirements:
  - python >= 3.8 (the distribution's own)
  - google-auth
  - requests
options:
  name:
    description: Name of the rule (unique in the project), e.g. C(fastdp-weave-esp).
    type: str
    required: true
  project:
    description: Project ID of the VPC network.
    type: str
    required: true
  network:
    description: The VPC network, as a name, C(global/networks/NAME) or a URL. Cannot change
      once the rule exists.
    type: str
    required: true
  state:
    description: V(absent) deletes the rule (only one this collection made, or with O(take_over)).
    type: str
    choices: [present, absent]
    default: present
  source_ranges:
    description:
      - The mesh members' underlay addresses. A bare address is taken as its own host prefix
        (C(/32), C(/128)); a network must have no host bits set.
      - The rule must have a source; an empty O(source_ranges) with no O(source_tags) fails
        rather than allow ESP from anywhere.
    type: list
    elements: str
    default: []
  purge:
    description: V(true) makes the rule's source ranges, source tags, target tags and target
      service accounts exactly the ones given; V(false) adds them to those the rule already has
      (a run limited to part of the mesh must not cut the others off).
    type: bool
    default: true
  source_tags:
    description: Network tags of the instances ESP may come from.
    type: list
    elements: str
    default: []
  target_tags:
    description: Network tags of the instances the rule applies to (all of the network's
      instances when neither this nor O(target_service_accounts) is set).
    type: list
    elements: str
    default: []
  target_service_accounts:
    description: Service accounts of the instances the rule applies to.
    type: list
    elements: str
    default: []
  extra_allowed:
    description: Protocols allowed besides C(esp). Not needed by the fast datapath.
    type: list
    elements: dict
    default: []
    suboptions:
      protocol:
        description: A protocol name (C(tcp), C(udp), C(ah), ...) or number.
        type: str
        required: true
      ports:
        description: Ports or ranges (C(tcp), C(udp), C(sctp) only).
        type: list
        elements: str
        default: []
  priority:
    description: Rule priority, 0 (highest) to 65535.
    type: int
    default: 1000
  description:
    description: The rule's description; the ownership marker is appended to it.
    type: str
    default: ESP between the nodes of a weave.fastdp mesh
  log:
    description: Firewall rules logging (C(logConfig.enable)).
    type: bool
    default: false
  disabled:
    description: Keep the rule but do not enforce it.
    type: bool
    default: false
  take_over:
    description: Manage (or delete) a rule of this name that has no ownership marker; the
      marker is added to its description.
    type: bool
    default: false
  auth_kind:
    description:
      - V(application) uses Application Default Credentials (C(google.auth.default)),
        V(serviceaccount) a service-account key, V(accesstoken) an OAuth2 access token.
      - Falls back to the environment variable E(GCP_AUTH_KIND).
    type: str
    choices: [application, serviceaccount, accesstoken]
    default: application
  service_account_file:
    description: Path of a service-account JSON key (V(serviceaccount)); E(GCP_SERVICE_ACCOUNT_FILE).
    type: path
  service_account_contents:
    description: The service-account JSON key itself (V(serviceaccount));
      E(GCP_SERVICE_ACCOUNT_CONTENTS).
    type: str
  access_token:
    description: An OAuth2 access token with the compute scope (V(accesstoken)); E(GCP_ACCESS_TOKEN).
    type: str
  endpoint:
    description: Base URL of the Compute Engine v1 API (tests, Private Service Connect).
    type: str
    default: https://compute.googleapis.com/compute/v1/
  retry_timeout:
    description: Seconds within which requests answered with 429 or 5xx are retried.
    type: int
    default: 120
  operation_timeout:
    description: Seconds to wait for a write's operation to be C(DONE).
    type: int
    default: 300
extends_documentation_fragment:
  - weave.fastdp.attributes
attributes:
  check_mode:
    support: full
    details: The rule is read; no write request is sent; C(changed) is predicted.
  diff_mode:
    support: full
    details: Before and after of the rule's managed fields.
seealso:
  - name: VPC firewall rules
    description: The rule's fields and the API's defaults.
    link: https://cloud.google.com/firewall/docs/firewalls
"""

EXAMPLES = r"""
- name: ESP between the mesh's GCP instances
  weave.fastdp.gcp_esp_firewall:
    name: fastdp-weave-esp
    project: my-project
    network: default
    source_ranges: [198.51.100.11, 198.51.100.12, 198.51.100.13]
    target_tags: [fastdp]
  delegate_to: localhost
  run_once: true

- name: With a service-account key from Vault
  weave.fastdp.gcp_esp_firewall:
    name: fastdp-weave-esp
    project: my-project
    network: vpc-a
    source_tags: [fastdp]
    target_tags: [fastdp]
    auth_kind: serviceaccount
    service_account_contents: "{{ vault_gcp_key }}"
  delegate_to: localhost
"""

RETURN = r"""
action:
  description: What was done (or, in check mode, would be done).
  type: str
  returned: always
  sample: patch
  choices: [insert, patch, delete, none]
operation:
  description: Name of the global operation that carried the write; null when nothing was
    written (no change, or check mode).
  type: str
  returned: always
rule:
  description: The rule's managed fields after the run (in check mode, as they would be);
    null when there is no rule.
  type: dict
  returned: always
  sample:
    name: fastdp-weave-esp
    network: projects/my-project/global/networks/default
    allowed: [{IPProtocol: esp}]
    sourceRanges: [198.51.100.11/32, 198.51.100.12/32]
    sourceTags: []
    targetTags: [fastdp]
    targetServiceAccounts: []
    priority: 1000
    description: ESP between the nodes of a weave.fastdp mesh [managed by weave.fastdp]
    logConfig: {enable: false}
    disabled: false
"""

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib
from ansible_collections.weave.fastdp.plugins.module_utils import gcp_firewall


def main():
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "project": {"type": "str", "required": True},
            "network": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "source_ranges": {"type": "list", "elements": "str", "default": []},
            "purge": {"type": "bool", "default": True},
            "source_tags": {"type": "list", "elements": "str", "default": []},
            "target_tags": {"type": "list", "elements": "str", "default": []},
            "target_service_accounts": {"type": "list", "elements": "str", "default": []},
            "extra_allowed": {"type": "list", "elements": "dict", "default": [], "options": {
                "protocol": {"type": "str", "required": True},
                "ports": {"type": "list", "elements": "str", "default": []},
            }},
            "priority": {"type": "int", "default": 1000},
            "description": {"type": "str",
                            "default": "ESP between the nodes of a weave.fastdp mesh"},
            "log": {"type": "bool", "default": False},
            "disabled": {"type": "bool", "default": False},
            "take_over": {"type": "bool", "default": False},
            "auth_kind": {"type": "str", "default": "application",
                          "choices": ["application", "serviceaccount", "accesstoken"],
                          "fallback": (env_fallback, ["GCP_AUTH_KIND"])},
            "service_account_file": {"type": "path",
                                     "fallback": (env_fallback, ["GCP_SERVICE_ACCOUNT_FILE"])},
            "service_account_contents": {"type": "str", "no_log": True, "fallback": (
                env_fallback, ["GCP_SERVICE_ACCOUNT_CONTENTS"])},
            "access_token": {"type": "str", "no_log": True,
                             "fallback": (env_fallback, ["GCP_ACCESS_TOKEN"])},
            "endpoint": {"type": "str", "default": "https://compute.googleapis.com/compute/v1/"},
            "retry_timeout": {"type": "int", "default": 120},
            "operation_timeout": {"type": "int", "default": 300},
        },
        mutually_exclusive=[["service_account_file", "service_account_contents"]],
        required_if=[["auth_kind", "serviceaccount",
                      ["service_account_file", "service_account_contents"], True],
                     ["auth_kind", "accesstoken", ["access_token"]]],
        supports_check_mode=True,
    )
    if gcp_firewall.IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("google-auth and requests"),
                         exception=str(gcp_firewall.IMPORT_ERROR))
    try:
        result = gcp_firewall.converge(module.params, module.check_mode)
    except gcp_firewall.GcpError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
