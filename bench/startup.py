"""Start-up by a fork server (issue 14 item 3), in one run: how long until N children are
ready, how long until a SIGKILLed child is ready again, and the memory (PSS) each child takes.

    python -m bench.startup                 # 5 repetitions, 8 children, 20 respawns each
    python -m bench.startup --reps 3 --respawns 10

Rows, alternated in each repetition (each repetition starts with a different row):

- qoper8 with its default ``start_method="forkserver"`` and with ``"spawn"``;
- ``multiprocessing.Pool(N)``, its default context (``fork`` on Linux before Python 3.14: its
  children are forks of this very process), and its ``forkserver`` context (3.14's default);
- ``anyio.to_process`` (lazy: its workers are fresh interpreters started by the warm-up calls).

Start: from the constructor until every child has answered a 10 ms call (``bench.drivers.warm``,
the same for every row: scenario 7 of ``python -m bench``). Respawn: for qoper8, from the
SIGKILL of an idle child until its replacement said READY (the supervisor's ``child_ready``,
timed in-process: polling would add asyncio's 1 ms timer rounding); for
``multiprocessing.Pool``, until a new live process replaced it (it exposes no more; its
handler thread repopulates every 0.1 s). PSS: ``/proc/PID/smaps_rollup`` of each child after
the warm-up; for the fork server row also the server's own, and the sum per child.

Writes ``bench/results/startup.md`` and ``startup.json``. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.callgrind import _cpu_model
from bench.drivers import AnyioToProcess, Driver, MPPool, Qoper8Submit, warm

RESULTS = Path(__file__).parent / "results"
START_TIMEOUT = 60.0
RESPAWN_TIMEOUT = 5.0


class Qoper8Forkserver(Qoper8Submit):
    name = "qoper8 (forkserver)"
    method = "forkserver"

    async def _start(self, n: int) -> None:
        import qoper8

        self.pool = qoper8.Pool("bench.workers:worker", children=n, start_method=self.method)
        await self.pool.start()


class Qoper8Spawn(Qoper8Forkserver):
    name = "qoper8 (spawn)"
    method = "spawn"


class MPPoolForkserver(MPPool):
    name = "multiprocessing.Pool (forkserver)"

    async def _start(self, n: int) -> None:
        self.pool = multiprocessing.get_context("forkserver").Pool(n)
        self.loop = asyncio.get_running_loop()


class MPPoolDefault(MPPool):
    name = f"multiprocessing.Pool ({multiprocessing.get_start_method()})"


ROWS: list[type[Driver]] = [
    Qoper8Forkserver,
    Qoper8Spawn,
    MPPoolDefault,
    MPPoolForkserver,
    AnyioToProcess,
]


def pss_kib(pid: int) -> int | None:
    """Proportional set size: private pages plus each shared page divided by its sharers."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(") ", 1)[1].split()[1])


def supervisor_of(d: Driver) -> Any:
    """qoper8's supervisor (to time READY), or None for the peers."""
    return getattr(getattr(d, "pool", None), "_supervisor", None)


async def _respawns(d: Driver, count: int) -> list[float]:
    """SIGKILL an idle child ``count`` times; seconds until it was replaced (see above)."""
    times: list[float] = []
    ready: list[float] = []
    supervisor = supervisor_of(d)
    if supervisor is not None:
        original = supervisor.child_ready

        def timed(child: Any) -> None:
            ready.append(time.perf_counter())
            original(child)

        supervisor.child_ready = timed
    for _ in range(count):
        live = d.live_pids()
        if len(live) < d.n:
            break
        victim = live[0]
        ready.clear()
        t0 = time.perf_counter()
        os.kill(victim, signal.SIGKILL)
        while time.perf_counter() - t0 < RESPAWN_TIMEOUT:
            if supervisor is not None:
                if ready:
                    times.append(ready[0] - t0)
                    break
                await asyncio.sleep(0.001)
                continue
            live = d.live_pids()
            if victim not in live and len(live) >= d.n:
                times.append(time.perf_counter() - t0)
                break
            await asyncio.sleep(0.001)
        else:
            break  # not replaced: no need to wait again
        if supervisor is not None:  # every child answers before the next kill
            await asyncio.wait_for(warm(d, d.n, START_TIMEOUT), START_TIMEOUT)
    return times


async def one_turn(cls: type[Driver], n: int, respawns: int) -> dict[str, Any]:
    d = cls()
    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(d.start(n), START_TIMEOUT)
        if not await warm(d, n, START_TIMEOUT):
            return {"error": f"only {len(d.live_pids())} of {n} children answered"}
        start = time.perf_counter() - t0
        pids = d.live_pids()
        children = [p for p in (pss_kib(pid) for pid in pids) if p is not None]
        result: dict[str, Any] = {
            "start_s": start,
            "pss_child_kib": statistics.mean(children) if children else None,
        }
        servers = {_parent(pid) for pid in pids} - {os.getpid()}
        if servers and cls is Qoper8Forkserver:
            server = sum(pss_kib(s) or 0 for s in servers)
            result["pss_server_kib"] = server
            result["pss_per_child_with_server_kib"] = (sum(children) + server) / len(children)
        if respawns and not isinstance(d, AnyioToProcess):
            # multiprocessing.Pool: once, and no warm-up after it (a worker killed while it
            # waits on the task queue may hold the queue's lock: later calls can hang).
            times = await _respawns(d, respawns if supervisor_of(d) is not None else 1)
            result["respawn_s"] = statistics.median(times) if times else None
            result["respawns"] = len(times)
        return result
    finally:
        await d.close()


def _fmt_ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:,.1f} ms"


def _fmt_mb(value: float | None) -> str:
    return "–" if value is None else f"{value / 1024:,.1f} MB"


def _median(values: list[Any]) -> Any:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    lines = [
        f"CPU {_cpu_model()} ({os.cpu_count()} CPUs), Linux {platform.release()}, Python "
        f"{sys.version.split()[0]}, qoper8 {commit or '?'}; {args.reps} repetitions (medians; "
        f"min-max of start), {args.children} children, {args.respawns} respawns per repetition",
        "",
        f"| row | start, {args.children} ready | start min-max | respawn (median) | PSS per child "
        "| PSS per child, server's share included |",
        "|---|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        ok = [r for r in runs if "error" not in r]
        if not ok:
            lines.append(f"| {name} | {runs[0].get('error', '?')} | | | | |")
            continue
        starts = [r["start_s"] for r in ok]
        lines.append(
            f"| {name} | {_fmt_ms(_median(starts))} | {_fmt_ms(min(starts))}-"
            f"{_fmt_ms(max(starts))} | {_fmt_ms(_median([r.get('respawn_s') for r in ok]))} | "
            f"{_fmt_mb(_median([r['pss_child_kib'] for r in ok]))} | "
            f"{_fmt_mb(_median([r.get('pss_per_child_with_server_kib') for r in ok]))} |"
        )
    return "\n".join(lines) + "\n"


async def run(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {cls.name: [] for cls in ROWS}
    for rep in range(args.reps):
        order = ROWS[rep % len(ROWS) :] + ROWS[: rep % len(ROWS)]
        for cls in order:
            try:
                res = await one_turn(cls, args.children, args.respawns)
            except Exception as exc:
                res = {"error": f"{type(exc).__name__}: {exc}"}
            results[cls.name].append(res)
            print(f"  rep {rep + 1} {cls.name}: {res}", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--children", type=int, default=8)
    parser.add_argument("--respawns", type=int, default=20)
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    text = report(results, args)
    print(text)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "startup.md").write_text(text)
        with contextlib.suppress(OSError):
            (RESULTS / "startup.json").write_text(
                json.dumps({"cpu": _cpu_model(), "runs": results}, indent=1)
            )
    return 0


if __name__ == "__main__":  # the guard: anyio's and multiprocessing's children import __main__
    code = main()
    sys.stdout.flush()
    os._exit(code)
