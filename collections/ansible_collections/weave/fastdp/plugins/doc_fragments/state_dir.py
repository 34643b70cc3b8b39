class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  state_dir:
    description:
      - The host's root-only state directory (mode 0700, files 0600) that keeps its X25519
        private key and, per key epoch, the nonces and SPIs of its inbound SAs.
      - The private key never leaves it; nonces leave it only sealed for the peer they serve.
    type: path
    default: /var/lib/weave-fastdp
"""
