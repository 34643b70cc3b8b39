"""The smoke scenario in the guest kernel: hand-made encrypted fastdp between two lab hosts."""

import pytest

from lab.smoke import run_smoke

pytestmark = pytest.mark.kernel(seconds=20)  # wall time in a guest, to balance the guests


def test_smoke_pings_across_the_overlay_with_only_esp_on_the_wire():
    result = run_smoke()
    assert result.ping
    assert result.esp_out > 0 and result.esp_in > 0, "ESP both ways on the underlay"
    assert result.plaintext == 0, "no packet to UDP 6784 on the underlay"
    assert result.passed


def test_smoke_fails_when_one_receiver_has_a_different_key():
    result = run_smoke(mismatched_key=True)
    assert not result.ping
    assert result.esp_out > 0, "h1 still sends ESP: the receiver drops it"
    assert not result.passed
