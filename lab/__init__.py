"""weave.fastdp's kernel lab: test hosts in network namespaces reached over
real SSH, root filesystems of real distributions for them, and a User-Mode Linux kernel
runner for what the host kernel cannot do (ESP)."""
