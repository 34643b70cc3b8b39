"""``python -m bench [NAME] [ARGS]`` (``./run bench NAME``): run bench/NAME.py as a script, then
rewrite docs/benchmarks.md from bench/results (bench.report). Without NAME, list the
benchmarks."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def names() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.py") if not p.stem.startswith("_"))


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: python -m bench NAME [ARGS]; NAME one of: {', '.join(names())}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in names():
        print(f"bench: no benchmark {name!r}; one of: {', '.join(names())}", file=sys.stderr)
        return 2
    sys.argv = [str(HERE / f"{name}.py"), *rest]
    try:
        runpy.run_module(f"bench.{name}", run_name="__main__", alter_sys=True)
    finally:  # a run cut short still saved what it measured
        if name != "report":
            from bench.report import write

            write()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
