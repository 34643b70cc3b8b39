"""The lab's naming and addressing plan, without creating anything."""

import pytest

from lab.hosts import Lab, LabError, overlay_address

pytestmark = pytest.mark.unit


def test_host_i_gets_198_51_100_10_plus_i_and_2001_db8_10_plus_i():
    lab = Lab(count=3, name="wf", sshd=False)
    assert [(h.name, h.netns, h.address, h.address6, h.iface) for h in lab.hosts] == [
        ("h1", "wf-h1", "198.51.100.11", "2001:db8::b", "eth0"),
        ("h2", "wf-h2", "198.51.100.12", "2001:db8::c", "eth0"),
        ("h3", "wf-h3", "198.51.100.13", "2001:db8::d", "eth0"),
    ]
    assert lab.bridge == "wf-br"
    assert [overlay_address(h) for h in lab.hosts] == ["203.0.113.1", "203.0.113.2", "203.0.113.3"]


def test_each_host_has_its_own_state_dir_under_the_work_dir():
    lab = Lab(count=2, name="wf")
    dirs = {lab.state_dir(h) for h in lab.hosts}
    assert len(dirs) == 2 and all(lab.work_dir in d.parents for d in dirs)


def test_names_stay_within_the_15_character_interface_limit():
    Lab(count=20, name="abcdefghij")  # abcdefghij-h20: 14 characters
    with pytest.raises(LabError, match="exceeds 15"):
        Lab(count=20, name="abcdefghijkl")


@pytest.mark.parametrize("name", ["", "WF", "wf-1", "1wf", "wf_x"])
def test_names_are_lower_case_letters_and_digits(name):
    with pytest.raises(LabError, match="lower-case"):
        Lab(count=1, name=name)


@pytest.mark.parametrize("count", [0, 241])
def test_host_count_fits_the_underlay(count):
    with pytest.raises(LabError, match="hosts"):
        Lab(count=count, name="wf")


def test_hosts_are_found_by_name_or_namespace():
    lab = Lab(count=2, name="wf")
    assert lab.host("h2") is lab.hosts[1] and lab.host("wf-h1") is lab.hosts[0]
    with pytest.raises(LabError, match="no host"):
        lab.host("h3")
