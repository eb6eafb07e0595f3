"""Secrets stay secret and pods run locked down, with the operator installed by the chart.

A ConductorWorker names an Orkes-style Secret; the operator (its image, under the chart's RBAC, with
its ServiceAccount's in-cluster config) and a real worker container run on the kubelet; then the
secret's values are searched for everywhere they must not be: logs of the operator and the workers
(read through the kubelet), Events, the ConductorWorker (status included), ConfigMaps, the
Deployment, and both /metrics endpoints. Inside both containers the kernel's view proves the
security settings are enforced, not only declared: non-root UID, no capabilities, no_new_privs, a
read-only root filesystem, and /tmp (an emptyDir) the one writable place.
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
from teststack import demo, images
from teststack.config import StackConfig

pytestmark = [pytest.mark.kube, pytest.mark.conductor]


def _kubectl(stack: StackConfig, *args: str, input: str | None = None) -> str:
    return demo.run([str(stack.kubectl), *args], stack, input=input).stdout


def _container_log(stack: StackConfig, pod: client.V1Pod) -> str:
    return _kubectl(stack, "logs", "-n", pod.metadata.namespace, pod.metadata.name)


# Run inside the container (both images have Python): what the kernel says of the process, and
# whether the root filesystem and /tmp take a write.
_PROBE = """
import json, os
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
def writable(path):
    try:
        with open(os.path.join(path, ".probe"), "w") as f:
            f.write("x")
        os.remove(os.path.join(path, ".probe"))
        return True
    except OSError as exc:
        return exc.strerror
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(),
    "cap_eff": status["CapEff"].strip(), "cap_prm": status["CapPrm"].strip(), "cap_bnd": status["CapBnd"].strip(),
    "no_new_privs": status["NoNewPrivs"].strip(),
    "root": writable("/"), "workers": writable("/workers") if os.path.isdir("/workers") else "absent",
    "tmp": writable("/tmp"),
}))
"""


def _probe(stack: StackConfig, pod: client.V1Pod) -> dict:
    out = _kubectl(stack, "exec", "-n", pod.metadata.namespace, pod.metadata.name, "--", "python3", "-c", _PROBE)
    return json.loads(out)


def test_secret_values_appear_nowhere_and_pods_run_locked_down(stack: StackConfig, k8s_api, conductor_url, node):
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
        conn = {
            "apiVersion": "conductor.io/v1alpha1",
            "kind": "ConductorConnection",
            "metadata": {"name": "orkes"},
            "spec": {"serverUrl": stack.pod_conductor_url, "authSecretRef": {"name": "orkes-creds"}},
        }
        _kubectl(stack, "apply", "-n", ns, "-f", "-", input=yaml.safe_dump(conn))
        cw = {
            "apiVersion": "conductor.io/v1alpha1",
            "kind": "ConductorWorker",
            "metadata": {"name": "secure"},
            "spec": {
                "conductor": {"connectionRef": {"name": "orkes"}},
                "image": images.DEMO_WORKERS_IMAGE,
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
            # ... and enforced by the kernel in the running container
            seen = _probe(stack, pod)
            assert seen["uid"] != 0 and seen["gid"] != 0, (pod.metadata.name, seen)
            assert int(seen["cap_eff"], 16) == 0 and int(seen["cap_prm"], 16) == 0, (pod.metadata.name, seen)
            assert int(seen["cap_bnd"], 16) == 0, (pod.metadata.name, seen)  # capabilities: drop ALL
            assert seen["no_new_privs"] == "1", (pod.metadata.name, seen)
            assert seen["root"] == "Read-only file system", (pod.metadata.name, seen)
            assert seen["workers"] in ("Read-only file system", "absent"), (pod.metadata.name, seen)
            assert seen["tmp"] is True, (pod.metadata.name, seen)

        places = {
            "worker log": _container_log(stack, worker),
            "operator log": _container_log(stack, operator),
            "events": _kubectl(stack, "get", "events", "-A", "-o", "json"),
            "ConductorWorker": _kubectl(stack, "get", "cw", "secure", "-n", ns, "-o", "json"),
            "ConductorConnection": _kubectl(stack, "get", "cconn", "orkes", "-n", ns, "-o", "json"),
            "configmaps": _kubectl(stack, "get", "configmaps", "-A", "-o", "json"),
            "deployment": json.dumps(k8s_api.sanitize_for_serialization(dep)),
            "worker /metrics": requests.get(f"http://{worker.status.pod_ip}:8000/metrics", timeout=5).text,
            "operator /metrics": requests.get(f"http://{operator.status.pod_ip}:8080/metrics", timeout=5).text,
        }
        assert "cwo_demo_price" in places["worker /metrics"]  # the endpoints answered for real
        assert "/secure: generation 1 reconciled" in places["operator log"]  # the log of the operator that acted
        leaks = [where for where, text in places.items() if key_secret in text or key_id in text]
        assert leaks == [], f"secret value found in: {leaks}"
    finally:
        _kubectl(stack, "delete", "namespace", ns, "--wait=true", "--timeout=120s")
        demo.run([str(stack.helm), "uninstall", demo.RELEASE, "--namespace", demo.OPERATOR_NS, "--wait"], stack)


def test_fleets_run_where_pod_security_restricted_is_enforced(stack: StackConfig, k8s_api, conductor_url, node):
    """The namespace enforces the `restricted` Pod Security Standard, which refuses a pod that could run as
    root, keeps a capability, may escalate or has no seccomp profile. A runtime fleet and a Go SDK fleet
    with its Conductor sidecar (an init container, held to the same rules) still get ready pods."""
    core = client.CoreV1Api(k8s_api)
    ns = f"psa-{uuid.uuid4().hex[:6]}"
    plain_go = demo.load_example(stack, "plain-go")
    demo.helm_install(stack)
    labels = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns, labels=labels)))
    try:
        base = {"conductor": {"serverUrl": stack.pod_conductor_url}, "replicas": 1}
        fleets = [
            {
                "metadata": {"name": "runtime"},
                "spec": {
                    **base,
                    "image": images.DEMO_WORKERS_IMAGE,
                    "modules": ["demo_workers"],
                    "tasks": [{"name": "cwo_demo_price"}],
                },
            },
            {
                "metadata": {"name": "go"},
                "spec": {
                    **base,
                    "sdk": "go",
                    "imagePullPolicy": "Never",
                    "container": {"image": plain_go},
                    "metrics": {"enabled": False},
                    "tasks": [{"name": "plain-sleep", "concurrency": 2}],
                },
            },
        ]
        for cw in fleets:
            cw = {"apiVersion": "conductor.io/v1alpha1", "kind": "ConductorWorker", **cw}
            _kubectl(stack, "apply", "-n", ns, "-f", "-", input=yaml.safe_dump(cw))

        def ready() -> dict[str, client.V1Pod]:
            pods = core.list_namespaced_pod(ns).items
            return {
                p.metadata.labels["app.kubernetes.io/instance"]: p
                for p in pods
                if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
            }

        pods = wait_for(lambda: (found := ready()).keys() == {"runtime", "go"} and found, 120, "both fleets ready")
        runtime_pod, go_pod = pods["runtime"], pods["go"]
        assert runtime_pod.spec.security_context.run_as_user == 10001  # the runtime image's own user
        (sidecar,) = go_pod.spec.init_containers
        assert sidecar.name == "conductor-sidecar" and sidecar.restart_policy == "Always"
        assert sidecar.security_context.run_as_user == 10001 and sidecar.security_context.capabilities.drop == ["ALL"]
        # A template that asks for root there: the Deployment's pods are refused, and the ConductorWorker says
        # why, naming the field (Degraded, from the ReplicaSet's FailedCreate).
        root = {
            "apiVersion": "conductor.io/v1alpha1",
            "kind": "ConductorWorker",
            "metadata": {"name": "root"},
            "spec": {
                **fleets[0]["spec"],
                "template": {"securityContext": {"runAsNonRoot": False, "runAsUser": 0}},
            },
        }
        _kubectl(stack, "apply", "-n", ns, "-f", "-", input=yaml.safe_dump(root))

        def degraded() -> dict | None:
            obj = json.loads(_kubectl(stack, "get", "cw", "root", "-n", ns, "-o", "json"))
            found = next(
                (c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Degraded"), None
            )
            return found if found and found["status"] == "True" else None

        why = wait_for(degraded, 90, "the root-asking ConductorWorker Degraded")
        assert why["reason"] == "FailedCreate" and "runAsUser=0" in why["message"], why
        # the admission really is enforcing: a pod that may escalate is refused in this namespace
        bad = client.V1Pod(
            metadata=client.V1ObjectMeta(name="escalates"),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c", image=images.RUNTIME_IMAGE)]),
        )
        with pytest.raises(client.ApiException) as refused:
            core.create_namespaced_pod(ns, bad)
        assert refused.value.status == 403 and "restricted" in refused.value.body
    finally:
        _kubectl(stack, "delete", "namespace", ns, "--wait=true", "--timeout=120s")
        demo.run([str(stack.helm), "uninstall", demo.RELEASE, "--namespace", demo.OPERATOR_NS, "--wait"], stack)
