"""The user's path end to end on the real local stack, as the demo runs it.

helm install (the operator runs from its image under the chart's own RBAC, as a container run by the
kubelet, with the in-cluster config of its ServiceAccount), apply the example ConductorWorker, 500 workflows complete, replicas rise above
1 and return to the configured minimum; helm upgrade changes a value and the operator picks it up;
helm uninstall leaves no operator objects behind and keeps the CRD.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
import yaml
from kubernetes import client

from helpers import wait_for
from teststack import demo
from teststack.config import REPO_ROOT, StackConfig

pytestmark = [pytest.mark.kube, pytest.mark.conductor]


def _helm(stack: StackConfig, *args: str) -> str:
    return demo.run([str(stack.helm), *args], stack).stdout


def _kubectl(stack: StackConfig, *args: str, input: str | None = None) -> str:
    return demo.run([str(stack.kubectl), *args], stack, input=input).stdout


def test_helm_install_apply_example_500_workflows_scale_up_and_back_upgrade_uninstall(
    stack: StackConfig, conductor_client, k8s_api, node
):
    apps, core = client.AppsV1Api(k8s_api), client.CoreV1Api(k8s_api)
    custom = client.CustomObjectsApi(k8s_api)
    demo.helm_install(stack)
    try:
        op = wait_for(
            lambda: [p for p in core.list_namespaced_pod(demo.OPERATOR_NS).items if p.status.phase == "Running"],
            60, "the operator pod running",
        )[0]  # fmt: skip
        assert op.spec.service_account_name != "default"
        assert op.spec.security_context.run_as_non_root is True
        assert op.spec.containers[0].security_context.read_only_root_filesystem is True

        ns = _kubectl(stack, "create", "namespace", demo.DEMO_NS, "--dry-run=client", "-o", "yaml")
        _kubectl(stack, "apply", "-f", "-", input=ns)
        example = yaml.safe_load((REPO_ROOT / "examples" / "conductorworker-demo.yaml").read_text())
        example["spec"]["conductor"]["serverUrl"] = stack.pod_conductor_url
        example["spec"]["autoscaling"]["minReplicas"] = 0
        _kubectl(stack, "apply", "-n", demo.DEMO_NS, "-f", "-", input=yaml.safe_dump(example))
        demo.register(conductor_client)

        ids = [
            conductor_client.start_workflow(
                demo.WORKFLOW,
                {"order": {"id": f"o{i}", "quantity": 2, "unit_price": 1.25}, "discount": 0.0, "millis": 100},
            )
            for i in range(500)
        ]
        wait_for(
            lambda: apps.list_namespaced_deployment(demo.DEMO_NS).items, 60, "the operator to create the Deployment"
        )
        peak, pending, started = 0, set(ids), time.monotonic()
        while pending and time.monotonic() - started < 420:
            dep = apps.read_namespaced_deployment(demo.CW_NAME, demo.DEMO_NS)
            peak = max(peak, dep.spec.replicas or 0)
            for wf_id in list(pending)[:100]:
                w = conductor_client.get_workflow(wf_id, include_tasks=False)
                if w["status"] != "RUNNING":
                    assert w["status"] == "COMPLETED", w
                    assert w["output"] == {"total": 2.5, "slept_ms": 100}
                    pending.discard(wf_id)
            time.sleep(0.5)
        assert not pending, f"{len(pending)} workflows unfinished"
        assert peak > 1, f"replicas never rose above 1 (peak {peak})"
        wait_for(
            lambda: apps.read_namespaced_deployment(demo.CW_NAME, demo.DEMO_NS).spec.replicas == 0,
            120, "replicas back to the configured minimum (0)",
        )  # fmt: skip

        def desired() -> int | None:
            return (
                custom.get_namespaced_custom_object(
                    "conductor.io", "v1alpha1", demo.DEMO_NS, "conductorworkers", demo.CW_NAME
                ).get("status", {})
            ).get("desiredReplicas")

        # the operator writes its status just after it scales the Deployment (CI read the status in between)
        wait_for(lambda: desired() == 0, 10, "the status's desiredReplicas back to 0")

        # helm upgrade: a new default worker image reaches Deployments of workers that name none
        imageless = {**example, "metadata": {"name": "imageless"}}
        imageless["spec"] = {k: v for k, v in example["spec"].items() if k != "image"}
        imageless["spec"]["autoscaling"] = {"enabled": False}
        imageless["spec"]["replicas"] = 0
        _kubectl(stack, "apply", "-n", demo.DEMO_NS, "-f", "-", input=yaml.safe_dump(imageless))

        def image_of() -> str:
            try:
                return apps.read_namespaced_deployment("imageless", demo.DEMO_NS).spec.template.spec.containers[0].image
            except client.ApiException as exc:
                if exc.status == 404:
                    return ""  # not created yet
                raise

        wait_for(lambda: image_of().endswith(":0.1.0"), 60, "the imageless worker on the chart's default image")
        demo.helm_install(stack, ["--set", "workerImage.tag=0.1.1"])
        wait_for(lambda: image_of().endswith(":0.1.1"), 120, "the upgraded default image applied by the operator")

        # A ConductorConnection with a Secret, named by the imageless worker (the operator reads the Secret and
        # writes the connection's Ready condition), then that worker's PDB turned off (the operator deletes it).
        _kubectl(stack, "apply", "-n", demo.DEMO_NS, "-f", "-", input=yaml.safe_dump_all(connection_objects(stack)))
        imageless["spec"]["conductor"] = {"connectionRef": {"name": "demo"}}
        imageless["spec"]["podDisruptionBudget"] = {"enabled": False}
        _kubectl(stack, "apply", "-n", demo.DEMO_NS, "-f", "-", input=yaml.safe_dump(imageless))
        wait_for(lambda: connection_ready(stack) == "True", 60, "the connection Ready (checked by the operator)")
        policy = client.PolicyV1Api(k8s_api)
        wait_for(
            lambda: "imageless" not in [p.metadata.name for p in policy.list_namespaced_pod_disruption_budget(demo.DEMO_NS).items],
            60, "the imageless worker's PDB deleted",
        )  # fmt: skip
        check_verbs_against_the_chart(stack, op.spec.service_account_name)
    finally:
        _kubectl(stack, "delete", "namespace", demo.DEMO_NS, "--wait=true", "--timeout=120s")
        _helm(stack, "uninstall", demo.RELEASE, "--namespace", demo.OPERATOR_NS, "--wait")

    def leftovers() -> list[str]:
        items = json.loads(_kubectl(stack, "get", "all,sa,role,rolebinding", "-n", demo.OPERATOR_NS, "-o", "json"))
        return [
            f"{i['kind']}/{i['metadata']['name']}"
            for i in items["items"]
            if not (i["kind"] == "ServiceAccount" and i["metadata"]["name"] == "default")
        ]

    # the operator's pod is Terminating for a moment after the uninstall (the kubelet stops it gracefully)
    wait_for(lambda: leftovers() == [], 60, "no operator object left after the uninstall")
    cluster = _kubectl(stack, "get", "clusterrole,clusterrolebinding", "-o", "name")
    assert "conductor-worker-operator" not in cluster and f"{demo.RELEASE}-" not in cluster
    assert _kubectl(stack, "get", "crd", "conductorworkers.conductor.io", "-o", "name").strip()  # kept


def connection_objects(stack: StackConfig) -> list[dict]:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "demo-key"},
        "stringData": {"keyId": "demo-id", "keySecret": "demo-secret"},  # Conductor OSS asks for no token
    }
    conn = {
        "apiVersion": "conductor.io/v1alpha1",
        "kind": "ConductorConnection",
        "metadata": {"name": "demo"},
        "spec": {"serverUrl": stack.pod_conductor_url, "authSecretRef": {"name": "demo-key"}},
    }
    return [secret, conn]


def connection_ready(stack: StackConfig) -> str | None:
    obj = json.loads(_kubectl(stack, "get", "conductorconnection", "demo", "-n", demo.DEMO_NS, "-o", "json"))
    return next((c["status"] for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), None)


# Granted by the chart but never seen in the audit log of this run, each for a reason.
NOT_SEEN = {
    # Server-side apply creates with PATCH: the API server checks `create` too, and logs the request as patch.
    ("apps", "deployments", "create"): "server-side apply",
    ("", "services", "create"): "server-side apply",
    ("policy", "poddisruptionbudgets", "create"): "server-side apply",
    ("monitoring.coreos.com", "servicemonitors", "create"): "server-side apply (no ServiceMonitor CRD here)",
    ("monitoring.coreos.com", "servicemonitors", "patch"): "no ServiceMonitor CRD on the demo stack",
    ("monitoring.coreos.com", "servicemonitors", "delete"): "no ServiceMonitor CRD on the demo stack",
    ("", "services", "delete"): "metrics.enabled never turned off here (test_operator_reconcile does)",
    # An authorization check only: blockOwnerDeletion on the children's ownerReferences.
    ("conductor.io", "conductorworkers/finalizers", "update"): "checked for blockOwnerDeletion, never requested",
    ("", "pods", "patch"): "the deletion cost is set when busy pods may leave (test_chart: the admission policy)",
    ("apps", "deployments", "get"): "read only when the watch has not yet seen the operator's own apply",
}


def check_verbs_against_the_chart(stack: StackConfig, service_account: str) -> None:
    """The operator's requests in the API server's audit log (it ran in a pod under the chart's RBAC) against
    the chart's rules: nothing it needed was refused, and every granted verb was used or is in NOT_SEEN."""
    user = f"system:serviceaccount:{demo.OPERATOR_NS}:{service_account}"
    from teststack import kube as stack_kube

    events = stack_kube.audit_requests(stack, user)
    assert events, f"no audit event of {user}: is the API server's audit log on?"
    refused = {  # RBAC refusals ("cannot ... resource"), not those of a namespace being deleted
        (e["verb"], (e.get("objectRef") or {}).get("resource"), e["responseStatus"].get("message", "")[:120])
        for e in events
        if e["responseStatus"].get("code") == 403 and "being terminated" not in e["responseStatus"].get("message", "")
    }
    assert not refused, f"the operator was refused: {refused}"
    seen = set()
    for e in events:
        ref = e.get("objectRef") or {}
        if ref.get("resource"):
            resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
            seen.add((ref.get("apiGroup") or "", resource, e["verb"]))
    role = json.loads(_kubectl(stack, "get", "clusterrole", f"{demo.RELEASE}-conductor-worker-operator", "-o", "json"))
    granted = {
        (g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
    }
    assert seen <= granted, f"used but not granted (a wildcard or another binding?): {sorted(seen - granted)}"
    unused = granted - seen - set(NOT_SEEN)
    assert not unused, f"granted by the chart but never used by the operator: {sorted(unused)}"


ROW = re.compile(
    r"^\s+(?P<t>\d+\.\d)\s+(?P<queue>\d+)\s+(?P<desired>\d+)\s+(?P<replicas>\d+)\s+(?P<ready>\d+)\s+\d+/\d+"
)


def test_demo_command_shows_replicas_follow_the_burst_from_zero_and_back(stack: StackConfig, node) -> None:
    """The README's demo command as a user runs it: its table starts before the first replica, the
    burst is worked off, every output is right, and the fleet ends at zero."""
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "demo.sh")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout
    assert proc.returncode == 0, f"demo.sh failed ({proc.returncode}):\n{out[-3000:]}\n{proc.stderr[-3000:]}"
    rows = [m.groupdict() for m in map(ROW.match, out.splitlines()) if m]
    assert rows, out
    # the first row comes at once, before the burst is even all started (it was printed only after)
    assert float(rows[0]["t"]) < 1 and rows[0]["replicas"] == "0", f"the table starts late:\n{out}"
    assert max(int(r["replicas"]) for r in rows) > 0, out
    assert rows[-1]["replicas"] == "0" and rows[-1]["queue"] == "0", out
    assert "workflows completed: 300/300 (failed 0, unfinished 0)" in out, out
    first = re.search(r"first replica after: ([\d.]+)s", out)
    assert first and float(first.group(1)) < 30, out
