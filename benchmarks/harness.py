"""Run commands as child processes and measure wall time and peak memory (max RSS via wait4).

Each benchmark module ``benchmarks/bench_*.py`` defines ``run(scale: str) -> list[Result]``.
``scale`` is "full" (the issue's target sizes) or "small" (a quick smoke run), taken from
the BENCH_SCALE environment variable. Results are printed as a table and saved as JSON under
bench_results/.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS", "bench_results"))


@dataclass
class Result:
    name: str
    seconds: float
    peak_rss_mib: float | None = None
    target: str = ""
    passed: bool | None = None
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Measurement:
    seconds: list[float]
    peak_rss_mib: float

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def run_measured(
    args: list[str], repeat: int = 1, env: dict[str, str] | None = None
) -> Measurement:
    """Run ``args`` ``repeat`` times; return wall times and the largest peak RSS of any run."""
    times: list[float] = []
    peak_kib = 0
    full_env = {**os.environ, **(env or {})}
    for _ in range(repeat):
        started = time.perf_counter()
        proc = subprocess.Popen(args, env=full_env)
        _, status, rusage = os.wait4(proc.pid, 0)
        times.append(time.perf_counter() - started)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"benchmark command failed ({proc.returncode}): {' '.join(args)}")
        peak_kib = max(peak_kib, rusage.ru_maxrss)  # KiB on Linux
    return Measurement(seconds=times, peak_rss_mib=peak_kib / 1024)


def recsys(*args: str) -> list[str]:
    """argv for the project's CLI in this interpreter."""
    return [sys.executable, "-m", "cli.main", *args]


def save(module: str, results: list[Result]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{module}.json"
    path.write_text(json.dumps([asdict(r) for r in results], indent=2, default=str))
    return path


def print_table(results: list[Result]) -> None:
    print(f"{'benchmark':<48} {'seconds':>9} {'peak MiB':>9}  {'target':<28} ok")
    for r in results:
        rss = f"{r.peak_rss_mib:9.0f}" if r.peak_rss_mib is not None else " " * 9
        ok = {True: "yes", False: "NO", None: "-"}[r.passed]
        print(f"{r.name:<48} {r.seconds:9.2f} {rss}  {r.target:<28} {ok}")
        for key, value in r.extra.items():
            print(f"    {key}: {value}")
