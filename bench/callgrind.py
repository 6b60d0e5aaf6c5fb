"""The master's cost per job in instructions, counted by ``valgrind --tool=callgrind``.

Wall-clock figures drift on shared machines and differ between CPUs; instructions executed
by the master hold still (the same total twice for the same binary and inputs, whatever else
the machine is doing). Each face runs twice in a fresh master under callgrind, with N1 and N2
no-op jobs after the same start-up; (total(N2) - total(N1)) / (N2 - N1) is the master's cost
of one job, start-up and teardown cancelled out. Children are not traced (they are other
processes); only the master is counted.

    .venv/bin/python -m bench.callgrind                    # every face, N1=1000, N2=5000
    .venv/bin/python -m bench.callgrind --face submit --face raw

Faces: ``submit`` (``await pool.submit`` of a no-op action, 256 in flight, a task each:
``asyncio.gather``), ``submit_loop`` (the same from 256 long-lived callers, no task per job),
``map`` (``await pool.map`` of 256 actions at a time), ``run`` (``await
pool.run`` of a no-op function), ``executor`` (``loop.run_in_executor(pool.executor(), ...)``),
``sync`` (``qoper8.sync.Pool.submit`` from one thread, sequential), ``actor`` (``await
ref.call`` of a named actor's no-op method, 256 in flight, a task each: one actor child
takes them in turn), ``raw`` (the bare asyncio master of bench/raw.py: the floor). Results
go to ``bench/results/callgrind.json`` and a markdown table on stdout, with the CPU model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
FACES = ("submit", "submit_loop", "map", "run", "executor", "sync", "actor", "raw")
CHILDREN = 2
IN_FLIGHT = 256
WORKER = "bench.workers:worker"


# ---------------------------------------------------------------- the measured program


async def _async_face(face: str, n: int) -> None:
    if face == "raw":
        from bench.raw import RawPingPong

        raw = RawPingPong()
        await raw.start(CHILDREN)
        try:
            await raw.run_throughput(n)
        finally:
            await raw.close()
        return
    import qoper8

    from bench import workers

    loop = asyncio.get_running_loop()
    async with qoper8.Pool(WORKER, children=CHILDREN) as pool:
        ex = pool.executor()
        actor = await pool.actors.create("bench.counter", "bench") if face == "actor" else None
        for _ in range(3):  # warm: every child has answered, every code path has run once
            await pool.submit({"type": "echo"})
            await pool.run(workers.echo)
            await loop.run_in_executor(ex, workers.echo)
            if actor is not None:
                await actor.call("echo")
        done = 0
        while done < n:
            batch = min(IN_FLIGHT, n - done)
            if actor is not None:
                await asyncio.gather(*(actor.call("echo") for _ in range(batch)))
            elif face == "submit":
                await asyncio.gather(*(pool.submit({"type": "echo"}) for _ in range(batch)))
            elif face == "map":
                await pool.map({"type": "echo"} for _ in range(batch))
            elif face == "submit_loop":
                # 256 long-lived callers, each awaiting one submit after another (a server's
                # request handlers): no task per job, unlike ``submit``'s gather.
                share = [n // IN_FLIGHT + (i < n % IN_FLIGHT) for i in range(IN_FLIGHT)]
                await asyncio.gather(*(_caller(pool, k) for k in share if k))
                return
            elif face == "run":
                await asyncio.gather(*(pool.run(workers.echo) for _ in range(batch)))
            else:
                await asyncio.gather(
                    *(loop.run_in_executor(ex, workers.echo) for _ in range(batch))
                )
            done += batch


async def _caller(pool: Any, k: int) -> None:
    for _ in range(k):
        await pool.submit({"type": "echo"})


def _sync_face(n: int) -> None:
    import qoper8.sync

    with qoper8.sync.Pool(WORKER, children=CHILDREN) as pool:
        for _ in range(3):
            pool.submit({"type": "echo"})
        for _ in range(n):
            pool.submit({"type": "echo"})


def target(face: str, n: int) -> None:
    if face == "sync":
        _sync_face(n)
    else:
        asyncio.run(_async_face(face, n))


# ---------------------------------------------------------------- the harness


def _instructions(face: str, n: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        cmd = [
            "valgrind",
            "--tool=callgrind",
            "--trace-children=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "bench.callgrind",
            "--target",
            face,
            str(n),
        ]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
        text = Path(out).read_text(errors="replace")
    match = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.MULTILINE)
    if match is None:
        raise RuntimeError("no summary line in callgrind's output")
    return int(match.group(1))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return done.stdout.strip() or "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.callgrind", description=__doc__)
    parser.add_argument("--face", action="append", choices=FACES, help="repeatable; default all")
    parser.add_argument("--n1", type=int, default=1000)
    parser.add_argument("--n2", type=int, default=5000)
    parser.add_argument("--out", default=str(RESULTS / "callgrind.json"))
    parser.add_argument("--target", nargs=2, metavar=("FACE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.target:
        target(args.target[0], int(args.target[1]))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    faces = args.face or list(FACES)
    rows: dict[str, dict[str, Any]] = {}
    for face in faces:
        started = time.monotonic()
        low, high = _instructions(face, args.n1), _instructions(face, args.n2)
        per_job = (high - low) / (args.n2 - args.n1)
        rows[face] = {"per_job": round(per_job), "total_n1": low, "total_n2": high}
        print(f"{face}: {per_job:,.0f} instructions per job ({time.monotonic() - started:.0f} s)")
    raw = rows.get("raw", {}).get("per_job")
    result = {
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "commit": _commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "n1": args.n1,
        "n2": args.n2,
        "children": CHILDREN,
        "faces": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(f"CPU {result['cpu_model']}, Python {result['python']}, qoper8 {result['commit']}")
    print("| face | instructions per job | x bare master |")
    print("|---|---:|---:|")
    for face, row in rows.items():
        ratio = f"{row['per_job'] / raw:.2f}" if raw else ""
        print(f"| {face} | {row['per_job']:,} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
