#!/usr/bin/python
# Copyright (c) weave.fastdp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
DOCUMENTATION = r"""
module: preflight
short_description: Can this host run the encrypted fast datapath? (read-only)
description:
  - Checks the kernel version (at least 4.2) and probes for real, in a throwaway network
    namespace that leaves nothing behind, that an ESP transport SA with the chosen AEAD, a VXLAN
    device and the iptables matches the guards use (policy, mark, esp) can be made.
  - Fails naming each missing part (unless O(fail_on_missing=false), for a caller that first
    checks the whole mesh and then fails itself). There is no plaintext fallback.
  - Names in RV(lacking) what this host lacks that a distribution package brings (Python's
    C(cryptography), the iptables tools), so that a caller can install exactly that, and
    only on the hosts that lack something (the mesh role does, see its
    C(fastdp_install_packages)). A host that lacks C(cryptography) fails here with Ansible's
    missing-library message, unless O(fail_on_missing=false).
  - Also returns the underlay address, interface and MTU, the highest key epoch this host
    already keeps nonces for, so the whole mesh can be checked before any host changes, and the
    public key of the host's identity once M(weave.fastdp.identity) has made it.
version_added: 0.1.0
author: weave.fastdp contributors (@weave-fastdp)
requirements:
  - python >= 3.8 (the distribution's own)
  - cryptography >= 3.3 (the distribution's python3-cryptography)
  - iptables (the probe of the matches the guards use)
options:
  cipher:
    description: The mesh's cipher, probed as an ESP SA.
    type: str
    choices: [aes-gcm, chacha20-poly1305]
    default: aes-gcm
  underlay_address:
    description: This host's underlay address; default the default route's interface address.
    type: str
  probe:
    description: Run the capability probes (false only reads the facts). They are skipped
      anyway when RV(settled_inbound_half) already runs every part with O(cipher).
    type: bool
    default: true
  fail_on_missing:
    description: Fail when a part is missing; false only reports it in RV(missing) and
      RV(lacking). Without C(cryptography), RV(public_key) and RV(settled_inbound_half) are
      then null.
    type: bool
    default: true
  password:
    description:
      - The mesh password. With it, the inbound half that M(weave.fastdp.datapath) recorded in
        O(state_dir) at its last run (O(weave.fastdp.datapath#module:record)) is run again in
        check mode with this password, and RV(settled_inbound_half) says whether it would
        change nothing.
    type: str
extends_documentation_fragment:
  - weave.fastdp.state_dir
  - weave.fastdp.netns
  - weave.fastdp.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Probe the kernel
  weave.fastdp.preflight:
    cipher: aes-gcm
  register: fastdp_preflight
"""

RETURN = r"""
kernel:
  description: The running kernel's release.
  type: str
  returned: always
missing:
  description: Each missing part and why (empty when the host can run the mesh).
  type: dict
  returned: always
underlay_address:
  description: The underlay address.
  type: str
  returned: always
underlay_interface:
  description: Its interface.
  type: str
  returned: always
underlay_mtu:
  description: That interface's MTU.
  type: int
  returned: always
recorded_epoch:
  description: The highest key epoch this host keeps nonces for, or null.
  type: int
  returned: always
public_key:
  description: The host's X25519 public key (base64), or null before it has an identity.
  type: str
  returned: always
settled_inbound_half:
  description: The recorded inbound half, when running it again would change nothing (the
    kernel and the state dir hold all it makes); null when it would change something, when
    none is recorded or without O(password). The controller may skip an inbound half whose
    options have this fingerprint and use these nonces.
  type: dict
  returned: always
  contains:
    fingerprint:
      description: The fingerprint it was recorded under.
      type: str
    nonces:
      description: The result of its nonces step (what this host publishes to its peers).
      type: dict
    cipher:
      description: The cipher of its inbound SAs when it also holds guards and a VXLAN device,
        so the kernel already runs every part the probes look for; else null.
      type: str
lacking:
  description:
    - What this host lacks that a distribution package brings, with why; empty when nothing.
    - V(cryptography) is the Python library (C(python3-cryptography) on Debian, Ubuntu and the
      RHEL family), missing or older than 3.3; V(iptables) the iptables tools (C(iptables),
      C(iptables-nft) on the RHEL family). V(cryptography) is also in RV(missing), a missing
      iptables there as the probe's V(xt_policy).
  type: dict
  returned: always
  sample: {"cryptography": "cryptography >= 3.3 (the distribution's python3-cryptography): No module named 'cryptography'"}
lost_outbound:
  description: The SPIs, by peer name, of outbound SAs this host installed that its kernel no
    longer holds (a reboot, a flush). Their key is never installed again; each peer makes a
    fresh nonce and SPI for them.
  type: dict
  returned: always
probed:
  description: Whether the capability probes ran. They are skipped when RV(settled_inbound_half)
    already runs every part with O(cipher).
  type: bool
  returned: always
"""

import platform
import shutil

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.weave.fastdp.plugins.module_utils import (
    arguments,
    datapath,
    keys,
    mesh_keys,
    preflight,
)
from ansible_collections.weave.fastdp.plugins.module_utils import xfrm_inventory as inventory
from ansible_collections.weave.fastdp.plugins.module_utils.mesh import CIPHERS
from ansible_collections.weave.fastdp.plugins.module_utils.netns import NetnsError, entered
from ansible_collections.weave.fastdp.plugins.module_utils.rtnl import Rtnl
from ansible_collections.weave.fastdp.plugins.module_utils.xfrm import (
    XfrmError,
    XfrmSocket,
    esp_probe,
)

_SBIN = "/usr/local/sbin:/usr/sbin:/sbin"


def _lacking() -> dict:
    """{what: why} of what a distribution package brings and this host lacks."""
    lacking = {}
    if keys.MISSING:
        why = keys.MISSING["exception"].strip().splitlines()[-1]
        lacking["cryptography"] = f"{keys.MISSING['library']}: {why}"
    if not (shutil.which("iptables") or shutil.which("iptables", path=_SBIN)):
        lacking["iptables"] = "iptables is not installed"
    return lacking


def main():
    module = AnsibleModule(
        argument_spec={
            "cipher": {"type": "str", "choices": sorted(CIPHERS), "default": "aes-gcm"},
            "underlay_address": {"type": "str"},
            "probe": {"type": "bool", "default": True},
            "fail_on_missing": {"type": "bool", "default": True},
            "password": {"type": "str", "no_log": True},
            **arguments.NETNS,
            **arguments.STATE_DIR,
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["fail_on_missing"]:
        arguments.require(module, keys.MISSING)
    module.check_mode = True  # read-only: the recorded inbound half is only ever checked
    lacking = _lacking()
    missing = {k: v for k, v in lacking.items() if k == "cryptography"}  # iptables: the probe's
    if preflight.kernel_version() < preflight.MIN_KERNEL:
        missing["kernel"] = f"{platform.release()} is older than 4.2"
    facts = {"underlay_address": p["underlay_address"], "underlay_interface": None,
             "underlay_mtu": None}
    try:
        with entered(p["netns"]), Rtnl() as rtnl:
            facts = preflight.underlay(rtnl, p["underlay_address"])
    except RuntimeError as exc:
        missing["underlay"] = str(exc)
    except NetnsError as exc:
        module.fail_json(msg=f"netns: {exc}")
    state = keys.StateDir(p["state_dir"])
    try:
        recorded = mesh_keys.recorded_epoch(state.inbound())
    except ValueError as exc:
        module.fail_json(msg=f"state_dir: {p['state_dir']}/inbound.json is damaged: {exc}")
    private = None
    try:
        if not keys.MISSING:
            private = state.identity()
    except keys.KeyMaterialError as exc:
        module.fail_json(msg=f"state_dir: {exc}")
    lost = {}
    try:
        sent = state.sent()
        if sent:
            with XfrmSocket(p["netns"]) as xfrm:
                lost = inventory.lost_outbound(sent, xfrm.sas())
    except (XfrmError, NetnsError):
        lost = {}  # no XFRM here: the probes name what is missing
    settled = None
    if p["password"] is not None and private is not None:
        settled = datapath.settled_inbound_half(module, p["state_dir"], p["password"])
    # A settled inbound half with this cipher is the kernel already running every probed part.
    probed = p["probe"] and not (settled and settled["cipher"] == p["cipher"])
    if probed:
        results = preflight.probe(CIPHERS[p["cipher"]], esp_probe, preflight.vxlan_probe)
        missing.update({part: why for part, why in results.items() if why})
    result = {"changed": False, "kernel": platform.release(), "missing": missing, "lacking": lacking,
              "probed": probed, "recorded_epoch": recorded, "settled_inbound_half": settled,
              "lost_outbound": lost,
              "public_key": keys.public_key_text(private) if private else None, **facts}
    if missing and p["fail_on_missing"]:
        module.fail_json(msg="this host cannot run the encrypted fast datapath: " + "; ".join(
            f"{part}: {why}" for part, why in missing.items()), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
