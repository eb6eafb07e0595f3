"""The KEDA contender's manifests are what a Conductor user would write: a Deployment at zero and a
ScaledObject whose metrics-api trigger reads that task type's queue size from Conductor."""

from __future__ import annotations

import json

import pytest

from bench import keda_contender
from bench.keda_contender import KedaContender, defaults, gjson_key, queue_size_url, tuned

BASE = {
    "name": "sleep-workers",
    "namespace": "bench",
    "image": "localhost/cwo-sleep-workers:0.1.0",
    "task_type": "bench_sleep",
    "conductor_url": "http://10.89.0.1:18080/api",
    "max_replicas": 8,
}


def test_deployment_starts_at_zero_and_points_the_worker_at_conductor() -> None:
    dep = defaults(**BASE, args=["run", "--module", "sleep_workers"], env={"CONDUCTOR_WORKER_TASKS": "bench_sleep"})
    d = dep.deployment()
    assert (d["apiVersion"], d["kind"]) == ("apps/v1", "Deployment")
    assert d["metadata"] == {
        "name": "sleep-workers",
        "namespace": "bench",
        "labels": {"app.kubernetes.io/name": "sleep-workers"},
    }
    assert d["spec"]["replicas"] == 0
    assert d["spec"]["selector"]["matchLabels"] == d["spec"]["template"]["metadata"]["labels"]
    (container,) = d["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "localhost/cwo-sleep-workers:0.1.0"
    assert container["args"] == ["run", "--module", "sleep_workers"]
    assert "command" not in container
    assert container["env"] == [
        {"name": "CONDUCTOR_SERVER_URL", "value": "http://10.89.0.1:18080/api"},
        {"name": "CONDUCTOR_WORKER_TASKS", "value": "bench_sleep"},
    ]


def test_user_env_overrides_the_server_url_instead_of_duplicating_it() -> None:
    env = defaults(**BASE, env={"CONDUCTOR_SERVER_URL": "http://other/api"}).deployment()
    (container,) = env["spec"]["template"]["spec"]["containers"]
    assert container["env"] == [{"name": "CONDUCTOR_SERVER_URL", "value": "http://other/api"}]


def test_defaults_scaled_object_leaves_keda_intervals_unset() -> None:
    so = defaults(**BASE).scaled_object()
    assert (so["apiVersion"], so["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    assert so["metadata"] == {"name": "sleep-workers", "namespace": "bench"}
    spec = so["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "sleep-workers"}
    assert spec["minReplicaCount"] == 0
    assert spec["maxReplicaCount"] == 8
    for unset in ("pollingInterval", "cooldownPeriod", "advanced", "idleReplicaCount", "fallback"):
        assert unset not in spec
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "metrics-api"
    assert trigger["metricType"] == "AverageValue"
    assert trigger["metadata"] == {
        "url": "http://10.89.0.1:18080/api/tasks/queue/sizes?taskType=bench_sleep",
        "format": "json",
        "valueLocation": "bench_sleep",
        "targetValue": "10",
    }


def test_tuned_polls_every_five_seconds_and_keeps_the_rest() -> None:
    fast, slow = tuned(**BASE).scaled_object()["spec"], defaults(**BASE).scaled_object()["spec"]
    assert fast["pollingInterval"] == keda_contender.TUNED_POLLING_INTERVAL == 5
    assert {k: v for k, v in fast.items() if k != "pollingInterval"} == slow
    assert tuned(**BASE, polling_interval=2).scaled_object()["spec"]["pollingInterval"] == 2


def test_cooldown_and_target_are_passed_through() -> None:
    spec = defaults(**BASE, cooldown_period=5, target_queue_per_replica=4).scaled_object()["spec"]
    assert spec["cooldownPeriod"] == 5
    assert spec["triggers"][0]["metadata"]["targetValue"] == "4"


def test_keda_may_reach_conductor_at_another_address_than_the_pods() -> None:
    dep = defaults(**BASE, keda_conductor_url="http://127.0.0.1:18080/api/")
    assert dep.scaled_object()["spec"]["triggers"][0]["metadata"]["url"] == (
        "http://127.0.0.1:18080/api/tasks/queue/sizes?taskType=bench_sleep"
    )
    (container,) = dep.deployment()["spec"]["template"]["spec"]["containers"]
    assert container["env"][0]["value"] == "http://10.89.0.1:18080/api"


def test_manifests_are_json_in_apply_order() -> None:
    docs = KedaContender(**BASE).manifests()
    assert [d["kind"] for d in docs] == ["Deployment", "ScaledObject"]
    assert json.loads(json.dumps(docs)) == docs


@pytest.mark.parametrize(
    ("task", "key", "query"),
    [
        ("simple_task-1", "simple_task-1", "simple_task-1"),
        ("orders.price", "orders\\.price", "orders.price"),
        ("a*b?c|d#e@f", "a\\*b\\?c\\|d\\#e\\@f", "a%2Ab%3Fc%7Cd%23e%40f"),
        ("x&y=z", "x\\&y\\=z", "x%26y%3Dz"),
    ],
)
def test_task_names_with_path_or_query_syntax_are_escaped(task: str, key: str, query: str) -> None:
    assert gjson_key(task) == key
    assert queue_size_url("http://c/api", task) == f"http://c/api/tasks/queue/sizes?taskType={query}"
    meta = defaults(**{**BASE, "task_type": task}).scaled_object()["spec"]["triggers"][0]["metadata"]
    assert meta["valueLocation"] == key
