"""Where the master's time goes: qoper8 alone, the no-op throughput loop (scenario 1) and the
sequential-latency loop (scenario 2), under pyinstrument.

    python -m bench.profile_qoper8 [--n 20000] [--latency-n 2000] [--children 2]

Writes ``bench/results/profile.txt`` (for each loop, the call tree, then the functions with
the most self time), ``profile.html`` (scenario 1) and ``profile-latency.html``. The profiler
samples the master's main thread only; the children are not in it. Sampling every 0.5 ms costs
the master some speed, so read the shares, not the absolute rates.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
WORKER = "bench.workers:worker"


async def loops(n: int, latency_n: int, children: int, profiler: Any = None) -> dict[str, Any]:
    """Both loops on one warm pool; with a profiler, each loop is its own session."""
    import qoper8

    out: dict[str, Any] = {}
    async with qoper8.Pool(WORKER, children=children, timeout=None) as pool:
        await asyncio.gather(*(pool.submit({"type": "echo", "value": i}) for i in range(200)))
        if profiler is not None:
            profiler.start()
        t0 = time.perf_counter()
        await asyncio.gather(*(pool.submit({"type": "echo", "value": i}) for i in range(n)))
        out["jobs_per_s"] = n / (time.perf_counter() - t0)
        if profiler is not None:
            out["throughput_session"] = profiler.stop()
            profiler.reset()
            profiler.start()
        t0 = time.perf_counter()
        for i in range(latency_n):
            await pool.submit({"type": "echo", "value": i})
        out["mean_latency_us"] = (time.perf_counter() - t0) / latency_n * 1e6
        if profiler is not None:
            out["latency_session"] = profiler.stop()
    return out


def self_time_table(session: Any, top: int = 30) -> str:
    """Self time per function over the whole session (pyinstrument's own flat view folds
    hidden library frames into their caller); a frame's synthetic "[self]" child counts as
    the frame's own time."""
    root = session.root_frame(trim_stem=False)
    totals: dict[str, float] = {}
    stack = [root] if root is not None else []
    while stack:
        frame = stack.pop()
        if frame.is_synthetic:
            continue
        real = [c for c in frame.children if not c.is_synthetic]
        own = frame.time - sum(c.time for c in real)
        key = f"{frame.function}  {frame.file_path_short}:{frame.line_no}"
        totals[key] = totals.get(key, 0.0) + own
        stack.extend(real)
    whole = sum(totals.values()) or 1.0
    rows = sorted(totals.items(), key=lambda kv: -kv[1])[:top]
    return "\n".join(f"{t / whole:6.1%}  {t:7.3f}s  {k}" for k, t in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile_qoper8", description=__doc__)
    p.add_argument("--n", type=int, default=20_000, help="no-op actions all in flight")
    p.add_argument("--latency-n", type=int, default=2_000, help="sequential round trips")
    p.add_argument("--children", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)

    from pyinstrument import Profiler
    from pyinstrument.renderers import ConsoleRenderer, HTMLRenderer

    # Unprofiled first, so the profile's cost can be read off.
    bare = asyncio.run(loops(args.n, args.latency_n, args.children))
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiled = asyncio.run(loops(args.n, args.latency_n, args.children, profiler))

    commit = (
        os.environ.get("BENCH_GIT_COMMIT")
        or subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            check=False,
        ).stdout.strip()
    )
    header = (
        f"qoper8 {commit or '?'}, master profile: {args.n} no-op actions in flight "
        f"(scenario 1), then {args.latency_n} sequential round trips (scenario 2), "
        f"{args.children} children\n"
        f"unprofiled: {bare['jobs_per_s']:,.0f} jobs/s, {bare['mean_latency_us']:.0f} us mean "
        f"round trip; profiled: {profiled['jobs_per_s']:,.0f} jobs/s, "
        f"{profiled['mean_latency_us']:.0f} us\n"
        "epoll.poll is the master waiting for its children (idle); everything else is the\n"
        "master's own cost per job.\n"
    )
    parts = [header]
    for key, title in (
        ("throughput_session", "scenario 1: no-op throughput"),
        ("latency_session", "scenario 2: sequential latency"),
    ):
        session = profiled[key]
        tree = ConsoleRenderer(unicode=True, color=False, show_all=False).render(session)
        flat_top = self_time_table(session)
        parts.append(f"\n======== {title}: call tree ========\n{tree}")
        parts.append(f"\n======== {title}: self time by function (top) ========\n{flat_top}\n")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "profile.txt").write_text("".join(parts))
    (args.out / "profile.html").write_text(HTMLRenderer().render(profiled["throughput_session"]))
    (args.out / "profile-latency.html").write_text(
        HTMLRenderer().render(profiled["latency_session"])
    )
    print("".join(parts))
    print(f"wrote {args.out / 'profile.txt'}, profile.html (scenario 1), profile-latency.html")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
