"""Turn a run's raw measurements into medians, spreads and ratios: the markdown tables, the
targets of issue 3 (met or missed, by how much), the JSON file and the PNG charts."""

from __future__ import annotations

import json
import math
import os
import statistics
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

REFERENCE = "qoper8"
RAW = "raw asyncio socketpair ping"

# scenario, key, label, unit, higher is better
METRICS: list[tuple[str, str, str, str, bool]] = [
    ("throughput", "jobs_per_s", "1 no-op throughput", "jobs/s", True),
    ("latency", "p50_us", "2 latency p50", "µs", False),
    ("latency", "p99_us", "2 latency p99", "µs", False),
    ("blocking", "efficiency", "3 blocking efficiency", "ideal/actual", True),
    ("loop_lag", "p99_ms", "4 loop lag p99", "ms", False),
    ("loop_lag", "max_ms", "4 loop lag max", "ms", False),
    ("hol", "excess_p99_ms", "5 head-of-line excess p99 (calibrated)", "ms", False),
    ("hol", "excess_max_ms", "5 head-of-line excess max", "ms", False),
    ("hol", "nominal_excess_p99_ms", "5 excess p99 over the zero-overhead schedule", "ms", False),
    ("hol", "overhead_per_action_ms", "5 per-action overhead, measured", "ms", False),
    ("start", "start_s", "7 start 8 children", "s", False),
    ("respawn", "respawn_s", "7 respawn one child", "s", False),
    ("memory", "children_rss_mb", "8 memory RSS (2 children)", "MB", False),
    ("memory", "children_pss_mb", "8 memory PSS (2 children)", "MB", False),
    ("memory", "children_uss_mb", "8 memory USS (2 children)", "MB", False),
    ("throughput_sync", "jobs_per_s", "1 no-op throughput, blocking API", "jobs/s", True),
    ("latency_sync", "p50_us", "2 latency p50, blocking API", "µs", False),
    ("latency_sync", "p99_us", "2 latency p99, blocking API", "µs", False),
]


def _ok(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e.get("status") == "ok"]


def stat(entries: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Median, min, max over the repetitions that produced a value; and what the others did."""
    values = [e[key] for e in _ok(entries) if e.get(key) is not None]
    bad = [e.get("status", "?") for e in entries if e.get("status") != "ok"]
    missing = sum(1 for e in _ok(entries) if e.get(key) is None)
    out: dict[str, Any] = {"n": len(values), "failed": bad, "none": missing}
    if values:
        out.update(median=statistics.median(values), min=min(values), max=max(values))
    return out


def summarise(results: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for scenario, key, label, unit, higher in METRICS:
        per = results.get(scenario, {})
        rows = {name: stat(entries, key) for name, entries in per.items()}
        # Blocking-API rows compare with qoper8's own blocking face when it was measured.
        ref = results.get(scenario, {}).get("qoper8.sync") if scenario.endswith("_sync") else None
        if ref is None:
            ref = results.get(scenario.replace("_sync", ""), {}).get(REFERENCE)
        ref_med = stat(ref, key).get("median") if ref else None
        for row in rows.values():
            m = row.get("median")
            row["ratio"] = ref_med / m if ref_med is not None and m else None
        summary[f"{scenario}.{key}"] = {
            "label": label,
            "unit": unit,
            "higher": higher,
            "rows": rows,
        }
    summary["crash"] = {
        name: crash_summary(entries) for name, entries in results.get("crash", {}).items()
    }
    return summary


def crash_summary(entries: list[dict[str, Any]]) -> dict[str, Any]:
    ok = _ok(entries)
    if not ok:
        return {"status": ", ".join(sorted({e.get("status", "?") for e in entries})) or "none"}
    times = [e["time_to_finish_s"] for e in ok if e["time_to_finish_s"] is not None]
    return {
        "status": "ok",
        "reps": len(ok),
        "pool_survives": f"{sum(e['pool_survives'] for e in ok)}/{len(ok)}",
        "next_call": _mode([e["next_call"].split(":")[0] for e in ok]),
        "next_call_detail": _mode([e["next_call"] for e in ok]),
        "crash_caller_sees": _mode([e["crash_caller_sees"] for e in ok]),
        "others_ok_median": statistics.median(e["others_ok"] for e in ok),
        "others_total": ok[0]["others_total"],
        "other_failures": _mode([_fmt_failures(e["other_failures"]) for e in ok]),
        "time_to_finish_s": statistics.median(times) if times else None,
        "all_settled": f"{len(times)}/{len(ok)}",
    }


def _fmt_failures(f: dict[str, int]) -> str:
    return ", ".join(f"{v}× {k}" for k, v in sorted(f.items())) or "none"


def _mode(values: list[Any]) -> Any:
    return max(set(values), key=values.count) if values else None


# ================================================================ formatting


def _num(v: float | None, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if unit in ("ideal/actual",):
        return f"{v:.3f}"
    if unit == "s":
        return f"{v * 1000:,.0f} ms" if v < 10 else f"{v:,.1f} s"
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def cell(row: dict[str, Any] | None, unit: str) -> str:
    if row is None:
        return ""
    if row.get("median") is None:
        if row.get("failed"):
            return "/".join(sorted(set(row["failed"])))
        if row.get("none"):
            return "not replaced" if unit == "s" else "none"
        return "–"
    txt = _num(row["median"], unit)
    if row.get("failed"):
        txt += f" ({len(row['failed'])} {'/'.join(sorted(set(row['failed'])))})"
    if row.get("none"):
        txt += f" ({row['none']}× not replaced)"
    return txt


def driver_order(results: dict[str, Any], preferred: list[str] | None = None) -> list[str]:
    """Every pool that has a result, in ``preferred`` order (the drivers' list), then the rest."""
    names: list[str] = []
    for scenario, per in results.items():
        if scenario == "scaling":
            continue
        for name in per:
            if name not in names:
                names.append(name)
    if preferred:
        rank = {n: i for i, n in enumerate(preferred)}
        names.sort(key=lambda n: rank.get(n, len(rank)))
    return names


def summary_table(summary: dict[str, Any], names: list[str]) -> str:
    cols = [
        ("throughput.jobs_per_s", "1 throughput jobs/s"),
        ("latency.p50_us", "2 p50 µs"),
        ("latency.p99_us", "2 p99 µs"),
        ("blocking.efficiency", "3 efficiency"),
        ("loop_lag.p99_ms", "4 lag p99 ms"),
        ("hol.excess_p99_ms", "5 HOL excess p99 ms"),
        ("crash", "6 crash: survives · others ok · caller sees"),
        ("start.start_s", "7 start ×8"),
        ("respawn.respawn_s", "7 respawn"),
        ("memory.children_pss_mb", "8 PSS MB (USS)"),
    ]
    head = "| pool, driven from asyncio | " + " | ".join(c[1] for c in cols) + " |"
    sep = "|---|" + "---|" * len(cols)
    lines = [head, sep]
    for name in names:
        cells = []
        for key, _ in cols:
            if key == "crash":
                c = summary["crash"].get(name)
                if c is None:
                    cells.append("")
                elif c["status"] != "ok":
                    cells.append(c["status"])
                else:
                    cells.append(
                        f"{c['pool_survives']} · {c['others_ok_median']:g}/{c['others_total']} · "
                        f"{c['crash_caller_sees']}"
                    )
                continue
            m = summary[key]
            row = m["rows"].get(name)
            txt = cell(row, m["unit"])
            if key == "memory.children_pss_mb" and row and row.get("median") is not None:
                uss = summary.get("memory.children_uss_mb", {}).get("rows", {}).get(name, {})
                txt += f" ({_num(uss.get('median'))})"
            cells.append(txt)
        if any(cells):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def detail_tables(summary: dict[str, Any], names: list[str]) -> str:
    out = []
    for scenario, key, *_ in METRICS:
        m = summary[f"{scenario}.{key}"]
        rows = m["rows"]
        if not rows:
            continue
        better = "higher is better" if m["higher"] else "lower is better"
        ref = "qoper8.sync" if scenario.endswith("_sync") and "qoper8.sync" in rows else REFERENCE
        out.append(f"#### {m['label']} ({m['unit']}, {better}; ratio = {ref} / row)\n")
        out.append(f"| pool | median | min | max | ok runs | ratio {ref}/row |")
        out.append("|---|---|---|---|---|---|")
        for name in names:
            row = rows.get(name)
            if row is None:
                continue
            ratio = f"{row['ratio']:.2f}" if row.get("ratio") else "–"
            ok = f"{row['n']}" + (f" ({', '.join(row['failed'])})" if row["failed"] else "")
            out.append(
                f"| {name} | {cell(row, m['unit'])} | {_num(row.get('min'), m['unit'])} | "
                f"{_num(row.get('max'), m['unit'])} | {ok} | {ratio} |"
            )
        out.append("")
    out.append("#### 6 crash survival (100 actions, one calls `os._exit(1)`)\n")
    out.append(
        "| pool | pool survives | next call | crashing caller sees | other 99 ok (median) "
        "| what the others saw | all settled | time to finish |"
    )
    out.append("|---|---|---|---|---|---|---|---|")
    for name in names:
        c = summary["crash"].get(name)
        if c is None:
            continue
        if c["status"] != "ok":
            out.append(f"| {name} | {c['status']} | | | | | | |")
            continue
        t = c["time_to_finish_s"]
        out.append(
            f"| {name} | {c['pool_survives']} | {c['next_call']} | {c['crash_caller_sees']} | "
            f"{c['others_ok_median']:g}/{c['others_total']} | {c['other_failures']} | "
            f"{c['all_settled']} | {_num(t, 's') if t is not None else 'never (hung)'} |"
        )
    return "\n".join(out)


def scaling_table(results: dict[str, Any]) -> str:
    scaling = results.get("scaling", {})
    if not scaling:
        return ""
    table: dict[str, dict[int, str]] = {}
    counts: set[int] = set()
    for key, entries in scaling.items():
        name, _, c = key.rpartition("@")
        counts.add(int(c))
        table.setdefault(name, {})[int(c)] = cell(stat(entries, "jobs_per_s"), "jobs/s")
    cs = sorted(counts)
    lines = [
        "#### no-op throughput against the number of children (jobs/s, median)\n",
        "| pool | " + " | ".join(f"{c} children" for c in cs) + " |",
        "|---|" + "---|" * len(cs),
    ]
    lines += [
        f"| {n} | " + " | ".join(row.get(c, "") for c in cs) + " |" for n, row in table.items()
    ]
    return "\n".join(lines) + "\n"


# ================================================================ targets


def targets(summary: dict[str, Any], names: list[str]) -> list[tuple[str, str, str, str]]:
    """(target, qoper8's value, reference, verdict) for each target of issue 3."""
    peers = [n for n in names if not n.startswith(("qoper8", "raw"))]

    def med(key: str, name: str) -> float | None:
        row = summary[key]["rows"].get(name)
        return row.get("median") if row else None

    def best(key: str, higher: bool) -> tuple[str, float] | None:
        vals = [(n, med(key, n)) for n in peers]
        vals = [(n, v) for n, v in vals if v is not None]
        if not vals:
            return None
        return max(vals, key=lambda x: x[1]) if higher else min(vals, key=lambda x: x[1])

    out = []
    q = med("throughput.jobs_per_s", REFERENCE)
    b = best("throughput.jobs_per_s", True)
    if q and b:
        r = q / b[1]
        out.append(
            (
                "throughput ≥ 1.5× best peer",
                f"{q:,.0f} jobs/s",
                f"{b[0]} {b[1]:,.0f}",
                f"{'met' if r >= 1.5 else 'missed'}: {r:.2f}×",
            )
        )
    raw = med("throughput.jobs_per_s", RAW)
    if q and raw:
        r = q / raw
        out.append(
            (
                "throughput ≥ 0.5× raw limit",
                f"{q:,.0f} jobs/s",
                f"raw {raw:,.0f}",
                f"{'met' if r >= 0.5 else 'missed'}: {r:.2f}×",
            )
        )
    for key, factor, label in (
        ("latency.p50_us", 0.7, "p50 ≤ 0.7× best peer"),
        ("latency.p99_us", 1.0, "p99 ≤ best peer"),
    ):
        q = med(key, REFERENCE)
        b = best(key, False)
        if q and b:
            r = q / b[1]
            out.append(
                (
                    f"latency {label}",
                    f"{q:,.0f} µs",
                    f"{b[0]} {b[1]:,.0f}",
                    f"{'met' if r <= factor else 'missed'}: {r:.2f}×",
                )
            )
    for key, limit, label, unit, higher in (
        ("blocking.efficiency", 0.97, "blocking efficiency ≥ 0.97", "", True),
        ("loop_lag.p99_ms", 0.5, "loop lag p99 ≤ 0.5 ms", " ms", False),
        ("hol.excess_p99_ms", 10.0, "head-of-line excess p99 ≤ 10 ms", " ms", False),
    ):
        q = med(key, REFERENCE)
        if q is None:
            continue
        ok = q >= limit if higher else q <= limit
        b = best(key, higher)
        reference = f"best peer {b[0]} {b[1]:.3f}{unit}" if b else "–"
        floor = med(key, RAW)
        if floor is not None:
            reference += f"; bare asyncio master {floor:.3f}{unit}"
        out.append(
            (
                label,
                f"{q:.3f}{unit}",
                reference,
                "met" if ok else f"missed by {abs(q - limit):.3f}{unit}",
            )
        )
    c = summary["crash"].get(REFERENCE)
    if c and c["status"] == "ok":
        ok = (
            c["pool_survives"].split("/")[0] == c["pool_survives"].split("/")[1]
            and c["others_ok_median"] == c["others_total"]
            and c["crash_caller_sees"] == "ChildDied"
        )
        out.append(
            (
                "crash: survives, 99/99, ChildDied",
                f"{c['pool_survives']}, {c['others_ok_median']:g}/{c['others_total']}, "
                f"{c['crash_caller_sees']}",
                "–",
                "met" if ok else "missed",
            )
        )
    return out


def targets_table(rows: list[tuple[str, str, str, str]]) -> str:
    lines = ["| target (issue 3) | qoper8 | reference in this run | verdict |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


# ================================================================ output


def write_json(
    path: Path, meta: dict[str, Any], results: dict[str, Any], summary: dict[str, Any]
) -> None:
    slim: dict[str, Any] = {}
    for scenario, per in results.items():
        slim[scenario] = {}
        for name, entries in per.items():
            out = []
            for i, e in enumerate(entries):
                e = dict(e)
                samples = e.pop("samples_us", None)
                if samples is not None and i == len(entries) - 1:
                    e["last_samples_us"] = [round(s, 1) for s in samples]
                out.append(e)
            slim[scenario][name] = out
    path.write_text(
        json.dumps({"meta": meta, "summary": summary, "results": slim}, indent=1, default=str)
    )


def charts(
    results: dict[str, Any],
    summary: dict[str, Any],
    names: list[str],
    outdir: Path,
    suffix: str = "",
) -> list[Path]:
    """summary, latency_cdf and (when measured) scaling PNGs; ``suffix`` keeps modes apart."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, axes = plt.subplots(2, 2, figsize=(14, 10))
    panels = [
        (
            "throughput.jobs_per_s",
            axes[0][0],
            "1. no-op throughput, 2 children (jobs/s, higher is better)",
        ),
        (
            "latency.p50_us",
            axes[0][1],
            "2. sequential round trip p50 and p99 (µs, lower is better)",
        ),
        (
            "blocking.efficiency",
            axes[1][0],
            "3. blocking efficiency, 8 children × 5 ms (higher is better)",
        ),
        ("hol.excess_p99_ms", axes[1][1], "5. head-of-line excess p99 (ms, lower is better)"),
    ]
    for key, ax, title in panels:
        rows = summary[key]["rows"]
        labels = [n for n in names if n in rows and rows[n].get("median") is not None]
        if not labels:
            ax.set_visible(False)
            continue
        meds = [rows[n]["median"] for n in labels]
        lo = [rows[n]["median"] - rows[n]["min"] for n in labels]
        hi = [rows[n]["max"] - rows[n]["median"] for n in labels]
        colors = [
            "tab:red"
            if n.startswith("qoper8")
            else "tab:gray"
            if n.startswith("raw")
            else "tab:blue"
            for n in labels
        ]
        y = list(range(len(labels)))
        ax.barh(y, meds, xerr=[lo, hi], color=colors, capsize=3)
        if key == "latency.p50_us":
            p99 = summary["latency.p99_us"]["rows"]
            ax.scatter(
                [p99[n]["median"] for n in labels],
                y,
                marker="|",
                s=200,
                color="black",
                label="p99",
                zorder=3,
            )
            ax.set_xscale("log")
            ax.legend(loc="lower right")
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(
        "qoper8 (red) against its peers (blue) and the raw socketpair limit (grey), same run; "
        "bars = median, whiskers = min–max"
    )
    fig.tight_layout()
    p = outdir / f"summary{suffix}.png"
    fig.savefig(p, dpi=90)
    plt.close(fig)
    written.append(p)

    scaling = results.get("scaling", {})
    if scaling:
        fig, ax = plt.subplots(figsize=(10, 6))
        series: dict[str, dict[int, float]] = {}
        for key, entries in scaling.items():
            name, _, c = key.rpartition("@")
            row = stat(entries, "jobs_per_s")
            if row.get("median") is not None:
                series.setdefault(name, {})[int(c)] = row["median"]
        for name, points in series.items():
            xs = sorted(points)
            style = "-" if name.startswith("qoper8") else ":" if name.startswith("raw") else "--"
            ax.plot(xs, [points[x] for x in xs], style, marker="o", label=name)
        ax.set_xticks(sorted({c for pts in series.values() for c in pts}))
        ax.set_xlabel("children")
        ax.set_ylabel("no-op jobs/s (median)")
        ax.set_title("no-op throughput against the number of children")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        p = outdir / f"scaling{suffix}.png"
        fig.savefig(p, dpi=90)
        plt.close(fig)
        written.append(p)

    lat = results.get("latency", {})
    if not lat:
        return written
    fig, ax = plt.subplots(figsize=(10, 6))
    for name in names:
        entries = [e for e in lat.get(name, []) if e.get("samples_us")]
        if not entries:
            continue
        s = sorted(x for e in entries for x in e["samples_us"])
        ys = [(i + 1) / len(s) for i in range(len(s))]
        style = "-" if name.startswith("qoper8") else ":" if name.startswith("raw") else "--"
        ax.plot(s, ys, style, label=name, linewidth=2 if name == REFERENCE else 1)
    ax.set_xscale("log")
    ax.set_xlabel("round trip (µs, log)")
    ax.set_ylabel("fraction of calls")
    ax.set_title("2. sequential round-trip latency distribution, all repetitions")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    p = outdir / f"latency_cdf{suffix}.png"
    fig.savefig(p, dpi=90)
    plt.close(fig)
    written.append(p)
    return written
