"""Where the master's time goes: qoper8 alone, the no-op throughput loop (scenario 1) and the
sequential-latency loop (scenario 2), under pyinstrument.

    python -m bench.profile_qoper8 [--n 20000] [--latency-n 2000] [--children 2]

Writes ``bench/results/profile.txt`` (the call tree, then the functions with the most self
time) and ``bench/results/profile.html``. The profiler samples the master's main thread only;
the children are not in it. Sampling every 0.5 ms costs the master some speed, so read the
shares, not the absolute rates.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
WORKER = "bench.workers:worker"


async def loops(n: int, latency_n: int, children: int) -> dict[str, float]:
    import qoper8

    async with qoper8.Pool(WORKER, children=children, timeout=None) as pool:
        await asyncio.gather(*(pool.submit({"type": "echo", "value": i}) for i in range(200)))
        t0 = time.perf_counter()
        await asyncio.gather(*(pool.submit({"type": "echo", "value": i}) for i in range(n)))
        tput = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for i in range(latency_n):
            await pool.submit({"type": "echo", "value": i})
        lat = (time.perf_counter() - t0) / latency_n * 1e6
    return {"jobs_per_s": tput, "mean_latency_us": lat}


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
    profiler.start()
    profiled = asyncio.run(loops(args.n, args.latency_n, args.children))
    profiler.stop()

    session = profiler.last_session
    assert session is not None
    header = (
        f"qoper8 master profile: {args.n} no-op actions in flight, then {args.latency_n} "
        f"sequential round trips, {args.children} children\n"
        f"unprofiled: {bare['jobs_per_s']:,.0f} jobs/s, {bare['mean_latency_us']:.0f} us mean "
        f"round trip; profiled: {profiled['jobs_per_s']:,.0f} jobs/s, "
        f"{profiled['mean_latency_us']:.0f} us\n"
    )
    tree = ConsoleRenderer(unicode=True, color=False, show_all=False).render(session)
    flat = ConsoleRenderer(unicode=True, color=False, flat=True, show_all=True).render(session)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "profile.txt").write_text(
        header + "\n== call tree ==\n" + tree + "\n== self time, by function ==\n" + flat
    )
    (args.out / "profile.html").write_text(HTMLRenderer().render(session))
    print(header)
    print("\n".join(flat.splitlines()[:45]))
    print(f"\nwrote {args.out / 'profile.txt'} and {args.out / 'profile.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
