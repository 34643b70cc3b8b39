"""The mesh as declared in the inventory, checked as a whole on the controller.

Every error names the host and the inventory variable to fix, and all of them are found
before any host is touched.
"""

from __future__ import annotations

import ipaddress
import re
from collections import defaultdict

CIPHERS = {"aes-gcm": "rfc4106(gcm(aes))", "chacha20-poly1305": "rfc7539esp(chacha20,poly1305)"}
# A mesh name names the state directory, the guard chains (at most 28 characters with their
# 11-character prefix) and the device: never a path, never too long.
MESH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,16}")
# A peer name is HKDF info, sealed additional data and a key of the state files.
PEER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,252}")


def name_errors(mesh_name, peer_names: dict) -> list[str]:
    """Problems of the mesh name and of each host's peer name (``peer_names``: host -> name)."""
    errors = []
    if not isinstance(mesh_name, str) or not MESH_NAME.fullmatch(mesh_name):
        errors.append(f"mesh: fastdp_mesh_name {mesh_name!r} must be 1 to 17 letters, digits, "
                      "'_', '.' or '-', the first a letter or digit (it names the state "
                      "directory, the guard chains and the device; never a path)")
    for host, name in peer_names.items():
        if not isinstance(name, str) or not PEER_NAME.fullmatch(name):
            errors.append(f"{host}: fastdp_peer_name {name!r} must be 1 to 253 letters, digits, "
                          "'_', '.', ':' or '-', the first a letter or digit")
    return errors


def validate(mesh: dict, members: list[dict], max_mtu) -> list[str]:
    """Problems of the declared mesh. ``max_mtu(underlay_address, underlay_mtu)`` gives the
    largest overlay MTU a host's underlay allows."""
    errors = name_errors(mesh.get("name"), {m["host"]: m["peer_name"] for m in members})
    errors += _duplicates(members, "peer_name", "fastdp_peer_name")
    errors += _duplicates(members, "underlay_address", "fastdp_underlay_address")
    errors += _duplicates(members, "overlay_address", "fastdp_overlay_address", key=_ip_only)
    if mesh["cipher"] not in CIPHERS:
        errors.append(f"mesh: fastdp_cipher {mesh['cipher']!r} is not one of {sorted(CIPHERS)}")
    if not mesh.get("password"):
        errors.append("mesh: fastdp_password is missing or empty (put it in Ansible Vault)")
    prefix = _network(mesh["overlay_prefix"])
    if prefix is None:
        errors.append(f"mesh: fastdp_overlay_prefix {mesh['overlay_prefix']!r} is not a network")
    for m in members:
        host = m["host"]
        underlay = _address(m["underlay_address"])
        if underlay is None:
            errors.append(f"{host}: fastdp_underlay_address {m['underlay_address']!r} is not an IP address")
        overlay = _interface(m["overlay_address"])
        if overlay is None:
            errors.append(f"{host}: fastdp_overlay_address {m['overlay_address']!r} is not address/prefix")
        elif prefix is not None and (overlay.ip not in prefix or overlay.network != prefix):
            errors.append(f"{host}: fastdp_overlay_address {m['overlay_address']} is outside the "
                          f"mesh's fastdp_overlay_prefix {prefix}")
        recorded = m.get("recorded_epoch")
        if recorded is not None and mesh["epoch"] < recorded:
            errors.append(f"{host}: fastdp_key_epoch {mesh['epoch']} is lower than the epoch "
                          f"{recorded} this host already uses (epochs only go up)")
        if mesh.get("mtu") and underlay is not None and m.get("underlay_mtu"):
            limit = max_mtu(str(underlay), m["underlay_mtu"])
            if mesh["mtu"] > limit:
                errors.append(f"{host}: fastdp_mtu {mesh['mtu']} leaves no room for VXLAN and ESP "
                              f"over an underlay MTU of {m['underlay_mtu']}: at most {limit}")
    return errors


def _duplicates(members, field, variable, key=str):
    seen = defaultdict(list)
    for m in members:
        seen[key(m[field])].append(m["host"])
    return [f"{hosts[1]}: {variable} {value} is also {hosts[0]}'s"
            for value, hosts in seen.items() if len(hosts) > 1]


def _ip_only(cidr):
    return str(cidr).split("/", maxsplit=1)[0]


def _address(text):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _interface(text):
    try:
        return ipaddress.ip_interface(text) if "/" in str(text) else None
    except ValueError:
        return None


def _network(text):
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        return None
