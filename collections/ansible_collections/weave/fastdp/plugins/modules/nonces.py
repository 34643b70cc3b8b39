#!/usr/bin/python
DOCUMENTATION = r"""
module: nonces
short_description: The receiver's nonces and inbound SPIs of a key epoch, published sealed
description:
  - For each peer that sends to this host, makes (once per key epoch) the 32-byte random nonce
    and the SPI of the inbound SA, keeps them in the root-only state directory and publishes
    them for that peer sealed with AES-GCM under a key only the two peers can form. The
    controller carries the published values to the sender; no nonce appears in any output.
  - The SPI is chosen at random outside the reserved range 1-255 and unused by any SA towards
    this host (one kernel dump), so it is unique per destination.
  - Re-running keeps the nonces and SPIs, so an unchanged mesh derives the same keys; a higher
    O(epoch) makes new ones; a lower one is refused.
version_added: 0.1.0
author: weave.fastdp developers
requirements:
  - python >= 3.8 (the distribution's own)
  - cryptography >= 3.3 (the distribution's python3-cryptography)
options:
  mesh:
    description: Mesh name; binds every sealed nonce to this mesh.
    type: str
    required: true
  peer_name:
    description: This host's peer name.
    type: str
    required: true
  local_address:
    description: This host's underlay address (destination of its inbound SAs).
    type: str
    required: true
  epoch:
    description: The key epoch of the mesh. Bumping it rotates every key.
    type: int
    required: true
  peers:
    description: The peers that send to this host in this run.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Peer name.
        type: str
        required: true
      public_key:
        description: The peer's X25519 public key (base64), from M(weave.fastdp.identity).
        type: str
      switched_epoch:
        description: The epoch of the peer's outbound SA to this host, once known.
        type: int
  retain:
    description: Names of peers outside this run (C(--limit), later C(serial) batches) whose
      entries are left as they are.
    type: list
    elements: str
    default: []
  password:
    description: The mesh password (keep it in Ansible Vault). Never logged.
    type: str
    required: true
    no_log: true
  purge:
    description: Drop the entries of peers no longer declared (and not in O(retain)).
    type: bool
    default: true
  retire:
    description:
      - Drop a peer's entries of earlier epochs once it has switched to O(epoch)
        (O(peers[].switched_epoch)). Until then they stay, so its old SA keeps working
        (make before break).
    type: bool
    default: false
extends_documentation_fragment:
  - weave.fastdp.state_dir
  - weave.fastdp.netns
attributes:
  check_mode:
    support: full
    details: Reports the entries it would make; publishes only entries that exist.
  diff_mode:
    support: full
    details: Lines per entry with the SPI; never the nonce.
"""

EXAMPLES = r"""
- name: Nonces and inbound SPIs of epoch 1
  weave.fastdp.nonces:
    mesh: weave
    peer_name: "{{ inventory_hostname }}"
    local_address: 198.51.100.11
    epoch: 1
    peers:
      - name: h2
        public_key: "{{ hostvars.h2.fastdp_identity.public_key }}"
    password: "{{ vault_fastdp_password }}"
  register: fastdp_nonces
"""

RETURN = r"""
published:
  description: Per sender, its entries [{epoch, spi, sealed_nonce}]; only the sender can open them.
  type: dict
  returned: always
inbound_spis:
  description: Per sender, the SPIs of its inbound SAs on this host, newest epoch last.
  type: dict
  returned: always
epochs:
  description: The epochs this host keeps entries for after the run.
  type: list
  elements: int
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.weave.fastdp.plugins.module_utils import arguments, keys
from ansible_collections.weave.fastdp.plugins.module_utils import xfrm_inventory as inventory


def main():
    module = AnsibleModule(argument_spec=inventory.NONCES_ARGUMENT_SPEC,
                           supports_check_mode=True)
    arguments.require(module, keys.MISSING)
    arguments.run(module, inventory.converge_nonces)


if __name__ == "__main__":
    main()
