# Copyright (c) weave.fastdp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host's state directory of the mesh."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  state_dir:
    description:
      - The host's root-only state directory (mode 0700, files 0600) that keeps its X25519
        private key and, per key epoch, the nonces and SPIs of its inbound SAs.
      - It also keeps the X25519 shared secret with each peer public key seen (no more than the
        private key beside it can make), so a run that changes nothing does no X25519.
      - For each SA it installed, a digest of its key's inputs and a digest of the key (neither
        gives a key), so a run that changes nothing confirms each installed key with two SHA-256
        instead of deriving it again.
      - The private key and shared secrets never leave it; nonces leave it only sealed for the
        peer they serve.
    type: path
    default: /var/lib/weave-fastdp
"""
