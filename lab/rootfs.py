"""Root filesystems of real distributions for lab hosts, built from Debian's archive.

A lab host runs sshd and the collection's modules inside one of these (through an overlay, so
the image itself is never written): the distribution's own ``/usr/bin/python3`` and packages,
as on a user's server. An image holds a minimal system (mmdebstrap's minbase variant) plus what
a server has (sshd, iproute2, iptables) and what the role installs on a host
(``ROLE_PACKAGES``). Images are cached under ``CACHE`` in a folder named after their platform
and a hash of their package list, so a changed list makes a new image.

``python -m lab.rootfs [PLATFORM ...]`` builds the missing ones (``./run`` does before the
kernel tier boots, as the guest kernel cannot reach the archive).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

CACHE = Path("/var/cache/weave-fastdp-lab/rootfs")
PLATFORMS = {"debian11": "bullseye", "debian12": "bookworm", "debian13": "trixie",
             "debian12-nocrypto": "bookworm"}
DEFAULT_PLATFORM = "debian12"
SERVER_PACKAGES = ("python3", "openssh-server", "iproute2", "iptables")
ROLE_PACKAGES = ("python3-cryptography",)
# Platforms whose image lacks what the role installs: a host the role must install it on, or
# fail naming it (the lab's hosts have no network to install from).
LACKING = {"debian12-nocrypto": ROLE_PACKAGES}


def packages(platform: str) -> tuple[str, ...]:
    left_out = LACKING.get(platform, ())
    return tuple(p for p in SERVER_PACKAGES + ROLE_PACKAGES if p not in left_out)


def image_dir(platform: str) -> Path:
    """Where the image of ``platform`` (one of PLATFORMS) with its package list lives."""
    if platform not in PLATFORMS:
        raise ValueError(f"platform {platform!r}: one of {', '.join(PLATFORMS)}")
    wanted = packages(platform)
    digest = hashlib.sha256(" ".join((PLATFORMS[platform], *wanted)).encode()).hexdigest()[:12]
    return CACHE / f"{platform}-{digest}"


def ensure(platform: str) -> Path:
    """The image of ``platform``, built first if it is not cached (about 20 s and 250 MB)."""
    image = image_dir(platform)
    if (image / ".complete").exists():
        return image
    if shutil.which("mmdebstrap") is None:
        raise RuntimeError("mmdebstrap is needed to build lab root filesystems (./run installs it)")
    partial = image.with_name(image.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    print(f"lab.rootfs: building {platform} ({PLATFORMS[platform]}) into {image}",
          file=sys.stderr, flush=True)
    subprocess.run(["mmdebstrap", "--quiet", "--variant=minbase",
                    "--include=" + ",".join(packages(platform)),
                    PLATFORMS[platform], str(partial)], check=True)
    (partial / ".complete").write_text(" ".join(packages(platform)) + "\n")
    shutil.rmtree(image, ignore_errors=True)
    partial.rename(image)
    return image


def python_version(image: Path) -> str:
    """The X.Y of the image's own /usr/bin/python3 (the link's target names it)."""
    target = (image / "usr/bin/python3").readlink().name
    return target.removeprefix("python")


if __name__ == "__main__":
    for name in sys.argv[1:] or PLATFORMS:
        print(ensure(name))
