"""bench/autoscaler_contenders.py and autoscaler_report.py: every contender runs the same worker container,
and the table reads the figures it is given."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import autoscaler_contenders as contenders
import autoscaler_report as report

from conductor_operator import builders
from conductor_operator.config import Config

W = contenders.Workload(
    namespace="bench-as-x",
    name="workers",
    task="bench_t1",
    workflow="bench_t1_wf",
    image="localhost/sleep:1",
    module="sleep_workers",
    slots=4,
    max_replicas=6,
    server_url="http://10.89.0.1:18080/api",
    env={"CWO_SLEEP_TASKS": "bench_t1"},
)


def test_operator_contender_is_the_defaults_with_min_zero_and_the_shared_bounds() -> None:
    cr = contenders.custom_resource(W)
    assert cr["spec"]["autoscaling"] == {"enabled": True, "minReplicas": 0, "maxReplicas": 6}
    assert cr["spec"]["tasks"] == [{"name": "bench_t1", "concurrency": 4}]


def test_keda_pods_run_the_operators_worker_container() -> None:
    spec = contenders.custom_resource(W)["spec"]
    owner = builders.Owner(name=W.name, namespace=W.namespace, uid="u")
    theirs = builders.deployment(owner, spec, 0, Config())["spec"]["template"]["spec"]
    for variant in ("default", "tuned"):
        fleet = contenders.KedaFleet(variant, W, SimpleNamespace(conductor_url="http://127.0.0.1:18080/api"), None)
        dep, scaled = fleet.manifests()
        mine = dep["spec"]["template"]["spec"]
        a, b = mine["containers"][0], theirs["containers"][0]
        assert (a["image"], a["command"], a["args"]) == (b["image"], b["command"], b["args"])
        plain = {e["name"]: e["value"] for e in b["env"] if "value" in e}
        assert {e["name"]: e["value"] for e in a["env"]} == plain
        assert mine["terminationGracePeriodSeconds"] == theirs["terminationGracePeriodSeconds"]
        assert dep["spec"]["replicas"] == 0 and scaled["spec"]["maxReplicaCount"] == 6
        assert scaled["spec"]["minReplicaCount"] == 0
        assert ("pollingInterval" in scaled["spec"]) == (variant == "tuned")


def test_report_ratio_against_keda_default() -> None:
    row = {
        "replica_seconds": 300.0,
        "wait_p50_s": 0.1,
        "wait_p99_s": 2.0,
        "theta_u": 1.0,
        "theta_o": 2.0,
        "tau_u": 3.0,
        "tau_o": 4.0,
        "jitter_per_h": -5.0,
        "rerun": 0,
        "timed_out": 0,
        "first_pod_s": 1.5,
        "completed": 10,
        "workflows": 10,
        "peak_replicas": 2,
    }
    data = {
        "config": {"trace": "step", "seed": 1, "time_scale": 0.1, "size": 1.0, "slots_per_pod": 4, "max_replicas": 6},
        "trace": {"tasks": 10, "length_s": 120.0},
        "end_s": 121.0,
        "contenders": {"operator": row, "keda-default": {**row, "replica_seconds": 400.0}},
        "replay": {"start_errors": {"operator": 2}},
    }
    md = report.markdown(data)
    lines = [line for line in md.splitlines() if line.startswith("| operator")]
    assert lines and "| 300 | 0.75 | 0.10 / 2.00 |" in lines[0]
    assert "failed starts 2" in md
