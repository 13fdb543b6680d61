"""``python -m bench [NAME ...]``: run every benchmark module's ``main()`` in turn.

With names (``python -m bench decisions dispatch``) only those run. Each module is a
plain script with a ``main()``; figures go to stdout and into docs/benchmarks.md by hand,
with the command that produced them.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def modules() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def run(names: list[str]) -> int:
    chosen = names or modules()
    unknown = sorted(set(chosen) - set(modules()))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; have: {', '.join(modules())}")
        return 2
    for name in chosen:
        print(f"\n=== bench/{name}.py ===", flush=True)
        started = time.perf_counter()
        module = importlib.import_module(f"bench.{name}")
        module.main()
        print(f"=== {name}: {time.perf_counter() - started:.1f} s ===", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
