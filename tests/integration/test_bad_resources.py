"""Bad ConductorWorker resources are refused by the real API server with a message that names the field.

(Together with the table in test_operator_reconcile.py: 30 invalid resources. Schema-valid but
unusable specs, a missing Secret or a Secret without the keys, are reported in a Degraded condition
and an Event: see test_degraded_for_missing_secret_then_recovers.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.kube

CRD = Path(__file__).resolve().parents[2] / "crds" / "conductorworker.yaml"
TASK = [{"name": "resize"}]


@pytest.fixture(scope="module")
def crd(kubectl):
    kubectl("apply", "-f", str(CRD))
    kubectl("wait", "--for=condition=Established", "crd/conductorworkers.conductor.io", "--timeout=30s")


def manifest(name: str, spec: dict) -> str:
    base = {"conductor": {"serverUrl": "http://127.0.0.1:18080/api"}, "image": "example.invalid/w:1", "tasks": TASK}
    return yaml.safe_dump(
        {"apiVersion": "conductor.io/v1alpha1", "kind": "ConductorWorker", "metadata": {"name": name},
         "spec": {**base, **spec}}
    )  # fmt: skip


CASES = [
    ("wrong-type-replicas", {"replicas": "three"}, "three is of the type string, expected int64"),
    ("wrong-type-tasks", {"tasks": "resize"}, "spec.tasks in body must be of type array"),
    ("absurd-max", {"autoscaling": {"enabled": True, "maxReplicas": 100000}}, "should be less than or equal to 10000"),
    ("negative-min", {"autoscaling": {"minReplicas": -1}}, "spec.autoscaling.minReplicas in body should be greater"),
    ("negative-poll", {"tasks": [{"name": "a", "pollIntervalMs": -5}]}, "spec.tasks[0].pollIntervalMs in body"),
    ("long-poll", {"tasks": [{"name": "a", "pollTimeoutMs": 60000}]}, "should be less than or equal to 5000"),
    ("absurd-slots", {"tasks": [{"name": "a", "concurrency": 100000}]}, "should be less than or equal to 1000"),
    ("zero-batch", {"tasks": [{"name": "a", "batchSize": 0}]}, "spec.tasks[0].batchSize in body should be greater"),
    ("port-range", {"metrics": {"port": 70000}}, "spec.metrics.port in body should be less than or equal to 65535"),
    ("negative-grace", {"terminationGracePeriodSeconds": -1}, "spec.terminationGracePeriodSeconds in body should"),
    ("zero-target", {"autoscaling": {"targetQueueDepthPerReplica": 0}}, "targetQueueDepthPerReplica in body should"),
    ("negative-cooldown", {"autoscaling": {"cooldownSeconds": -1}}, "spec.autoscaling.cooldownSeconds in body"),
    ("utilization-range", {"autoscaling": {"targetUtilization": 500}}, "should be less than or equal to 100"),
    (
        "policy-type",
        {"autoscaling": {"scaleUp": {"policies": [{"type": "Nodes", "value": 1, "periodSeconds": 15}]}}},
        'supported values: "Pods", "Percent"',
    ),
    ("unknown-field", {"replicaz": 3}, 'unknown field "spec.replicaz"'),
    ("task-without-name", {"tasks": [{"concurrency": 2}]}, "spec.tasks[0].name: Required value"),
    ("no-server-url", {"conductor": {}}, "spec.conductor.serverUrl: Required value"),
    (
        "secret-ref-without-name",
        {"conductor": {"serverUrl": "http://127.0.0.1:18080/api", "authSecretRef": {}}},
        "spec.conductor.authSecretRef.name: Required value",
    ),
]


@pytest.mark.parametrize(("name", "spec", "message"), CASES, ids=[c[0] for c in CASES])
def test_invalid_resource_is_refused_with_a_message_naming_the_field(crd, kubectl, namespace, name, spec, message):
    result = kubectl("apply", "-n", namespace, "-f", "-", input=manifest(name, spec), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert kubectl("get", "cw", "-n", namespace, "-o", "name").stdout == ""


def test_invalid_object_name_is_refused(crd, kubectl, namespace):
    result = kubectl("apply", "-n", namespace, "-f", "-", input=manifest("Bad_Name", {}), check=False)
    assert result.returncode != 0
    assert "a lowercase RFC 1123 subdomain" in result.stderr, result.stderr
