# Copyright (c) weave.fastdp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The network namespace a module acts in."""

from __future__ import annotations


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
