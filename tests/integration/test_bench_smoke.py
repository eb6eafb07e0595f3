"""The benchmarks run, on a tiny size, against the real Conductor server and write well-formed results.

Not a timed test: no figure is held to a goal here (bench/README.md reports those). It checks that
`scripts/bench.sh all` runs every contender (this runtime, the Conductor Python SDK in its own venv,
the compiled no-SDK loop `ceiling-go`), that each completed every workflow with a positive throughput, and that the JSON,
markdown and PNG files are written. The first run creates the benchmark venvs (cached afterwards).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SIZE = 50


@pytest.mark.conductor
def test_bench_all_tiny(conductor_url: str, tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [
            "bash",
            str(REPO / "scripts" / "bench.sh"),
            "all",
            "--size",
            str(SIZE),
            "--rounds",
            "1",
            "--latency-n",
            "5",
            "--memory-types",
            "2",
            "--idle-seconds",
            "2",
            "--warmup",
            "50",
            "--timeout",
            "180",
            "--server-url",
            conductor_url,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"bench.sh failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"

    workers = json.loads((out / "workers.json").read_text())
    assert workers["machine"]["nproc"] >= 1 and workers["machine"]["conductor_server"]
    contenders = workers["config"]["contenders"]
    assert workers["config"]["warmup"] == 50  # ran first, and left out of the runs below
    assert set(contenders) >= {"runtime", "sdk", "ceiling-go"}
    seen = {(r["contender"], r["kind"]) for r in workers["runs"]}
    assert seen == {(c, k) for c in contenders for k in ("noop", "sleep10")}
    for run in workers["runs"]:
        where = f"{run['contender']}/{run['kind']}"
        assert run["n"] == SIZE and run["completed"] == SIZE and run["stalled"] == 0, where
        assert run["tasks_per_s"] > 0, where
        assert run["cpu_s_per_1000"] >= 0 and run["peak_rss_mib"] > 0 and run["processes"] >= 1, where
        assert run["pickup_samples"] == 5 and run["pickup_ms_p50"] is not None, where
        assert run["pickup_ms_p50"] <= run["pickup_ms_p99"], where
        times = [t for t, _ in run["progress"]]
        assert times == sorted(times) and run["progress"][-1][1] == SIZE, where
    for kind in ("noop", "sleep10"):
        ratios = workers["summary"][kind]["ratios"]
        assert ratios["runtime/sdk tasks_per_s"]["median"] > 0
        assert ratios["runtime/ceiling-go tasks_per_s"]["median"] > 0

    memory = json.loads((out / "memory.json").read_text())
    by_contender = {r["contender"]: r for r in memory["runs"]}
    assert {"runtime", "sdk"} <= set(by_contender)
    for name, run in by_contender.items():
        assert run["rss_mib"] > 0 and run["pss_mib"] > 0 and run["types"] == 2, name
    assert by_contender["runtime"]["processes"] == 1
    assert by_contender["sdk"]["processes"] > 2  # a process per worker, plus the logger
    assert memory["summary"]["ratios"]["runtime/sdk rss_mib"]["median"] > 0

    for name in ("workers.md", "memory.md"):
        assert (out / name).read_text().startswith("### ")
    for name in ("workers_throughput.png", "memory_rss.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
