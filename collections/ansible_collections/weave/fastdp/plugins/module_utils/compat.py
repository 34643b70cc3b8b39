"""What the managed hosts' Pythons (3.8 and later) do not all have, decided in one place.

``dataclass(slots=True, kw_only=True)`` came with Python 3.10: from there on the SAs and
policies of a dump of thousands keep no ``__dict__`` and are made with named fields only;
before it they are plain dataclasses, the same in every other way.
"""

from __future__ import annotations

import sys

SLOTS = {"slots": True} if sys.version_info >= (3, 10) else {}
KW_ONLY = {"kw_only": True} if sys.version_info >= (3, 10) else {}
