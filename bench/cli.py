"""``python -m bench``: argument parsing, the run, and where its results go."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.metadata
import importlib.util
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.drivers import ALL_DRIVERS
from bench.raw import RawPingPong
from bench.scenarios import SCENARIOS, Config, kill_descendants, leftover_children, run_all

RESULTS = Path(__file__).parent / "results"
# Benchmarks owned by other modules of bench/, run on request as their own processes.
EXTERNAL = {
    "http_path": "bench.http_path",
    "redis_vs_rq": "bench.redis_vs_rq",
    "redis_hosts": "bench.redis_hosts",
    "actors": "bench.actors",
}


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {}
    for pkg in ("qoper8", "anyio", "aiomultiprocess", "pebble", "loky", "orjson", "pydantic"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    # A run from an exported snapshot of a commit (no .git) names it in BENCH_GIT_COMMIT.
    commit = os.environ.get("BENCH_GIT_COMMIT", "")
    try:
        commit = (
            commit
            or subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                cwd=Path(__file__).parent,
                check=False,
            ).stdout.strip()
        )
    except OSError:
        commit = "?"
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions,
        "git_commit": commit,
        "loadavg_start": os.getloadavg(),
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--full", action="store_true", help="full sizes of issue 3 and 5 repetitions")
    p.add_argument(
        "--scenario",
        action="append",
        choices=[*SCENARIOS, *EXTERNAL],
        help="run only this scenario (repeatable)",
    )
    p.add_argument("--reps", type=int, help="repetitions (at least 3 for a report)")
    p.add_argument(
        "--only", help="comma-separated substrings of pool names to run (qoper8 always runs)"
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="where JSON, markdown and PNGs go")
    p.add_argument("--list", action="store_true", help="list scenarios and pools, then exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    drivers: list[Any] = [*ALL_DRIVERS, RawPingPong]
    if args.list:
        print("scenarios:", ", ".join(SCENARIOS))
        for name, mod in EXTERNAL.items():
            there = importlib.util.find_spec(mod) is not None
            print(f"  {name}: {mod} ({'present' if there else 'not written yet'})")
        for d in drivers:
            print(f"pool: {d.name:50s} {d.how}")
        return 0
    if args.only:
        keep = [s.strip().lower() for s in args.only.split(",")]
        drivers = [
            d
            for d in drivers
            if d.name.startswith(("qoper8", "raw")) or any(k in d.name.lower() for k in keep)
        ]
    external = [s for s in args.scenario or [] if s in EXTERNAL]
    for name in external:
        mod = EXTERNAL[name]
        if importlib.util.find_spec(mod) is None:
            print(f"{mod} does not exist yet", file=sys.stderr)
            continue
        subprocess.run([sys.executable, "-m", mod], check=False)
    own = [s for s in args.scenario or [] if s in SCENARIOS]
    if args.scenario and not own:
        return 0
    cfg = Config.full() if args.full else Config()
    if args.reps:
        cfg.reps = args.reps
    if own:
        cfg.scenarios = tuple(own)
    mode = "full" if args.full else "quick"
    meta = {
        "mode": mode,
        "command": "python -m bench"
        + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip(),
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "config": dict(vars(cfg).items()),
        "machine": machine(),
        "pools": {d.name: {"asyncio": d.how, "blocking": d.sync_how} for d in drivers},
    }
    m = meta["machine"]
    print(
        f"bench ({mode}): {m['cpus']} CPUs, {m['cpu_model']}, Python {m['python']}, "
        f"qoper8 at {m['git_commit']}; {cfg.reps} repetitions",
        flush=True,
    )
    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)

    def checkpoint(rec: Any) -> None:
        # After each repetition, so that a run cut short still leaves its numbers.
        partial = args.out / f"latest-{mode}.partial.json"
        report.write_json(partial, meta, rec.results, report.summarise(rec.results))

    rec = asyncio.run(run_all(drivers, cfg, checkpoint))
    (args.out / f"latest-{mode}.partial.json").unlink(missing_ok=True)
    meta["elapsed_s"] = time.perf_counter() - t0
    meta["machine"]["loadavg_end"] = os.getloadavg()
    stray = leftover_children()
    if stray:
        meta["stray_children"] = stray
    kill_descendants()

    summary = report.summarise(rec.results)
    names = report.driver_order(rec.results, [d.name for d in drivers])
    tgt = report.targets(summary, names)
    md = "\n".join(
        [
            f"Command: `{meta['command']}` · {meta['started']} · "
            f"{m['cpus']} CPUs ({m['cpu_model']}) · "
            f"Python {m['python']} · qoper8 {m['git_commit']} · {cfg.reps} repetitions, medians · "
            f"took {meta['elapsed_s']:.0f} s",
            "",
            report.summary_table(summary, names),
            "",
            "### Targets of issue 3",
            "",
            report.targets_table(tgt),
            "",
            "### Per scenario: median, spread, ratio",
            "",
            report.detail_tables(summary, names),
            "",
            report.scaling_table(rec.results),
        ]
    )
    print()
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"latest-{mode}.md").write_text(md + "\n")
    report.write_json(args.out / f"latest-{mode}.json", meta, rec.results, summary)
    try:
        pngs = report.charts(
            rec.results, summary, names, args.out, "" if mode == "quick" else "-full"
        )
        print("\ncharts:", ", ".join(str(p) for p in pngs))
    except Exception as exc:  # charts are a convenience; the numbers are already written
        print(f"charts failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    print(f"results: {args.out}/latest-{mode}.md and .json ({meta['elapsed_s']:.0f} s)")
    return 0
