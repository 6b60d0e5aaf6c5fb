"""``python -m bench.actors`` (issue 12 item 8) at a tiny size, qoper8 alone, as it runs
where Ray is not installed: it must keep running, and say that Ray is missing."""

from __future__ import annotations

import gc
import json
import sys
from typing import TYPE_CHECKING

import pytest

from bench import actors

if TYPE_CHECKING:
    from pathlib import Path

TINY = [
    "--reps=1",
    "--calls=20",
    "--pipelined=20",
    "--callers=3",
    "--per-caller=4",
    "--creates=1",
    "--cold-creates=1",
    "--pause=0",
    "--busy-ms=300",
]


@pytest.mark.slow
def test_bench_actors_measures_qoper8_alone_when_ray_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    try:
        assert actors.main([*TINY, f"--out={tmp_path}"]) == 0
    finally:
        gc.unfreeze()  # the bench froze its heap before each measure
    out = capsys.readouterr().out
    assert "Ray is not installed: measuring qoper8 alone" in out
    data = json.loads((tmp_path / "actors.json").read_text())
    assert data["meta"]["ray"] is None
    assert data["results"]["ray"] == data["results"]["ray_async"] == []
    (rep,) = data["results"]["qoper8"]
    for key in (
        "p50_us",
        "p99_us",
        "submit_p50_us",
        "sequential_per_s",
        "pipelined_per_s",
        "many_per_s",
        "create_ms",
        "cold_create_ms",
    ):
        assert rep[key] > 0, key
    assert rep["p99_us"] >= rep["p50_us"]
    table = (tmp_path / "actors.md").read_text()
    assert "| round trip p50, µs (sequential, one caller) |" in table
    assert "| actor call p50 / submit p50 |" in table
    assert "Ray not installed" in table
