"""``python -m bench.http_path``: what the daemon's HTTP path costs against ``pool.submit``.

In one run, for each client concurrency, it alternates two ways of running the same tiny
action on the same number of children: ``await pool.submit`` in this process, and
``await client.submit`` against a ``qoper8 serve`` subprocess over loopback HTTP (the load
generator shares the machine's cores with the daemon, as a local caller would), and, when
``wrk`` is installed, the daemon under ``wrk`` (no Python client taking CPU). It reports
the median throughput and latency percentiles over the repetitions as a markdown table, and
asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import qoper8

REPO = Path(__file__).resolve().parent.parent
WORKER = "bench.workers:worker"
ACTION: dict[str, Any] = {"type": "echo", "value": 7}
READY_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _drive(submit: Any, concurrency: int, duration: float) -> dict[str, float]:
    """``concurrency`` callers submitting back to back for ``duration`` seconds."""
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + duration

    async def caller() -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                await submit(ACTION)
            except qoper8.Qoper8Error:
                errors += 1
                continue
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "throughput": len(latencies) / elapsed,
        "p50_ms": _pct(latencies, 0.50) * 1000 if latencies else float("nan"),
        "p99_ms": _pct(latencies, 0.99) * 1000 if latencies else float("nan"),
        "errors": errors,
    }


class _Daemon:
    def __init__(self, children: int) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "qoper8", "serve", "--worker", WORKER]
        cmd += ["--children", str(children), "--port", str(self.port), "--log-level", "WARNING"]
        self.proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"qoper8 serve exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/v1/health", timeout=5) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("qoper8 serve was not ready in time")
            time.sleep(0.05)

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"type":"echo","value":7}'
wrk.headers["Content-Type"] = "application/json"
"""
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _wrk_ms(text: str) -> float:
    for unit in ("us", "ms", "s"):
        if text.endswith(unit):
            return float(text.removesuffix(unit)) * _UNITS[unit]
    return float("nan")


def _wrk(wrk: str, url: str, concurrency: int, duration: float, script: Path) -> dict[str, float]:
    """The daemon under ``wrk`` (a C load generator), so no Python client takes CPU."""
    out = subprocess.run(
        [
            wrk,
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(duration))}s",
            "--latency",
            "-s",
            str(script),
            url + "/v1/submit",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    found: dict[str, float] = {"errors": 0}
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            found["throughput"] = float(parts[1])
        elif parts[:1] == ["50%"]:
            found["p50_ms"] = _wrk_ms(parts[1])
        elif parts[:1] == ["99%"]:
            found["p99_ms"] = _wrk_ms(parts[1])
        elif "Non-2xx" in line or line.strip().startswith("Socket errors"):
            found["errors"] += sum(int(p.strip(",")) for p in parts if p.strip(",").isdigit())
    found.setdefault("throughput", 0.0)
    found.setdefault("p50_ms", float("nan"))
    found.setdefault("p99_ms", float("nan"))
    return found


async def run(children: int, concurrencies: list[int], duration: float, reps: int) -> str:
    daemon = _Daemon(children)
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    wrk = shutil.which("wrk")
    script = Path(tempfile.mkdtemp()) / "post.lua"
    script.write_text(_WRK_SCRIPT)
    try:
        daemon.wait_ready()
        async with (
            qoper8.Pool(WORKER, children=children) as pool,
            qoper8.Client(daemon.url, max_connections=0) as client,
        ):
            # warm both paths (connections, first-job costs) before measuring
            await _drive(pool.submit, max(concurrencies), 0.3)
            await _drive(client.submit, max(concurrencies), 0.3)
            for _ in range(reps):
                for c in concurrencies:
                    for name, submit in (("pool.submit", pool.submit), ("HTTP", client.submit)):
                        results.setdefault((name, c), []).append(await _drive(submit, c, duration))
                    if wrk:
                        results.setdefault(("HTTP (wrk)", c), []).append(
                            await asyncio.to_thread(_wrk, wrk, daemon.url, c, duration, script)
                        )
    finally:
        daemon.stop()
    return _table(results, children, duration, reps)


def _table(
    results: dict[tuple[str, int], list[dict[str, float]]],
    children: int,
    duration: float,
    reps: int,
) -> str:
    lines = [
        f"HTTP path vs in-process submit: {children} children, `echo` action, "
        f"{duration:g}s per point, median of {reps} (CPUs: {os.cpu_count()})",
        "",
        "| concurrency | path | jobs/s | p50 ms | p99 ms | errors | HTTP/in-process |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for (name, c), runs in sorted(
        results.items(), key=lambda kv: (kv[0][1], kv[0][0] != "pool.submit")
    ):
        tput = statistics.median(r["throughput"] for r in runs)
        p50 = statistics.median(r["p50_ms"] for r in runs)
        p99 = statistics.median(r["p99_ms"] for r in runs)
        errors = int(sum(r["errors"] for r in runs))
        ratio = ""
        if name != "pool.submit":
            ref = statistics.median(r["throughput"] for r in results[("pool.submit", c)])
            ratio = f"{tput / ref:.2f}x"
        lines.append(f"| {c} | {name} | {tput:,.0f} | {p50:.2f} | {p99:.2f} | {errors} | {ratio} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- choosing the HTTP library

# `--servers`: the same submit endpoint (JSON in, pool.submit, JSON out) on one asyncio loop
# with a pool, served by each candidate library, driven by wrk. This is how the daemon's
# library was chosen; uvicorn and starlette are not qoper8 dependencies, so that candidate is
# skipped unless they are installed.
SERVERS = ("aiohttp", "uvicorn+starlette")


async def _serve_with(kind: str, port: int, children: int) -> None:
    import orjson

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    async with qoper8.Pool(WORKER, children=children) as pool:
        loop.add_signal_handler(signal.SIGTERM, stop.set)

        async def work(body: bytes) -> bytes:
            return orjson.dumps({"result": await pool.submit(orjson.loads(body))})

        if kind == "aiohttp":
            from aiohttp import web

            async def handle(request: web.Request) -> web.Response:
                body = await work(await request.read())
                return web.Response(body=body, content_type="application/json")

            app = web.Application()
            app.router.add_post("/v1/submit", handle)
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            await stop.wait()
            await runner.cleanup()
        else:
            # imported by name: optional, and not qoper8 dependencies
            uvicorn = importlib.import_module("uvicorn")
            starlette_apps = importlib.import_module("starlette.applications")
            responses = importlib.import_module("starlette.responses")
            routing = importlib.import_module("starlette.routing")

            async def endpoint(request: Any) -> Any:
                body = await work(await request.body())
                return responses.Response(body, media_type="application/json")

            app2 = starlette_apps.Starlette(
                routes=[routing.Route("/v1/submit", endpoint, methods=["POST"])]
            )
            config = uvicorn.Config(
                app2, host="127.0.0.1", port=port, loop="none", http="httptools",
                access_log=False, log_level="warning", lifespan="off",
            )  # fmt: skip
            server = uvicorn.Server(config)
            task = asyncio.create_task(server.serve())
            await stop.wait()
            server.should_exit = True
            await task


def _compare_servers(children: int, concurrencies: list[int], duration: float, reps: int) -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        return "--servers needs wrk (apt-get install wrk)"
    kinds = [
        k
        for k in SERVERS
        if k == "aiohttp"
        or (importlib.util.find_spec("uvicorn") and importlib.util.find_spec("starlette"))
    ]
    script = Path(tempfile.mkdtemp()) / "post.lua"
    script.write_text(_WRK_SCRIPT)
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    for _ in range(reps):
        for kind in kinds:
            port = _free_port()
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.http_path",
                    "--serve-with",
                    kind,
                    "--port",
                    str(port),
                    "--children",
                    str(children),
                ],
                cwd=REPO,
                start_new_session=True,
            )
            try:
                _wait_listening(port, proc)
                for c in concurrencies:
                    results.setdefault((kind, c), []).append(
                        _wrk(wrk, f"http://127.0.0.1:{port}", c, duration, script)
                    )
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
    lines = [
        f"HTTP library behind the same pool ({children} children, `echo`), wrk, "
        f"{duration:g}s per point, median of {reps}",
        "",
        "| library | concurrency | requests/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for (kind, c), runs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        lines.append(
            f"| {kind} | {c} | {statistics.median(r['throughput'] for r in runs):,.0f} | "
            f"{statistics.median(r['p50_ms'] for r in runs):.2f} | "
            f"{statistics.median(r['p99_ms'] for r in runs):.2f} |"
        )
    missing = sorted(set(SERVERS) - set(kinds))
    if missing:
        lines.append(f"\n(not installed, skipped: {', '.join(missing)})")
    return "\n".join(lines)


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("the server did not listen in time") from None
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.http_path", description=__doc__)
    p.add_argument("--children", type=int, default=2)
    p.add_argument("--concurrency", default="1,8,64", help="comma-separated client counts")
    p.add_argument("--duration", type=float, default=2.0, help="seconds per measurement")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument(
        "--servers", action="store_true", help="compare HTTP libraries (needs wrk) instead"
    )
    p.add_argument("--serve-with", choices=SERVERS, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    if args.serve_with:
        asyncio.run(_serve_with(args.serve_with, args.port, args.children))
    elif args.servers:
        print(_compare_servers(args.children, concurrencies, args.duration, args.reps))
    else:
        print(asyncio.run(run(args.children, concurrencies, args.duration, args.reps)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
