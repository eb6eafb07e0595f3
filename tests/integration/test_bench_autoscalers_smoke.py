"""bench/autoscalers.py runs end to end on the real stack, tiny: the operator contender alone on one short
trace, and writes sane figures. Not a timed test: no figure is held to a goal here."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kube, pytest.mark.conductor]

REPO = Path(__file__).resolve().parents[2]


def test_autoscalers_operator_on_a_short_step_trace(kubeconfig, conductor_url, node, tmp_path: Path) -> None:
    out = tmp_path / "results"
    args = ["--traces", "step", "--time-scale", "0.025", "--size", "0.5", "--contenders", "operator"]
    args += ["--drain-timeout", "40", "--setup-timeout", "30", "--foreign-wait", "20", "--no-plots"]
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "autoscalers.py"), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=str(REPO / "bench"),
    )
    took = time.monotonic() - started
    assert proc.returncode == 0, (
        f"autoscalers.py failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    data = json.loads((out / "autoscalers_step.json").read_text())
    assert data["config"]["trace"] == "step" and data["trace"]["length_s"] == pytest.approx(30.0)
    tasks = data["trace"]["tasks"]
    assert 30 <= tasks <= 110  # 1/s, 4/s, 1/s over 10 s each
    (name,) = data["contenders"]
    r = data["contenders"][name]
    assert name == "operator"
    assert r["workflows"] == r["completed"] == tasks and r["start_errors"] == 0, r
    assert r["replica_seconds"] > 0 and 1 <= r["peak_replicas"] <= data["config"]["max_replicas"]
    assert 0 <= r["wait_p50_s"] <= r["wait_p99_s"] < data["end_s"]
    assert r["first_pod_s"] is not None and 0 < r["first_pod_s"] < 60  # the fleet starts at zero
    for key in ("theta_u", "tau_u", "tau_o"):
        assert 0 <= r[key] <= 100, (key, r[key])
    # τU may be 0: the operator's activation watch can scale from zero between two 1-s samples
    assert r["theta_o"] >= 0
    assert data["end_s"] >= data["trace"]["length_s"]
    assert len(r["samples"]) >= data["end_s"] * 0.8 and len(r["demand"]) == len(r["samples"])
    assert max(r["demand"]) >= 1 and r["samples"][0]["replicas"] == 0
    assert (out / "autoscalers_step.md").read_text().startswith("### Autoscalers on the `step` trace")
    print(f"autoscalers smoke run: {took:.0f} s")  # about 75 s on the 2-core machine; reported, not held
