"""Argument-spec entries that several modules share. Their documentation is the doc fragment
of the same name (netns, state_dir) or each module's own words (what retain keeps differs)."""

from __future__ import annotations

NETNS = {"netns": {"type": "str"}}
STATE_DIR = {"state_dir": {"type": "path", "default": "/var/lib/weave-fastdp"}}
RETAIN_AND_PURGE = {
    "retain": {"type": "list", "elements": "str", "default": []},
    "purge": {"type": "bool", "default": True},
}
