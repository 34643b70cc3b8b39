class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  netns:
    description:
      - Name of a network namespace (as in C(ip netns), under C(/run/netns)) to act in,
        for example a host's container namespace or a lab host. The namespace must exist.
      - Omit to act in the namespace the module runs in.
    type: str
"""
