"""Bad ConductorWorker resources are refused by the real API server with a message that names the field.

(Together with the table in test_operator_reconcile.py: 46 invalid resources, among them names that
cannot name a Service or be a label value, and `kubectl scale` while the autoscaler owns the count.
Schema-valid but unusable specs, a missing Secret or a Secret without the keys, are reported in a
Degraded condition and an Event: see test_degraded_for_missing_secret_then_recovers; so is a child the
API server refuses, here.)
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from helpers import wait_for

pytestmark = pytest.mark.kube

TASK = [{"name": "resize"}]


def manifest(name: str, spec: dict) -> str:
    """A ConductorWorker of the python runtime with `spec` merged in (a None value removes a field)."""
    base = {"conductor": {"serverUrl": "http://127.0.0.1:18080/api"}, "image": "example.invalid/w:1", "tasks": TASK}
    merged = {k: v for k, v in {**base, **spec}.items() if v is not None}
    return yaml.safe_dump(
        {"apiVersion": "conductor.io/v1alpha1", "kind": "ConductorWorker", "metadata": {"name": name},
         "spec": merged}
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
    ("no-server-url", {"conductor": {}}, "set exactly one of serverUrl (a server without auth) and connectionRef"),
    (
        "url-and-connection",
        {"conductor": {"serverUrl": "http://127.0.0.1:18080/api", "connectionRef": {"name": "prod"}}},
        "set exactly one of serverUrl (a server without auth) and connectionRef",
    ),
    ("connection-without-name", {"conductor": {"connectionRef": {}}}, "spec.conductor.connectionRef.name: Required"),
    (
        "zero-failure-threshold",
        {"autoscaling": {"fallbackReplicas": 1, "fallback": {"failureThreshold": 0}}},
        "spec.autoscaling.fallback.failureThreshold in body should be greater than or equal to 1",
    ),
    (  # the confused deputy: a URL of the creator's choosing with a Secret of the namespace
        "inline-secret",
        {"conductor": {"serverUrl": "http://127.0.0.1:18080/api", "authSecretRef": {"name": "orkes"}}},
        "authSecretRef is set on a ConductorConnection (spec.conductor.connectionRef)",
    ),
    # workers of other SDKs (spec.sdk, spec.container); `image: None` drops the python runtime's image
    ("sdk-unknown", {"sdk": "rust"}, 'supported values: "python", "go", "java", "javascript"'),
    ("container-for-python", {"container": {"image": "x/w:1"}}, "spec.container is for workers written with"),
    ("go-without-container", {"sdk": "go", "image": None}, "spec.container (at least its image) is required"),
    ("go-with-runtime-image", {"sdk": "go", "container": {"image": "x/w:1"}}, "spec.image and spec.modules belong"),
    (
        "go-with-modules",
        {"sdk": "go", "image": None, "container": {"image": "x/w:1"}, "modules": ["m"]},
        "spec.image and spec.modules belong to the python runtime",
    ),
    (
        "go-with-batch-size",
        {"sdk": "go", "image": None, "container": {"image": "x/w:1"}, "tasks": [{"name": "a", "batchSize": 2}]},
        "tasks[].pollTimeoutMs, batchSize and paused are settings of the python runtime",
    ),
    ("container-without-image", {"sdk": "java", "image": None, "container": {}}, "spec.container.image: Required"),
    (
        "resources-twice",
        {
            "sdk": "java",
            "image": None,
            "container": {"image": "x/w:1", "resources": {"limits": {"memory": "1Gi"}}},
            "template": {"resources": {"limits": {"memory": "1Gi"}}},
        },
        "spec.container.resources or spec.template.resources, not both",
    ),
    (
        "port-name",
        {
            "sdk": "go",
            "image": None,
            "container": {"image": "x/w:1", "ports": [{"name": "Prom_Port", "containerPort": 9}]},
        },
        "spec.container.ports[0].name in body should match",
    ),
    (
        "service-monitor-without-metrics",
        {"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}},
        "metrics.serviceMonitor.enabled needs metrics.enabled",
    ),
    ("metrics-path", {"metrics": {"path": "metrics"}}, "spec.metrics.path in body should match"),
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


NAME_CASES = [
    ("dotted.name", "metadata.name must be a DNS-1035 label"),  # a valid object name, not a Service name
    ("w" * 64, "metadata.name must be at most 63 characters"),  # too long for a label value
    ("1st-worker", "metadata.name must be a DNS-1035 label"),  # a Service name starts with a letter
]


@pytest.mark.parametrize(("name", "message"), NAME_CASES, ids=["dot", "64-characters", "leading-digit"])
def test_name_that_cannot_name_a_service_or_a_label_is_refused(crd, kubectl, namespace, name, message):
    result = kubectl("apply", "-n", namespace, "-f", "-", input=manifest(name, {}), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert kubectl("get", "cw", "-n", namespace, "-o", "name").stdout == ""
    ok = kubectl("apply", "-n", namespace, "-f", "-", input=manifest("w" * 63, {}), check=False)
    assert ok.returncode == 0, ok.stderr


def test_kubectl_scale_is_refused_while_autoscaling_is_enabled(crd, kubectl, namespace):
    kubectl("apply", "-n", namespace, "-f", "-", input=manifest("scaled", {"autoscaling": {"enabled": True}}))
    refused = kubectl("scale", "cw/scaled", "-n", namespace, "--replicas=3", check=False)
    assert refused.returncode != 0
    assert "spec.replicas cannot change while autoscaling.enabled is true" in refused.stderr, refused.stderr
    patch = json.dumps({"spec": {"replicas": 4}})
    assert kubectl("patch", "cw", "scaled", "-n", namespace, "--type=merge", "-p", patch, check=False).returncode != 0
    # turning autoscaling off hands the count back: the same command is honoured
    kubectl(
        "patch", "cw", "scaled", "-n", namespace, "--type=merge", "-p", '{"spec":{"autoscaling":{"enabled":false}}}'
    )
    kubectl("scale", "cw/scaled", "-n", namespace, "--replicas=3")
    obj = json.loads(kubectl("get", "cw", "scaled", "-n", namespace, "-o", "json").stdout)
    assert obj["spec"]["replicas"] == 3
    # other spec changes still pass while autoscaling is on
    kubectl("patch", "cw", "scaled", "-n", namespace, "--type=merge", "-p", '{"spec":{"autoscaling":{"enabled":true}}}')
    kubectl(
        "patch", "cw", "scaled", "-n", namespace, "--type=merge", "-p", '{"spec":{"autoscaling":{"maxReplicas":4}}}'
    )
    explained = kubectl("explain", "conductorworkers.spec.replicas").stdout
    assert "is refused" in " ".join(explained.split()), explained


def test_fallback_failure_threshold_defaults_to_three(crd, kubectl, namespace):
    spec = {"autoscaling": {"enabled": True, "fallbackReplicas": 2, "fallback": {}}}
    kubectl("apply", "-n", namespace, "-f", "-", input=manifest("fallback", spec))
    obj = json.loads(kubectl("get", "cw", "fallback", "-n", namespace, "-o", "json").stdout)
    assert obj["spec"]["autoscaling"]["fallback"] == {"failureThreshold": 3}


def test_workers_of_every_sdk_are_accepted_and_python_stays_the_default(crd, kubectl, namespace):
    kubectl("apply", "-n", namespace, "-f", "-", input=manifest("runtime", {}))
    obj = json.loads(kubectl("get", "cw", "runtime", "-n", namespace, "-o", "json").stdout)
    assert obj["spec"]["sdk"] == "python" and obj["spec"]["metrics"] == {"enabled": True}
    for sdk in ("go", "java", "javascript"):
        container = {"image": f"example.invalid/{sdk}:1", "command": ["/w"], "ports": [{"containerPort": 2112}]}
        spec = {"sdk": sdk, "image": None, "container": container, "metrics": {"path": "/prom"}}
        kubectl("apply", "-n", namespace, "-f", "-", input=manifest(f"w-{sdk}", spec))
        obj = json.loads(kubectl("get", "cw", f"w-{sdk}", "-n", namespace, "-o", "json").stdout)
        assert obj["spec"]["container"]["ports"] == [{"containerPort": 2112, "protocol": "TCP"}]
    out = kubectl("explain", "cw.spec.container").stdout
    for field in ("image", "command", "args", "env", "envFrom", "ports", "resources", "livenessProbe"):
        assert re.search(rf"^\s+{field}\s+<", out, re.M), (field, out)
    assert "no probe unless given here" in " ".join(out.split())
    assert "python 8000, go 2112, java 9991, javascript 9090" in " ".join(
        kubectl("explain", "cw.spec.metrics.port").stdout.split()
    )


# -- with the operator: children the API server refuses, the PodDisruptionBudget -------------------------


def condition(kubectl, namespace, name, type_):
    obj = json.loads(kubectl("get", "cw", name, "-n", namespace, "-o", "json").stdout)
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


def test_a_child_the_api_server_refuses_shows_as_degraded_with_its_reason(operator, kubectl, namespace):
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-services"},
        "spec": {"hard": {"services": "0"}},
    }
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(quota))
    wait_for(
        lambda: (
            json.loads(kubectl("get", "resourcequota", "no-services", "-n", namespace, "-o", "json").stdout)
            .get("status", {})
            .get("hard")
        ),
        30,
        "the quota controller to count the namespace",
    )
    kubectl("apply", "-n", namespace, "-f", "-", input=manifest("quota", {"replicas": 0}))

    def degraded():
        c = condition(kubectl, namespace, "quota", "Degraded")
        return c and c["status"] == "True" and c

    c = wait_for(degraded, 30, "Degraded")
    assert c["reason"] == "ServiceApplyFailed", c
    assert "Forbidden" in c["message"] and "exceeded quota" in c["message"], c
    events = kubectl("get", "events", "-n", namespace, "--field-selector", "type=Warning").stdout
    assert "ServiceApplyFailed" in events
    assert kubectl("get", "deployment", "quota", "-n", namespace, check=False).returncode == 0  # the rest applied
    kubectl("delete", "resourcequota", "no-services", "-n", namespace)
    wait_for(lambda: condition(kubectl, namespace, "quota", "Degraded")["status"] == "False", 30, "Degraded cleared")
    assert kubectl("get", "service", "quota", "-n", namespace, check=False).returncode == 0


def test_disabling_the_pod_disruption_budget_deletes_it(operator, kubectl, namespace):
    kubectl("apply", "-n", namespace, "-f", "-", input=manifest("budget", {"replicas": 2}))

    def pdb():
        got = kubectl("get", "pdb", "budget", "-n", namespace, "-o", "json", check=False)
        return json.loads(got.stdout) if got.returncode == 0 else None

    made = wait_for(pdb, 30, "the PodDisruptionBudget")
    assert made["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    patch = json.dumps({"spec": {"podDisruptionBudget": {"enabled": False}}})
    kubectl("patch", "cw", "budget", "-n", namespace, "--type=merge", "-p", patch)
    wait_for(lambda: pdb() is None, 30, "the PodDisruptionBudget deleted")
