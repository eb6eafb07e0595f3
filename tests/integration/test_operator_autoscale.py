"""The autoscaler end to end: real Conductor queue depth, real worker-runtime containers (the pods of the
Deployment, run by the kubelet), real /metrics scrapes, real API server."""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import yaml
from kubernetes import client

from conductor_operator.observe import QueueDepthSource
from helpers import linear_workflow, task_def, unique, wait_for, wait_workflow_done
from teststack import images

pytestmark = [pytest.mark.kube, pytest.mark.conductor]

INTERVAL = 2  # autoscaling.pollingIntervalSeconds
WINDOW = 8  # scaleDown.stabilizationWindowSeconds
COOLDOWN = 16  # cooldownSeconds (to zero)
MAX = 4
SLACK = 1.5  # one evaluation's own latency (Conductor + scrape + apply)


def test_queue_depth_source_batches_and_shares_one_request(conductor_client, conductor_url):
    task = unique("cwo_depth")
    conductor_client.register_task_defs([task_def(task)])
    wf = unique("cwo_depth_wf")
    conductor_client.register_workflow(linear_workflow(wf, [(task, "t", {})]))
    for _ in range(3):
        conductor_client.start_workflow(wf, {})
    conductor_client.start_workflow(wf, {}, task_to_domain={task: "blue"})
    source = QueueDepthSource()
    queues = [(task, None), (task, "blue"), ("cwo_never_used", None)]

    def depths():
        d = source.depths(conductor_url, queues, max_age=0.0)
        return d if d[task] == 3 and d[f"blue:{task}"] == 1 else None

    got = wait_for(depths, 10, "queue depths")
    assert got["cwo_never_used"] == 0
    sent = source.requests
    for _ in range(5):  # many ConductorWorkers on one server within the interval: one request
        source.depths(conductor_url, queues, max_age=30.0)
    assert source.requests == sent
    source.close()


def test_backlog_scales_up_drains_to_zero_and_activates(
    operator, node, stack, kubectl, k8s_api, namespace, conductor_client
):
    task = unique("cwo_scale")
    conductor_client.register_task_defs([task_def(task)])
    wf = unique("cwo_scale_wf")
    conductor_client.register_workflow(linear_workflow(wf, [(task, "t", {"millis": "${workflow.input.millis}"})]))
    manifest = {
        "apiVersion": "conductor.io/v1alpha1",
        "kind": "ConductorWorker",
        "metadata": {"name": "scaler"},
        "spec": {
            "conductor": {"serverUrl": stack.pod_conductor_url},
            "image": images.TEST_WORKERS_IMAGE,
            "imagePullPolicy": "Never",
            "modules": ["sleep_workers"],
            "tasks": [{"name": task, "concurrency": 4, "pollTimeoutMs": 500}],
            "terminationGracePeriodSeconds": 10,
            "template": {"env": [{"name": "CWO_SLEEP_TASKS", "value": task}]},
            "autoscaling": {
                "enabled": True,
                "minReplicas": 0,
                "maxReplicas": MAX,
                "targetQueueDepthPerReplica": 20,
                "pollingIntervalSeconds": INTERVAL,
                "cooldownSeconds": COOLDOWN,
                "scaleDown": {"stabilizationWindowSeconds": WINDOW},
            },
        },
    }
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest))
    apps = client.AppsV1Api(k8s_api)

    def replicas() -> int | None:
        try:
            return apps.read_namespaced_deployment("scaler", namespace).spec.replicas
        except client.ApiException:
            return None

    def status() -> dict:
        return json.loads(kubectl("get", "cw", "scaler", "-n", namespace, "-o", "json").stdout).get("status") or {}

    # Idle at zero: no backlog, minReplicas 0.
    wait_for(lambda: replicas() == 0 and status().get("totalQueueDepth") == 0, 20, "idle at zero")

    # 1. Backlog of 200 -> replicas up within one polling interval.
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda _: conductor_client.start_workflow(wf, {"millis": 300}), range(200)))
    enqueued = time.monotonic()
    wait_for(lambda: (replicas() or 0) > 0, INTERVAL + SLACK + (enqueued - started), "activation by the backlog")
    up = time.monotonic()
    assert up - started <= INTERVAL + SLACK + (enqueued - started)
    wait_for(lambda: replicas() == MAX, INTERVAL + SLACK, f"{MAX} replicas (clamped to maxReplicas)")
    full = time.monotonic()
    assert full - enqueued <= INTERVAL + SLACK

    # The real workers (containers run by the kubelet) drain the queue; the operator scrapes their slots.
    seen = {"busy": 0, "capacity": 0, "ready": 0}
    last_full_demand = [time.monotonic()]  # the last time the operator's raw proposal was MAX or more

    def sample() -> dict:
        st = status()
        proposal = re.search(r"proposes (\d+)", st.get("lastDecisionReason") or "")
        if proposal and int(proposal.group(1)) >= MAX:
            last_full_demand[0] = time.monotonic()
        return st

    def drained():
        st = sample()
        seen["busy"] = max(seen["busy"], st.get("busySlots") or 0)
        seen["capacity"] = max(seen["capacity"], st.get("slotCapacity") or 0)
        seen["ready"] = max(seen["ready"], st.get("readyReplicas") or 0)
        return st.get("totalQueueDepth") == 0 and st.get("busySlots") == 0 and st

    wait_for(drained, 90, "backlog drained", interval=0.3)
    idle = time.monotonic()
    assert seen["busy"] > 0, seen
    assert seen["capacity"] >= 4 * 2, seen  # worker_slot_capacity from at least two pods
    assert seen["ready"] >= 2, seen
    for wid in ids[:5] + ids[-5:]:
        assert wait_workflow_done(conductor_client, wid, 30)["status"] == "COMPLETED"
    assert replicas() == MAX  # the stabilization window holds the fleet

    # 2. Drained -> down only after the stabilization window...
    wait_for(
        lambda: sample() and replicas() == 1,
        WINDOW + 3 * INTERVAL + SLACK,
        "scale down to 1 after the window",
        interval=0.2,
    )
    down = time.monotonic()
    # The window runs from the operator's last full-size proposal (demand can fall before the queue is empty).
    held = down - last_full_demand[0]
    assert held >= WINDOW - 2 * INTERVAL, f"scaled down {held:.1f}s after the last full-size proposal, window {WINDOW}s"
    # ... and to zero after the cooldown.
    wait_for(lambda: replicas() == 0, COOLDOWN + 3 * INTERVAL + SLACK, "scale to zero after the cooldown", interval=0.2)
    zero = time.monotonic()
    assert zero - idle >= COOLDOWN - 2 * INTERVAL, f"zero after {zero - idle:.1f}s, cooldown {COOLDOWN}s"
    # the decision that scaled to zero, or the next interval's, which finds the fleet idle at zero (the status
    # is written just after the Deployment is scaled: read it once it is there)
    st = wait_for(lambda: (s := status()).get("desiredReplicas") == 0 and s, INTERVAL + SLACK, "status: desired 0")
    assert "scaled to zero" in st["lastDecisionReason"] or "idle at zero" in st["lastDecisionReason"], st
    active = next(c for c in st["conditions"] if c["type"] == "Active")
    assert active["status"] == "False"
    core = client.CoreV1Api(k8s_api)
    wait_for(lambda: not core.list_namespaced_pod(namespace).items, 40, "worker pods gone")

    # 3. A new task while at zero -> activation within one polling interval, and it gets done.
    poked = time.monotonic()
    wid = conductor_client.start_workflow(wf, {"millis": 10})
    wait_for(lambda: (replicas() or 0) > 0, INTERVAL + SLACK, "activation from zero", interval=0.1)
    assert time.monotonic() - poked <= INTERVAL + SLACK
    assert replicas() == 1
    assert wait_workflow_done(conductor_client, wid, 60)["status"] == "COMPLETED"
    assert "activated" in status()["lastDecisionReason"] or status()["desiredReplicas"] == 1

    # Every decision is an Event and an operator metric.
    events = kubectl("get", "events", "-n", namespace, "--field-selector", "reason=Scaled", "-o", "json").stdout
    messages = [e["message"] for e in json.loads(events)["items"]]
    steps = {tuple(map(int, m.groups())) for m in (re.match(r"Scaled from (\d+) to (\d+):", x) for x in messages) if m}
    # Up from zero, to MAX, down to 1 (in one step or several: the window keeps the highest proposal it saw while
    # the queue drained, which may be below MAX), to zero, and activated again.
    assert any(a == 0 and b > 0 for a, b in steps), messages
    assert any(b == MAX for _, b in steps), messages
    assert any(a > 1 and b == 1 for a, b in steps), messages
    assert (1, 0) in steps and (0, 1) in steps, messages
    metrics = requests.get(operator.metrics_url, timeout=5).text
    assert f'conductor_operator_desired_replicas{{name="scaler",namespace="{namespace}"}} 1.0' in metrics
    assert "conductor_operator_scale_decisions_total" in metrics
    assert f'queue="{task}"' in metrics
