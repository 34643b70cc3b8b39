"""The fingerprint of the inbound half's options: computed by the controller (the filter
weave.fastdp.fingerprint) and recorded on the host with them (weave.fastdp.datapath), so a
preflight can tell that they did not change. No password is part of it, nor ever stored."""

from __future__ import annotations

import hashlib
import json

PASSWORD = "password"


def without_password(steps: dict) -> dict:
    """The steps' options with each step's password left out: what may be stored and logged."""
    return {name: {k: v for k, v in options.items() if k != PASSWORD}
            for name, options in steps.items() if options is not None}


def fingerprint(steps: dict) -> str:
    """SHA-256 of the steps' options without passwords, in one canonical JSON spelling."""
    canonical = json.dumps(without_password(steps), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
