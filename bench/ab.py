"""Two checkouts of qoper8 in one run: the no-op throughput and sequential latency of each,
alternating, so that both see the same machine.

    .venv/bin/python -m bench.ab BEFORE_DIR AFTER_DIR [--rounds 4]

Each round runs ``python -m bench --scenario throughput --scenario latency --only raw`` in
BEFORE_DIR, then in AFTER_DIR (the order flips every round), with this interpreter: a
checkout's own ``qoper8`` comes first on ``sys.path`` there. The bare asyncio master (raw)
runs in every round too, so each figure is also read as a fraction of the machine's limit at
that moment. Prints medians over rounds and the ratio after/before, with the CPU model; wall
clock drifts on shared machines, ``bench.callgrind`` is the figure that holds still.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.callgrind import _cpu_model

QOPER8 = "qoper8"
RAW = "raw asyncio socketpair ping"


def _run(checkout: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bench",
                "--scenario",
                "throughput",
                "--scenario",
                "latency",
                "--only",
                "raw",
                "--reps",
                "3",
                "--out",
                out,
            ],
            cwd=checkout,
            check=True,
            capture_output=True,
        )
        data: dict[str, Any] = json.loads((Path(out) / "latest-quick.json").read_text())
    summary = data["summary"]
    through = summary["throughput.jobs_per_s"]["rows"]
    p50 = summary["latency.p50_us"]["rows"]
    return {
        "jobs_per_s": through[QOPER8]["median"],
        "raw_jobs_per_s": through[RAW]["median"],
        "p50_us": p50[QOPER8]["median"],
        "raw_p50_us": p50[RAW]["median"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for i in range(args.rounds):
        order = [("before", args.before), ("after", args.after)]
        for label, checkout in order if i % 2 == 0 else reversed(order):
            runs[label].append(_run(checkout))
            print(f"round {i + 1} {label}: {runs[label][-1]}", flush=True)
    print(f"\nCPU {_cpu_model()}, {args.rounds} rounds, medians")
    print("| | jobs/s | of raw | p50 µs | raw p50 µs |")
    print("|---|---:|---:|---:|---:|")
    med: dict[str, dict[str, float]] = {}
    for label, rows in runs.items():
        med[label] = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        share = statistics.median(r["jobs_per_s"] / r["raw_jobs_per_s"] for r in rows)
        m = med[label]
        print(
            f"| {label} | {m['jobs_per_s']:,.0f} | {share:.2f} | {m['p50_us']:.1f} "
            f"| {m['raw_p50_us']:.1f} |"
        )
    ratio_t = med["after"]["jobs_per_s"] / med["before"]["jobs_per_s"]
    ratio_l = med["after"]["p50_us"] / med["before"]["p50_us"]
    print(f"\nafter/before: throughput x{ratio_t:.3f}, p50 x{ratio_l:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
