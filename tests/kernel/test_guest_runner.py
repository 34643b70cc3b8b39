import subprocess

import pytest

pytestmark = pytest.mark.kernel


def test_guest_kernel_can_make_an_esp_sa():
    subprocess.run(["ip", "netns", "add", "wf-probe"], check=True)
    try:
        add = subprocess.run(
            ["ip", "-n", "wf-probe", "xfrm", "state", "add", "src", "198.51.100.1",
             "dst", "198.51.100.2", "proto", "esp", "spi", "0x100", "mode", "transport",
             "aead", "rfc4106(gcm(aes))", "0x" + "11" * 36, "128"],
            capture_output=True, text=True)
        assert add.returncode == 0, add.stderr
    finally:
        subprocess.run(["ip", "netns", "del", "wf-probe"], check=True)
