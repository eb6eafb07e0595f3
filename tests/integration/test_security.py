"""Secrets stay secret and pods run locked down, with the operator installed by the chart.

A ConductorWorker names an Orkes-style Secret; the operator (running under the chart's RBAC, as a
Pod with its own ServiceAccount token) and a real worker pod run; then the secret's values are
searched for everywhere they must not be: logs of the operator and the workers, Events, the
ConductorWorker (status included), ConfigMaps, the Deployment, and both /metrics endpoints.
(What the chart's RBAC refuses, e.g. Secrets of other namespaces or deleting namespaces, is
proved in test_chart.py with `kubectl auth can-i`.)
"""

from __future__ import annotations

import json
import uuid

import pytest
import requests
import yaml
from kubernetes import client

from helpers import wait_for
from teststack import demo
from teststack.config import StackConfig

pytestmark = [pytest.mark.kube, pytest.mark.conductor]


def _kubectl(stack: StackConfig, *args: str, input: str | None = None) -> str:
    return demo.run([str(stack.kubectl), *args], stack, input=input).stdout


def _container_log(stack: StackConfig, pod: client.V1Pod) -> str:
    return (stack.run_dir / "pods" / f"{pod.metadata.namespace}_{pod.metadata.name}" / "container.log").read_text()


def test_secret_values_appear_nowhere_and_pods_run_locked_down(stack: StackConfig, k8s_api, conductor_url, node_agent):
    core, apps = client.CoreV1Api(k8s_api), client.AppsV1Api(k8s_api)
    key_id, key_secret = f"key-{uuid.uuid4().hex}", f"s3cr3t-{uuid.uuid4().hex}"
    ns = f"sec-{uuid.uuid4().hex[:6]}"
    demo.helm_install(stack)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        core.create_namespaced_secret(
            ns,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name="orkes-creds"), string_data={"keyId": key_id, "keySecret": key_secret}
            ),
        )
        cw = {
            "apiVersion": "conductor.io/v1alpha1",
            "kind": "ConductorWorker",
            "metadata": {"name": "secure"},
            "spec": {
                "conductor": {"serverUrl": conductor_url, "authSecretRef": {"name": "orkes-creds"}},
                "image": "conductor-worker-runtime:0.1.0",
                "modules": ["demo_workers"],
                "tasks": [{"name": "cwo_demo_price"}],
                "replicas": 1,
            },
        }
        _kubectl(stack, "apply", "-n", ns, "-f", "-", input=yaml.safe_dump(cw))
        worker = wait_for(
            lambda: [
                p for p in core.list_namespaced_pod(ns).items
                if p.status.pod_ip and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
            ],
            90, "a ready worker pod (its runtime got the credentials and reached the server)",
        )[0]  # fmt: skip
        operator = next(p for p in core.list_namespaced_pod(demo.OPERATOR_NS).items if p.status.pod_ip)

        dep = apps.read_namespaced_deployment("secure", ns)
        env = {e.name: e for e in dep.spec.template.spec.containers[0].env}
        assert env["CONDUCTOR_AUTH_SECRET"].value_from.secret_key_ref.name == "orkes-creds"
        assert env["CONDUCTOR_AUTH_SECRET"].value is None
        for pod in (worker, operator):
            assert pod.spec.security_context.run_as_non_root is True, pod.metadata.name
            container = pod.spec.containers[0].security_context
            assert container.read_only_root_filesystem is True, pod.metadata.name
            assert container.allow_privilege_escalation is False, pod.metadata.name

        places = {
            "worker log": _container_log(stack, worker),
            "operator log": _container_log(stack, operator),
            "events": _kubectl(stack, "get", "events", "-A", "-o", "json"),
            "ConductorWorker": _kubectl(stack, "get", "cw", "secure", "-n", ns, "-o", "json"),
            "configmaps": _kubectl(stack, "get", "configmaps", "-A", "-o", "json"),
            "deployment": json.dumps(k8s_api.sanitize_for_serialization(dep)),
            "worker /metrics": requests.get(f"http://{worker.status.pod_ip}:8000/metrics", timeout=5).text,
            "operator /metrics": requests.get(f"http://{operator.status.pod_ip}:8080/metrics", timeout=5).text,
        }
        assert "cwo_demo_price" in places["worker /metrics"]  # the endpoints answered for real
        assert "Handler 'reconcile' succeeded" in places["operator log"]  # the log of the operator that acted
        leaks = [where for where, text in places.items() if key_secret in text or key_id in text]
        assert leaks == [], f"secret value found in: {leaks}"
    finally:
        _kubectl(stack, "delete", "namespace", ns, "--wait=true", "--timeout=120s")
        demo.run([str(stack.helm), "uninstall", demo.RELEASE, "--namespace", demo.OPERATOR_NS, "--wait"], stack)
