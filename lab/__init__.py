"""weave.fastdp's kernel lab: test hosts in network namespaces reached over
real SSH, and a guest-kernel runner for what the host kernel cannot do (ESP)."""
