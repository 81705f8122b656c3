"""python -m benchmarks [NAME ...]: run benchmarks/bench_NAME.py modules (all by default)."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

from benchmarks.harness import print_table, save


def main(argv: list[str]) -> int:
    scale = os.environ.get("BENCH_SCALE", "full")
    here = Path(__file__).parent
    names = argv or sorted(p.stem.removeprefix("bench_") for p in here.glob("bench_*.py"))
    failed = 0
    for name in names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        print(f"\n== {name} (scale={scale})", flush=True)
        results = module.run(scale)
        print_table(results)
        print(f"saved {save(name, results)}")
        failed += sum(1 for r in results if r.passed is False)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
