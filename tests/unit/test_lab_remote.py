"""The control network that lets a controller on the host reach lab hosts in the guest."""

import ipaddress

import pytest

from lab.remote import CONTROL_ADDRESS, CONTROL_NET, port, qemu_network

pytestmark = pytest.mark.unit

DOCUMENTATION = ipaddress.ip_network("203.0.113.0/24")


def netdev_options(hosts: int) -> dict[str, list[str]]:
    argv = qemu_network(hosts).split()
    netdev = argv[argv.index("-netdev") + 1]
    kind, *options = netdev.split(",")
    assert kind == "user"
    out: dict[str, list[str]] = {}
    for option in options:
        key, value = option.split("=", 1)
        out.setdefault(key, []).append(value)
    return out


def test_one_loopback_port_per_host_forwarded_to_the_guest_control_address():
    forwards = netdev_options(20)["hostfwd"]
    assert forwards == [f"tcp:127.0.0.1:{port(i)}-{CONTROL_ADDRESS}:{port(i)}"
                        for i in range(1, 21)]
    assert len({port(i) for i in range(1, 21)}) == 20


def test_the_guest_reaches_nothing_outside_and_is_numbered_in_the_documentation_range():
    options = netdev_options(3)
    assert options["restrict"] == ["on"]
    net = ipaddress.ip_network(options["net"][0])
    assert str(net) == CONTROL_NET and net.subnet_of(DOCUMENTATION)
    for key in ("host", "dhcpstart", "dns"):
        assert ipaddress.ip_address(options[key][0]) in net
    # Lab hosts are 203.0.113.I on the overlay (I up to 240): the control net lies above them.
    assert int(net.network_address) - int(DOCUMENTATION.network_address) > 240
