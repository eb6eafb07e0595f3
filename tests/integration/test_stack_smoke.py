"""The local stack is real: a Conductor workflow runs to COMPLETED, and Kubernetes controllers act."""

from __future__ import annotations

import time
import uuid

from kubernetes import client


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def test_conductor_workflow_completes_through_batch_poll_and_update(conductor_client):
    suffix = uuid.uuid4().hex[:8]
    task, wf = f"smoke_task_{suffix}", f"smoke_wf_{suffix}"
    conductor_client.register_task_defs(
        [
            {
                "name": task,
                "retryCount": 0,
                "timeoutSeconds": 60,
                "responseTimeoutSeconds": 30,
                "ownerEmail": "smoke@example.com",
            }
        ]
    )
    conductor_client.register_workflow(
        {
            "name": wf,
            "version": 1,
            "schemaVersion": 2,
            "ownerEmail": "smoke@example.com",
            "tasks": [
                {
                    "name": task,
                    "taskReferenceName": "only",
                    "type": "SIMPLE",
                    "inputParameters": {"n": "${workflow.input.n}"},
                }
            ],
            "outputParameters": {"doubled": "${only.output.doubled}"},
        }
    )
    workflow_id = conductor_client.start_workflow(wf, {"n": 21})

    polled = _wait(lambda: conductor_client.poll_batch(task, "smoke", count=5, timeout_ms=500), 20, "a task")
    assert len(polled) == 1
    assert polled[0]["inputData"] == {"n": 21}
    conductor_client.update_task(
        {
            "taskId": polled[0]["taskId"],
            "workflowInstanceId": workflow_id,
            "workerId": "smoke",
            "status": "COMPLETED",
            "outputData": {"doubled": 42},
        }
    )
    done = _wait(
        lambda: (w := conductor_client.get_workflow(workflow_id))["status"] != "RUNNING" and w,
        20,
        "completion",
    )
    assert done["status"] == "COMPLETED"
    assert done["output"] == {"doubled": 42}


def test_crd_and_custom_object_are_served(kubectl, k8s_api, namespace):
    crd = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.smoke.example.com}
spec:
  group: smoke.example.com
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties: {size: {type: integer, minimum: 1}}
"""
    kubectl("apply", "-f", "-", input=crd)
    kubectl("wait", "--for=condition=Established", "crd/widgets.smoke.example.com", "--timeout=30s")
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input="apiVersion: smoke.example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3}\n",
    )
    obj = client.CustomObjectsApi(k8s_api).get_namespaced_custom_object(
        "smoke.example.com", "v1", namespace, "widgets", "w1"
    )
    assert obj["spec"] == {"size": 3}
    bad = kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        check=False,
        input="apiVersion: smoke.example.com/v1\nkind: Widget\nmetadata: {name: w2}\nspec: {size: 0}\n",
    )
    assert bad.returncode != 0 and "spec.size" in bad.stderr


def test_controller_manager_creates_replicaset_and_pods_then_garbage_collects(k8s_api, namespace):
    apps, core = client.AppsV1Api(k8s_api), client.CoreV1Api(k8s_api)
    labels = {"app": "smoke"}
    apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="smoke"),
            spec=client.V1DeploymentSpec(
                replicas=2,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="example/none:1")]),
                ),
            ),
        ),
    )
    _wait(lambda: len(apps.list_namespaced_replica_set(namespace).items) == 1, 30, "a ReplicaSet")
    _wait(lambda: len(core.list_namespaced_pod(namespace).items) == 2, 30, "2 Pods")
    pod = core.list_namespaced_pod(namespace).items[0]
    assert pod.metadata.owner_references[0].kind == "ReplicaSet"
    assert pod.spec.service_account_name == "default"  # ServiceAccount admission is on

    apps.delete_namespaced_deployment("smoke", namespace, propagation_policy="Background")
    _wait(lambda: not apps.list_namespaced_replica_set(namespace).items, 60, "ReplicaSet collected")
    _wait(lambda: not core.list_namespaced_pod(namespace).items, 60, "Pods collected")


def _etcd_health(url: str, pki, cert: str | None) -> int:
    """etcd's /health status with a client cert of `pki` (None: without one); raises when refused."""
    import ssl
    import urllib.request

    ctx = None
    if url.startswith("https"):
        ctx = ssl.create_default_context(cafile=str(pki / "etcd-ca.crt"))
        if cert:
            ctx.load_cert_chain(str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
    with urllib.request.urlopen(url, timeout=3, context=ctx) as resp:
        return resp.status


def test_etcd_answers_only_the_api_servers_client_certificate(stack, kubeconfig):
    """etcd holds the cluster's every object and Secret: on a user's machine no other local user or process
    may read it. Only the API server's client cert (of etcd's own CA) gets an answer."""
    from teststack import kube

    pki, port = stack.run_dir / "pki", stack.etcd_port
    assert _etcd_health(f"https://127.0.0.1:{port}/health", pki, kube.ETCD_CLIENT) == 200
    refused = []
    for url, cert in (
        (f"https://127.0.0.1:{port}/health", None),  # no client cert
        (f"https://127.0.0.1:{port}/health", "admin"),  # the cluster's admin cert: another CA
        (f"http://127.0.0.1:{port}/health", None),  # plain HTTP
        (f"https://127.0.0.1:{port + 1}/members", None),  # the peer port
    ):
        try:
            _etcd_health(url, pki, cert)
        except Exception as exc:  # SSL alert, reset or disconnect: refused in every form
            refused.append((url, cert, type(exc).__name__))
    assert len(refused) == 4, refused
