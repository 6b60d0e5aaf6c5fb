"""The markdown table of ``bench.actors``: medians with min and max over repetitions, Ray's
better API per measure, the ratios and the verdicts against issue 12's targets."""

from __future__ import annotations

import math
import statistics
from typing import Any

# (key, label, higher is better, target on qoper8 / best Ray: (op, bound) or None)
MEASURES: tuple[tuple[str, str, bool, tuple[str, float] | None], ...] = (
    ("p50_us", "round trip p50, µs (sequential, one caller)", False, ("<=", 0.1)),
    ("p99_us", "round trip p99, µs", False, None),
    ("sequential_per_s", "calls/s, one caller, sequential", True, (">=", 5.0)),
    ("pipelined_per_s", "calls/s, one caller, all in flight", True, (">=", 5.0)),
    ("many_per_s", "calls/s, {callers} concurrent callers", True, (">=", 5.0)),
    ("create_ms", "create, ms (until its first call answered)", False, None),
)


def _values(reps: list[dict[str, Any]], key: str) -> list[float]:
    return [float(r[key]) for r in reps if key in r and not math.isnan(float(r[key]))]


def _cell(values: list[float], digits: int = 0) -> str:
    if not values:
        return "–"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:,.{digits}f}"
    return f"{med:,.{digits}f} ({min(values):,.{digits}f}–{max(values):,.{digits}f})"


def _digits(key: str) -> int:
    return 1 if key.endswith("_us") or key.endswith("_ms") else 0


def _paired_ratios(
    q: list[dict[str, Any]],
    rs: list[dict[str, Any]],
    ra: list[dict[str, Any]],
    key: str,
    higher: bool,
) -> list[float]:
    """qoper8 / Ray's better, repetition by repetition (the two ran one after the other):
    the spread of the ratio itself."""
    ratios = []
    for i, mine in enumerate(q):
        theirs = [float(r[i][key]) for r in (rs, ra) if i < len(r) and key in r[i]]
        theirs = [v for v in theirs if not math.isnan(v)]
        if key in mine and theirs:
            ratios.append(float(mine[key]) / (max(theirs) if higher else min(theirs)))
    return ratios


def _verdict(ratio: float, target: tuple[str, float] | None) -> str:
    if target is None or math.isnan(ratio):
        return ""
    op, bound = target
    ok = ratio <= bound if op == "<=" else ratio >= bound
    return f"{op} {bound:g}: {'met' if ok else 'missed'}"


def table(data: dict[str, Any]) -> list[str]:
    results = data["results"]
    q, rs, ra = results["qoper8"], results["ray"], results["ray_async"]
    callers = data["sizes"]["callers"]
    lines = [
        "| measure | qoper8 | Ray, ray.get | Ray, asyncio | qoper8 / Ray's better "
        "(min–max per repetition) | target |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for key, label, higher, target in MEASURES:
        digits = _digits(key)
        qv, sv, av = _values(q, key), _values(rs, key), _values(ra, key)
        ratio = float("nan")
        if qv and (sv or av):
            meds = [statistics.median(v) for v in (sv, av) if v]
            best = max(meds) if higher else min(meds)
            ratio = statistics.median(qv) / best
        shown = "–" if math.isnan(ratio) else f"{ratio:.3f}x"
        paired = _paired_ratios(q, rs, ra, key, higher)
        if len(paired) > 1:
            shown += f" ({min(paired):.3f}–{max(paired):.3f})"
        lines.append(
            f"| {label.format(callers=callers)} | {_cell(qv, digits)} | {_cell(sv, digits)} | "
            f"{_cell(av, digits)} | {shown} | {_verdict(ratio, target)} |"
        )
    cold = _values(q, "cold_create_ms")
    lines.append(f"| create with no idle child to adopt, ms | {_cell(cold, 1)} | | | | |")
    submit = _values(q, "submit_p50_us")
    lines.append(f"| plain `pool.submit` p50, µs (same pool) | {_cell(submit, 1)} | | | | |")
    ratios = [r["p50_us"] / r["submit_p50_us"] for r in q if r.get("submit_p50_us")]
    med = statistics.median(ratios) if ratios else float("nan")
    lines.append(
        f"| actor call p50 / submit p50 | {_cell(ratios, 2)} | | | | {_verdict(med, ('<=', 1.3))} |"
    )
    return lines


def markdown(data: dict[str, Any]) -> str:
    m, sizes = data["meta"], data["sizes"]
    ray = f"Ray {m['ray']} (ray.init {m.get('ray_init_s', 0):.1f} s, not counted)"
    head = (
        f"`{m.get('command', 'python -m bench.actors')}` · qoper8 {m['git_commit']} · "
        f"{m['cpus']} CPUs ({m['cpu_model']}) · Python {m['python']} · "
        f"{ray if m['ray'] else 'Ray not installed: qoper8 alone'} · "
        f"{sizes['reps']} repetitions, median (min–max) · load average "
        f"{m['loadavg_start'][0]:.1f} at start, {m['loadavg_end'][0]:.1f} at end"
    )
    sized = (
        f"{sizes['calls']} sequential calls, {sizes['pipelined']} in flight, "
        f"{sizes['callers']} callers x {sizes['per_caller']} calls, {sizes['creates']} creates "
        f"({sizes['cold_creates']} with no idle child) per repetition; qoper8 pool of 2 "
        "children, Ray num_cpus=2"
    )
    return "\n".join([head, "", sized, "", *table(data)])
