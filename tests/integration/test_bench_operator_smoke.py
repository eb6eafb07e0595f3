"""The operator benchmarks (bench/autoscaler_response.py, bench/operator_scale.py) run, on a tiny size,
against the real local stack and write well-formed, positive results.

Not a timed test: no figure is held to a goal here (bench/RESULTS-operator.md reports those).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kube, pytest.mark.conductor]

REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


def run_bench(script: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(REPO / "bench"),
    )
    assert proc.returncode == 0, f"{script} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def test_operator_scale_tiny(kubeconfig, conductor_url, tmp_path: Path) -> None:
    out = tmp_path / "results"
    run_bench(
        "operator_scale.py",
        *("--sizes", "3,6", "--settle", "2", "--timeout", "120", "--endpoints", "20", "--scrape-rounds", "2"),
        *("--out", str(out)),
        timeout=600,
    )
    data = json.loads((out / "operator_scale.json").read_text())
    assert data["machine"]["nproc"] >= 1 and len(data["machine"]["loadavg_start"]) == 3
    assert [r["n"] for r in data["reconcile"]] == [3, 6]
    for r in data["reconcile"]:
        assert r["all_reconciled"] and r["reconciled"] == r["n"], r
        assert 0 < r["created_s"] <= r["reconcile_s"], r
        assert 0 < r["rss_idle_mib"] <= r["rss_peak_mib"] and r["threads_peak"] > 1, r
        assert r["progress"][-1][1] == r["n"] and r["rss_series"], r
        assert r["delete_s"] is not None and r["left_after_delete_timeout"] == 0, r
    (scrape,) = data["scrape"]
    assert scrape["endpoints"] == 20 and len(scrape["seconds"]) == 2 and min(scrape["seconds"]) > 0
    assert scrape["errors"] == [0, 0] and scrape["busy_slots"] == [scrape["expected_busy_slots"]] * 2
    assert scrape["metrics_bytes"] > 1000 and scrape["parse_ms_per_endpoint"] > 0
    assert (out / "operator_scale.md").read_text().startswith("### Operator scale")
    for name in ("operator_scale_reconcile.png", "operator_scale_scrape.png"):
        assert (out / name).read_bytes()[:8] == PNG


def test_autoscaler_response_tiny(kubeconfig, conductor_url, node, tmp_path: Path) -> None:
    out = tmp_path / "results"
    run_bench(
        "autoscaler_response.py",
        *("--intervals", "2", "--trials", "1", "--backlog", "40", "--minutes", "0.5", "--warmup", "10"),
        *("--out", str(out)),
        timeout=900,
    )
    data = json.loads((out / "autoscaler_response.json").read_text())
    assert set(data["trials"]) == {"activation-p2", "scale-up-p2"}
    for key, trial in data["trials"].items():
        assert len(trial["seconds"]) == 1 and 0 < trial["seconds"][0] < 120, key
        assert trial["summary"]["n"] == 1, key
    assert data["trials"]["activation-p2"]["workflow_done_s"][0] > 0
    (steady,) = data["steady"]
    assert steady["interval_s"] == 2 and steady["workflows_started"] > 0
    assert steady["replicas_series"] and all(r is not None and r >= 1 for _, r in steady["replicas_series"])
    assert steady["changes_per_10min"] >= 0 and steady["status_series"]
    assert data["reference_documented_defaults_s"]["KEDA pollingInterval (default)"] == 30
    assert (out / "autoscaler_response.md").read_text().startswith("### Autoscaler response")
    for name in ("autoscaler_response_steady.png", "autoscaler_response_response.png"):
        assert (out / name).read_bytes()[:8] == PNG
