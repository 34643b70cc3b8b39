#!/usr/bin/python
DOCUMENTATION = r"""
module: xfrm_state
short_description: The host's inbound or outbound ESP SAs of the mesh, keys derived on the host
description:
  - Converges the kernel's XFRM SAs of one direction to exactly what the mesh declares, in one
    call with one kernel dump. Every SA is ESP transport mode with an AEAD (ICV 128 bits), ESN
    and the given replay window, and carries O(reqid), which marks it as this mesh's own. SAs of
    any other reqid are never touched.
  - Keys are derived here, never sent. The session key of each pair is formed from this host's
    X25519
    identity, the peer's public key and the mesh password, then HKDF-SHA256 with the nonce of
    the direction. Inbound SAs use the nonces kept in O(state_dir) (every epoch kept there);
    outbound SAs the nonces each peer published for this host (every published epoch, or only
    the newest with O(retire)).
  - A difference in anything that matters (algorithm, key, ICV, ESN, replay window, mode,
    selector, mark, reqid, source) replaces the SA; the kernel cannot change those in place.
  - With O(state=absent) every SA with O(reqid) is removed.
version_added: 0.1.0
author: weave.fastdp developers
options:
  state:
    description: V(present) converges the SAs of O(direction); V(absent) removes every SA with O(reqid).
    type: str
    choices: [present, absent]
    default: present
  direction:
    description:
      - V(inbound) SAs from each peer to this host, V(outbound) SAs from this host to each peer.
      - Required with O(state=present).
    type: str
    choices: [inbound, outbound]
  retire:
    description: Outbound only the newest epoch each peer published (the last step of a key rotation).
    type: bool
    default: false
  mesh:
    description: Mesh name (bound into every sealed nonce). Required with O(state=present).
    type: str
  peer_name:
    description: This host's peer name (HKDF info of the keys it receives with).
    type: str
  local_address:
    description: This host's underlay address.
    type: str
  epoch:
    description:
      - The mesh's current key epoch. Its SAs are wanted even before their nonces exist, so
        that check mode reports them; omit to converge only the epochs already known.
    type: int
  peers:
    description: The peers of this run.
    type: list
    elements: dict
    suboptions:
      name:
        description: Peer name.
        type: str
        required: true
      address:
        description: The peer's underlay address.
        type: str
        required: true
      public_key:
        description: The peer's X25519 public key (base64) from M(weave.fastdp.identity).
        type: str
      published:
        description: What the peer published for this host with M(weave.fastdp.nonces)
          (V([{epoch, spi, sealed_nonce}])).
        type: list
        elements: dict
      switched_epoch:
        description: Accepted for symmetry with M(weave.fastdp.nonces); not used here.
        type: int
  retain:
    description: Underlay addresses of peers outside this run; their SAs are never touched.
    type: list
    elements: str
    default: []
  password:
    description: The mesh password (keep it in Ansible Vault). Never logged.
    type: str
  reqid:
    description: This mesh's reqid, the ownership marker of its SAs (and of its policies' templates).
    type: int
    required: true
  cipher:
    description: V(aes-gcm) is C(rfc4106(gcm(aes))), V(chacha20-poly1305) is
      C(rfc7539esp(chacha20,poly1305)); both take a 36-byte key (32 + 4-byte salt).
    type: str
    choices: [aes-gcm, chacha20-poly1305]
    default: aes-gcm
  replay_window:
    description: Replay window in packets (ESN), 1 to 4096.
    type: int
    default: 256
  purge:
    description: Remove this mesh's SAs of peers no longer declared (and not in O(retain)).
    type: bool
    default: true
extends_documentation_fragment:
  - weave.fastdp.state_dir
  - weave.fastdp.netns
attributes:
  check_mode:
    support: full
    details: SAs whose nonce a real run would make first are reported as additions.
  diff_mode:
    support: full
    details: One line per added, changed or removed SA; keys appear only as C(sha256:) fingerprints.
seealso:
  - module: weave.fastdp.nonces
  - module: weave.fastdp.xfrm_policy
"""

EXAMPLES = r"""
- name: Inbound SAs from every peer
  weave.fastdp.xfrm_state:
    direction: inbound
    mesh: weave
    peer_name: h1
    local_address: 198.51.100.11
    epoch: 1
    peers:
      - name: h2
        address: 198.51.100.12
        public_key: "{{ hostvars.h2.fastdp_identity.public_key }}"
    password: "{{ vault_fastdp_password }}"
    reqid: 4242

- name: Remove every SA of the mesh
  weave.fastdp.xfrm_state:
    state: absent
    reqid: 4242
"""

RETURN = r"""
changes:
  description: One readable line per added (+), changed (~) or removed (-) SA; no key.
  type: list
  elements: str
  returned: always
outbound_spis:
  description: Per peer, V({address, spi}) of the newest outbound SA (empty for inbound).
  type: dict
  returned: always
outbound_epochs:
  description: Per peer, the newest epoch of its outbound SA (empty for inbound).
  type: dict
  returned: always
sas:
  description: The wanted SAs of this direction, V([{peer, epoch, src, dst, spi, key}]) with
    C(key) a C(sha256:) fingerprint.
  type: list
  elements: dict
  returned: always
pending:
  description: V(peer epoch) of SAs whose nonce does not exist yet (check mode).
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.weave.fastdp.plugins.module_utils import arguments, keys
from ansible_collections.weave.fastdp.plugins.module_utils import xfrm_inventory as inventory
from ansible_collections.weave.fastdp.plugins.module_utils.mesh import CIPHERS
from ansible_collections.weave.fastdp.plugins.module_utils.netns import NetnsError
from ansible_collections.weave.fastdp.plugins.module_utils.xfrm import XfrmError, XfrmSocket


def main():
    module = AnsibleModule(
        argument_spec={
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
        },
        required_if=[("state", "present",
                      ["direction", "mesh", "peer_name", "local_address", "peers", "password"])],
        supports_check_mode=True,
    )
    p = module.params
    wanted = []
    try:
        if p["state"] == "present":
            inventory.check_mesh(local_address=p["local_address"], peers=p["peers"],
                                 retain=p["retain"], password=p["password"],
                                 replay_window=p["replay_window"])
            state = keys.StateDir(p["state_dir"])
            wanted = inventory.wanted_sas(
                direction=p["direction"], table=state.inbound(), private=state.identity(),
                password=p["password"], mesh=p["mesh"], peer_name=p["peer_name"],
                local_address=p["local_address"], peers=p["peers"], epoch=p["epoch"],
                retire=p["retire"], reqid=p["reqid"], aead=CIPHERS[p["cipher"]],
                replay_window=p["replay_window"])
        with XfrmSocket(p["netns"]) as xfrm:
            have = xfrm.sas()
            if p["state"] == "absent":
                changes = inventory.all_sas_removed(have, p["reqid"])
            else:
                changes = inventory.sa_changes(
                    have, wanted, direction=p["direction"], local_address=p["local_address"],
                    peers=p["peers"], reqid=p["reqid"], retain=p["retain"], purge=p["purge"])
            pending = [f"{w.peer} {w.epoch}" for w in wanted if w.sa is None]
            if not module.check_mode:
                inventory.apply(xfrm, changes)
                for item in pending:
                    module.warn(f"{p['direction']} SA of {item}: no nonce yet, not installed")
                changes = [c for c in changes if c.before or c.after]
    except (XfrmError, keys.KeyMaterialError, NetnsError) as exc:
        module.fail_json(msg=str(exc))
    lines = [str(c) for c in changes]
    spis, epochs = inventory.outbound_view(wanted) if p["direction"] == "outbound" else ({}, {})
    module.exit_json(
        changed=bool(changes), changes=lines, outbound_spis=spis, outbound_epochs=epochs,
        pending=pending,
        sas=[{"peer": w.peer, "epoch": w.epoch, "src": w.sa.src, "dst": w.sa.dst, "spi": w.sa.spi,
              "key": w.sa.fingerprint} for w in wanted if w.sa is not None],
        diff={"prepared": "".join(f"{line}\n" for line in lines)})


if __name__ == "__main__":
    main()
