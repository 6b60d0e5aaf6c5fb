"""The nine scenarios of issue 3, grouped by the pool they need, run for every driver in turn.

One *turn* is one driver through one group: start its pool (every child pre-started and warmed),
run the group's scenarios, close it. A repetition runs every driver's turn for every group, and
each repetition starts with a different driver, so that no pool always runs first or last on a
machine whose load drifts. Every wait is bounded: a pool that stops answering is recorded as
"hung" and skipped for the rest of that scenario, never waited on.

Groups:
    small (2 children):    8 memory at rest, 2 latency, 1 throughput, 5 head-of-line,
                           the native blocking API's latency and throughput, and last
                           (it may break the pool) 6 crash survival
    blocking (8 children): 7 start, 3 blocking work with 4 the loop-lag ticker, 7 respawn
Scenario 9 (the raw socketpair ping) runs inside the small group, as one more driver, and in
the blocking group for 3 and 4 (the floor that the machine and asyncio set for every pool).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import os
import signal
import statistics
import time
import traceback
from typing import TYPE_CHECKING, Any

from bench.drivers import Driver, pid_alive, run_bounded, warm

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

SCENARIOS = [
    "throughput",
    "latency",
    "blocking",
    "loop_lag",
    "hol",
    "crash",
    "start",
    "memory",
    "raw",
    "scaling",  # throughput against the number of children; --full only unless asked for
]


@dataclasses.dataclass
class Config:
    quick: bool = True
    reps: int = 3
    throughput_n: int = 2_000
    latency_n: int = 500
    latency_cap_s: float = 0.75  # a slow peer stops after this long; its sample count is kept
    small_children: int = 2
    blocking_children: int = 8
    blocking_n: int = 800
    blocking_ms: float = 5.0
    hol_short_n: int = 400
    hol_short_ms: float = 1.0
    hol_long_n: int = 4
    hol_long_ms: float = 500.0
    crash_n: int = 100
    crash_wait_s: float = 2.0
    respawn_wait_s: float = 2.0
    start_timeout_s: float = 30.0
    scaling_children: tuple[int, ...] = (1, 2, 4)
    scaling_n: int = 5_000
    scenarios: tuple[str, ...] = tuple(s for s in SCENARIOS if s != "scaling")

    @classmethod
    def full(cls) -> Config:
        return cls(
            quick=False,
            reps=5,
            throughput_n=20_000,
            latency_n=2_000,
            latency_cap_s=10.0,
            crash_wait_s=10.0,
            respawn_wait_s=10.0,
            scenarios=tuple(SCENARIOS),
        )


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank on sorted values."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100.0 * (len(s) - 1))))
    return s[k]


def ideal_finish_times(durations_ms: list[float], children: int) -> list[float]:
    """Completion times (ms) of jobs dispatched in order to the first free child, no overhead."""
    free = [0.0] * children
    out = []
    for d in durations_ms:
        i = min(range(children), key=free.__getitem__)
        free[i] += d
        out.append(free[i])
    return out


class Hung(Exception):
    """The pool did not answer within the scenario's guard."""


async def bounded(aw: Awaitable[Any], timeout: float) -> Any:
    """Await ``aw`` the way a user guards a call: in the caller's own task, under
    ``asyncio.timeout``. (``asyncio.wait_for`` would wrap a coroutine, but not a future, in a
    task of its own: an extra task per call charged only to the coroutine-based pools.)"""
    try:
        async with asyncio.timeout(timeout):
            return await aw
    except TimeoutError:
        raise Hung(f"no answer within {timeout:.0f}s") from None


# ================================================================ measurements


async def m_throughput(d: Any, cfg: Config) -> dict[str, Any]:
    n = cfg.throughput_n
    if hasattr(d, "run_throughput"):
        dt = await bounded(d.run_throughput(n), max(8.0, n / 500))
    else:
        t0 = time.perf_counter()
        res = await bounded(
            asyncio.gather(*(d.call("echo", i) for i in range(n))), max(8.0, n / 500)
        )
        dt = time.perf_counter() - t0
        if res[-1] != n - 1:
            raise AssertionError(f"wrong result {res[-1]!r}")
    return {"jobs_per_s": n / dt, "n": n, "elapsed_s": dt}


async def m_latency(d: Any, cfg: Config) -> dict[str, Any]:
    if hasattr(d, "run_latency_sample"):
        samples = await bounded(d.run_latency_sample(cfg.latency_n), cfg.latency_cap_s + 10)
    else:
        samples = []
        deadline = time.perf_counter() + cfg.latency_cap_s
        for i in range(cfg.latency_n):
            t0 = time.perf_counter()
            await bounded(d.call("echo", i), 10.0)
            t1 = time.perf_counter()
            samples.append(t1 - t0)
            if t1 > deadline:
                break
    us = [s * 1e6 for s in samples]
    return {"p50_us": pct(us, 50), "p99_us": pct(us, 99), "n": len(us), "samples_us": us}


def m_throughput_sync(d: Driver, cfg: Config) -> dict[str, Any]:
    n = cfg.throughput_n

    def run() -> float:
        t0 = time.perf_counter()
        d.sync_throughput(n)
        return time.perf_counter() - t0

    finished, dt = run_bounded(run, max(8.0, n / 250))
    if not finished:
        raise Hung("blocking map did not return")
    if isinstance(dt, BaseException):
        raise dt
    return {"jobs_per_s": n / dt, "n": n, "elapsed_s": dt}


def m_latency_sync(d: Driver, cfg: Config) -> dict[str, Any]:
    def run() -> list[float]:
        out = []
        deadline = time.perf_counter() + cfg.latency_cap_s
        for i in range(cfg.latency_n):
            t0 = time.perf_counter()
            d.sync_latency_one(i)
            t1 = time.perf_counter()
            out.append((t1 - t0) * 1e6)
            if t1 > deadline:
                break
        return out

    finished, us = run_bounded(run, cfg.latency_cap_s + 5)
    if not finished:
        raise Hung("blocking call did not return")
    if isinstance(us, BaseException):
        raise us
    return {"p50_us": pct(us, 50), "p99_us": pct(us, 99), "n": len(us), "samples_us": us}


async def m_blocking_with_ticker(d: Any, cfg: Config) -> tuple[dict[str, Any], dict[str, Any]]:
    """Scenario 3 with scenario 4's 1 ms ticker on the master's loop at the same time."""
    lags: list[float] = []
    stop = False

    async def ticker() -> None:
        while not stop:
            t0 = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append((time.perf_counter() - t0 - 0.001) * 1e3)

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)  # the ticker is running before the burst
    lags.clear()
    n, ms, c = cfg.blocking_n, cfg.blocking_ms, cfg.blocking_children
    ideal = n * ms / 1000.0 / c
    try:
        t0 = time.perf_counter()
        await bounded(asyncio.gather(*(d.call("sleep", ms) for _ in range(n))), 20 * ideal + 10)
        dt = time.perf_counter() - t0
    finally:
        stop = True
        await tick
    blocking = {"efficiency": ideal / dt, "elapsed_s": dt, "ideal_s": ideal}
    lag = {
        "p50_ms": pct(lags, 50),
        "p99_ms": pct(lags, 99),
        "max_ms": max(lags),
        "ticks": len(lags),
    }
    return blocking, lag


async def m_hol(d: Driver, cfg: Config) -> dict[str, Any]:
    """One burst of short actions with long ones interleaved, all submitted at once in order;
    how much later than the first-free-child schedule each short action completes.

    Two ideal schedules: *nominal* (every action takes exactly its sleep, zero overhead), and
    *calibrated* (every action also costs the pool's own per-action overhead, measured just
    before on a burst of the short actions alone). Against the nominal one, 200 queued actions
    per child also accumulate the pool's per-action cost; the calibrated excess is what is
    left: short actions held behind long ones (head-of-line blocking) and jitter.
    """
    c = cfg.small_children
    guard_short = cfg.hol_short_n * cfg.hol_short_ms / 1000.0 / c * 5 + 5
    t0 = time.perf_counter()
    await bounded(
        asyncio.gather(*(d.call("sleep", cfg.hol_short_ms) for _ in range(cfg.hol_short_n))),
        guard_short,
    )
    per_short_ms = (time.perf_counter() - t0) * 1e3 * c / cfg.hol_short_n
    overhead_ms = max(0.0, per_short_ms - cfg.hol_short_ms)

    total = cfg.hol_short_n + cfg.hol_long_n
    step = total // cfg.hol_long_n
    long_at = {i * step for i in range(cfg.hol_long_n)}
    durations = [cfg.hol_long_ms if i in long_at else cfg.hol_short_ms for i in range(total)]
    ideal = ideal_finish_times(durations, c)
    ideal_cal = ideal_finish_times([ms + overhead_ms for ms in durations], c)
    finished = [0.0] * total
    t0 = time.perf_counter()
    futs = []
    for i, ms in enumerate(durations):
        fut = asyncio.ensure_future(d.call("sleep", ms))

        def done(_: Any, i: int = i) -> None:
            finished[i] = (time.perf_counter() - t0) * 1e3

        fut.add_done_callback(done)
        futs.append(fut)
    guard = max(ideal_cal) / 1000.0 * 3 + 5
    try:
        await bounded(asyncio.gather(*futs), guard)
    finally:
        for f in futs:
            f.cancel()
    shorts = [i for i in range(total) if i not in long_at]
    excess = [finished[i] - ideal_cal[i] for i in shorts]
    nominal = [finished[i] - ideal[i] for i in shorts]
    return {
        "excess_p50_ms": pct(excess, 50),
        "excess_p99_ms": pct(excess, 99),
        "excess_max_ms": max(excess),
        "nominal_excess_p99_ms": pct(nominal, 99),
        "overhead_per_action_ms": overhead_ms,
        "makespan_ms": max(finished),
        "ideal_makespan_ms": max(ideal),
        "calibrated_makespan_ms": max(ideal_cal),
    }


async def m_crash(d: Driver, cfg: Config) -> dict[str, Any]:
    n = cfg.crash_n
    crash_at = n // 2
    t0 = time.perf_counter()
    futs = [
        asyncio.ensure_future(d.call("crash") if i == crash_at else d.call("echo", i))
        for i in range(n)
    ]
    settled_at: list[float | None] = [None] * n
    for i, f in enumerate(futs):
        f.add_done_callback(lambda _, i=i: settled_at.__setitem__(i, time.perf_counter() - t0))
    await asyncio.wait(futs, timeout=cfg.crash_wait_s)
    # Read before the hung ones are cancelled below (cancelling settles them too).
    all_settled = all(f.done() for f in futs)
    finish = max(s for s in settled_at if s is not None) if all_settled else None
    outcomes = []
    for i, f in enumerate(futs):
        if not f.done():
            outcomes.append("hung")
        elif f.cancelled():
            outcomes.append("cancelled")
        elif f.exception() is not None:
            outcomes.append(type(f.exception()).__name__)
        else:
            ok = f.result() == i or i == crash_at
            outcomes.append("ok" if ok else "wrong result")
        if not f.done():
            f.cancel()
    others = [o for i, o in enumerate(outcomes) if i != crash_at]
    other_failures: dict[str, int] = {}
    for o in others:
        if o != "ok":
            other_failures[o] = other_failures.get(o, 0) + 1
    survives, after = await check_serves(d)
    return {
        "crash_caller_sees": outcomes[crash_at],
        "others_ok": others.count("ok"),
        "others_total": len(others),
        "other_failures": other_failures,
        "pool_survives": survives,
        "next_call": after,
        "time_to_finish_s": finish,
    }


async def check_serves(d: Driver, timeout: float = 3.0) -> tuple[bool, str]:
    """Whether the pool answers a fresh call after an incident, and what the call saw."""
    try:
        res = await asyncio.wait_for(asyncio.ensure_future(d.call("echo", 7)), timeout)
    except TimeoutError:
        return False, "hung"
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"[:120]
    return res == 7, "ok" if res == 7 else f"wrong result {res!r}"


async def m_respawn(d: Driver, cfg: Config) -> dict[str, Any]:
    """SIGKILL one idle child; time until the pool again has all its children (for qoper8:
    ready, having said READY; for the peers: a live process, which is the most they expose)."""
    before = d.live_pids()
    if not before:
        return {"respawn_s": None, "next_call": "no children", "pool_survives": False}
    victim = before[0]
    t0 = time.perf_counter()
    os.kill(victim, signal.SIGKILL)
    respawn = None
    while time.perf_counter() - t0 < cfg.respawn_wait_s:
        live = d.live_pids()
        if victim not in live and len(live) >= d.n:
            respawn = time.perf_counter() - t0
            break
        await asyncio.sleep(0.001)
    survives, after = await check_serves(d)
    return {"respawn_s": respawn, "pool_survives": survives, "next_call": after}


def _descendants() -> dict[int, Any]:
    import psutil

    try:
        return {p.pid: p for p in psutil.Process().children(recursive=True)}
    except Exception:
        return {}


def _kill_new_descendants(before: set[int]) -> None:
    """SIGKILL what a turn left behind (a wedged pool's children), sparing the helpers that
    live for the whole program: multiprocessing's and loky's resource trackers, and the
    multiprocessing manager aiomultiprocess starts once and reuses for every pool."""
    spare: set[int] = set()
    with contextlib.suppress(Exception):
        import aiomultiprocess.core

        manager = aiomultiprocess.core._manager
        if manager is not None:
            spare.add(manager._process.pid)
    for pid, proc in _descendants().items():
        if pid in before or pid in spare:
            continue
        try:
            if "resource_tracker" in " ".join(proc.cmdline()):
                continue
            proc.kill()
        except Exception:
            pass


def m_memory(new_procs: dict[int, Any], master_rss_before: int) -> dict[str, Any]:
    import psutil

    rss = pss = uss = 0
    count = 0
    for p in new_procs.values():
        try:
            info = p.memory_full_info()
        except Exception:
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
        uss += getattr(info, "uss", info.rss)
        count += 1
    master = psutil.Process().memory_info().rss
    return {
        "children_rss_mb": rss / 2**20,
        "children_pss_mb": pss / 2**20,
        # What killing the children would free: fork's children share the master's pages
        # (which grow with the master), fresh interpreters share only libraries.
        "children_uss_mb": uss / 2**20,
        "processes": count,
        "master_rss_growth_mb": (master - master_rss_before) / 2**20,
    }


# ================================================================ turns


def quiet_heap() -> None:
    """Collect, then freeze what the bench itself holds, before a timed scenario.

    The bench's own heap (imported libraries, every earlier result) grows over a run, and a
    full collection of it took 10-30 ms on the 2-CPU VM: a stall on the master's loop charged
    to whichever pool happened to allocate the object that triggered it. Frozen objects are
    never scanned again, so collections during a scenario see only what that pool and its
    scenario allocate. Applied to every pool alike.
    """
    gc.collect()
    gc.freeze()


class Recorder:
    """results[scenario][driver] -> list of per-repetition dicts (or {"status": ...})."""

    def __init__(self) -> None:
        self.results: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self.hung: set[tuple[str, str]] = set()

    def wants(self, scenario: str, driver: str) -> bool:
        return (scenario, driver) not in self.hung

    def add(self, scenario: str, driver: str, value: dict[str, Any]) -> None:
        self.results.setdefault(scenario, {}).setdefault(driver, []).append(value)

    async def measure(
        self, scenario: str, driver: str, fn: Callable[[], Awaitable[dict[str, Any]]]
    ) -> bool:
        """Run one measurement; False if the pool can no longer be trusted this turn."""
        if not self.wants(scenario, driver):
            return True
        quiet_heap()
        try:
            value = await fn()
        except Hung as exc:
            self.add(scenario, driver, {"status": "hung", "detail": str(exc)})
            self.hung.add((scenario, driver))
            return False
        except Exception as exc:
            self.add(
                scenario, driver, {"status": "error", "detail": f"{type(exc).__name__}: {exc}"}
            )
            return False
        value.setdefault("status", "ok")
        self.add(scenario, driver, value)
        return True


def log(msg: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {msg}", flush=True)


async def _start(d: Any, n: int, cfg: Config) -> float:
    t0 = time.perf_counter()
    await asyncio.wait_for(d.start(n), cfg.start_timeout_s)
    if isinstance(d, Driver):
        ok = await warm(d, n, cfg.start_timeout_s)
        if not ok:
            raise RuntimeError(f"only {len(d.live_pids())} of {n} children answered the warm-up")
    return time.perf_counter() - t0


async def turn_small(d: Any, cfg: Config, rec: Recorder) -> None:
    want = set(cfg.scenarios)
    name = d.name
    is_raw = not isinstance(d, Driver)
    before = _descendants()
    master_before = _master_rss()
    try:
        started = await _start(d, cfg.small_children, cfg)
    except Exception as exc:
        for s in ("throughput", "latency"):
            rec.add(s, name, {"status": "error", "detail": f"start: {type(exc).__name__}: {exc}"})
        await d.close()
        return
    try:
        if not is_raw and not d.variant and "memory" in want:
            new = {pid: p for pid, p in _descendants().items() if pid not in before}
            rec.add(
                "memory",
                name,
                {"status": "ok", **m_memory(new, master_before), "start_2_s": started},
            )
        if is_raw and "raw" not in want and not want & {"throughput", "latency"}:
            return
        if not is_raw and not want & {"throughput", "latency", "hol", "crash"}:
            return
        ok = True
        if getattr(d, "sync_only", False):
            if want & {"throughput", "latency"}:
                ok = await rec.measure("latency_sync", name, _async(lambda: m_latency_sync(d, cfg)))
                ok = ok and await rec.measure(
                    "throughput_sync", name, _async(lambda: m_throughput_sync(d, cfg))
                )
            return
        if want & {"latency", "raw"}:
            ok = await rec.measure("latency", name, lambda: m_latency(d, cfg))
        if ok and want & {"throughput", "raw"}:
            ok = await rec.measure("throughput", name, lambda: m_throughput(d, cfg))
        if is_raw or d.variant:
            return
        if ok and "hol" in want:
            ok = await rec.measure("hol", name, lambda: m_hol(d, cfg))
        if ok and d.sync_how is not None and want & {"throughput", "latency"}:
            ok = await rec.measure("latency_sync", name, _async(lambda: m_latency_sync(d, cfg)))
            if ("throughput", name) in rec.hung:
                rec.hung.add(("throughput_sync", name))  # the same pool, the same deadlock
            ok = ok and await rec.measure(
                "throughput_sync", name, _async(lambda: m_throughput_sync(d, cfg))
            )
        # Last, because it may break the pool: the same warm pool takes the crash.
        if ok and "crash" in want:
            await rec.measure("crash", name, lambda: m_crash(d, cfg))
            last = rec.results["crash"][name][-1]
            if last.get("crash_caller_sees") == "hung":
                rec.hung.add(("crash", name))  # the same hang every time; wait for it once
    finally:
        await d.close()


def _async(fn: Callable[[], dict[str, Any]]) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def run() -> dict[str, Any]:
        return fn()

    return run


def _master_rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


async def turn_blocking(d: Any, cfg: Config, rec: Recorder) -> None:
    want = set(cfg.scenarios)
    name = d.name
    n = cfg.blocking_children
    is_raw = not isinstance(d, Driver)  # the floor for 3 and 4 only: no start or respawn row
    try:
        started = await _start(d, n, cfg)
    except Exception as exc:
        rec.add("start", name, {"status": "error", "detail": f"{type(exc).__name__}: {exc}"})
        await d.close()
        return
    try:
        if not is_raw:
            rec.add("start", name, {"status": "ok", "start_s": started, "children": n})
        if want & {"blocking", "loop_lag"} and rec.wants("blocking", name):
            try:
                quiet_heap()
                blocking, lag = await m_blocking_with_ticker(d, cfg)
            except Hung as exc:
                for s in ("blocking", "loop_lag"):
                    rec.add(s, name, {"status": "hung", "detail": str(exc)})
                    rec.hung.add((s, name))
                return
            except Exception as exc:
                for s in ("blocking", "loop_lag"):
                    rec.add(s, name, {"status": "error", "detail": f"{type(exc).__name__}: {exc}"})
                return
            rec.add("blocking", name, {"status": "ok", **blocking})
            rec.add("loop_lag", name, {"status": "ok", **lag})
        if "start" in want and not is_raw:
            await rec.measure("respawn", name, lambda: m_respawn(d, cfg))
            last = rec.results["respawn"][name][-1]
            if last.get("status") == "ok" and last["respawn_s"] is None:
                rec.hung.add(("respawn", name))  # never replaced: no need to wait again
    finally:
        await d.close()


async def turn_scaling(d: Any, cfg: Config, rec: Recorder) -> None:
    """Scenario 1 again with 1, 2, 4... children: a fresh pool for each count."""
    for c in cfg.scaling_children:
        if not rec.wants("scaling", f"{d.name}@{c}"):
            continue
        pool = type(d)()
        try:
            await _start(pool, c, cfg)
            one = dataclasses.replace(cfg, throughput_n=cfg.scaling_n)
            await rec.measure("scaling", f"{d.name}@{c}", lambda p=pool, o=one: m_throughput(p, o))
        except Exception as exc:
            rec.add("scaling", f"{d.name}@{c}", {"status": "error", "detail": repr(exc)[:200]})
        finally:
            await pool.close()


# The scenarios of each group that the bare asyncio master takes part in.
RAW_SCENARIOS = {"small": {"raw", "throughput", "latency"}, "blocking": {"blocking", "loop_lag"}}


async def run_all(
    driver_types: list[type[Any]], cfg: Config, on_rep: Callable[[Recorder], None] | None = None
) -> Recorder:
    rec = Recorder()
    want = set(cfg.scenarios)
    groups: list[tuple[str, Callable[..., Awaitable[None]], bool]] = [
        (
            "small",
            turn_small,
            bool(want & {"throughput", "latency", "hol", "memory", "raw", "crash"}),
        ),
        ("blocking", turn_blocking, bool(want & {"blocking", "loop_lag", "start"})),
        ("scaling", turn_scaling, "scaling" in want),
    ]
    for rep in range(cfg.reps):
        print(f"repetition {rep + 1}/{cfg.reps}", flush=True)
        for group, turn, active in groups:
            if not active:
                continue
            types = [
                t
                for t in driver_types
                if group == "small"
                or not t.variant
                or (group in ("scaling", "blocking") and t.name.startswith("raw"))
            ]
            if cfg.quick:
                types = [t for t in types if not getattr(t, "full_only", False)]
            if want == {"raw"}:
                types = [t for t in types if t.name.startswith("raw")]
            elif group in RAW_SCENARIOS and not want & RAW_SCENARIOS[group]:
                types = [t for t in types if not t.name.startswith("raw")]
            k = rep % len(types)
            for t in types[k:] + types[:k]:
                d = t()
                t0 = time.perf_counter()
                before = set(_descendants())
                try:
                    await turn(d, cfg, rec)
                except Exception:
                    traceback.print_exc()
                    with contextlib.suppress(Exception):
                        await d.close()
                _kill_new_descendants(before)
                log(f"{group:8s} {d.name} ({time.perf_counter() - t0:.1f}s)")
        if on_rep is not None:
            on_rep(rec)
    return rec


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def kill_descendants() -> None:
    """At the end of a run: whatever is left (helpers such as aiomultiprocess's manager and
    the resource trackers, which would otherwise outlive the bench) is killed."""
    for proc in _descendants().values():
        with contextlib.suppress(Exception):
            proc.kill()


def leftover_children() -> list[str]:
    """Processes still alive after every pool closed (helpers that live for the program)."""
    out = []
    for pid, proc in _descendants().items():
        if pid_alive(pid):
            with contextlib.suppress(Exception):
                out.append(f"{pid} {' '.join(proc.cmdline())[:80]}")
    return out
