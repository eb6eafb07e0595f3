"""The autoscaler on traffic that is not a burst draining to zero (issue 19), end to end on the stack: real
Conductor, real worker-runtime pods run by the kubelet, the operator process under test.

- spread load: long tasks about one per pod; the fleet shrinks to what targetUtilization gives within
  the scale-down window (busy pods leave and drain), and no task is lost, run twice or timed out;
- waiting work: tasks handed back with callbackAfterSeconds are not backlog: the fleet goes to zero
  while they wait and comes back when they are due;
- a domain fleet at zero is activated by tasks waiting in its `domain:task` queue.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import yaml
from kubernetes import client

from conductor_operator import builders
from helpers import linear_workflow, task_def, unique, wait_for, wait_workflow_done
from teststack import images

pytestmark = [pytest.mark.kube, pytest.mark.conductor]

INTERVAL = 2  # autoscaling.pollingIntervalSeconds
SLACK = 2.0  # one evaluation's own latency (Conductor + scrape + apply) and the status write


def worker(name: str, task: str, url: str, autoscaling: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "conductor.io/v1alpha1",
        "kind": "ConductorWorker",
        "metadata": {"name": name},
        "spec": {
            "conductor": {"serverUrl": url},
            "image": images.TEST_WORKERS_IMAGE,
            "imagePullPolicy": "Never",
            "modules": ["sleep_workers"],
            "tasks": [{"name": task, "concurrency": 4, "pollTimeoutMs": 500, **spec.pop("task_extra", {})}],
            "template": {"env": [{"name": "CWO_SLEEP_TASKS", "value": task}]},
            "autoscaling": {"enabled": True, "pollingIntervalSeconds": INTERVAL, **autoscaling},
            **spec,
        },
    }


class Fleet:
    """Reads of one ConductorWorker's Deployment, pods and status."""

    def __init__(self, name: str, namespace: str, k8s_api, kubectl) -> None:
        self.name, self.namespace, self.kubectl = name, namespace, kubectl
        self.apps, self.core = client.AppsV1Api(k8s_api), client.CoreV1Api(k8s_api)

    def replicas(self) -> int | None:
        try:
            return self.apps.read_namespaced_deployment(self.name, self.namespace).spec.replicas
        except client.ApiException:
            return None

    def status(self) -> dict[str, Any]:
        out = self.kubectl("get", "cw", self.name, "-n", self.namespace, "-o", "json").stdout
        return json.loads(out).get("status") or {}

    def pods(self) -> list[Any]:
        return self.core.list_namespaced_pod(self.namespace, label_selector=builders.selector_string(self.name)).items


def assert_ran_once(conductor_client, workflow_ids: list[str]) -> list[dict[str, Any]]:
    """Every workflow COMPLETED with one task that ran once: no retry, no second poll, no timeout."""
    tasks = []
    for wid in workflow_ids:
        wf = wait_workflow_done(conductor_client, wid, 120)
        assert wf["status"] == "COMPLETED", (wid, wf["status"], wf.get("reasonForIncompletion"))
        assert len(wf["tasks"]) == 1, [(t["status"], t.get("retryCount")) for t in wf["tasks"]]
        tasks.append(wf["tasks"][0])
    return tasks


def test_spread_load_shrinks_to_what_utilization_needs_and_busy_pods_drain(
    operator, node, stack, kubectl, k8s_api, namespace, conductor_client
):
    task = unique("cwo_spread")
    conductor_client.register_task_defs([task_def(task, response_timeout=120)])
    wf = unique("cwo_spread_wf")
    conductor_client.register_workflow(linear_workflow(wf, [(task, "t", {"millis": "${workflow.input.millis}"})]))
    window, start, slots, target = 16, 8, 4, 80
    manifest = worker(
        "spread",
        task,
        stack.pod_conductor_url,
        {
            "minReplicas": 1,
            "maxReplicas": start,
            "targetQueueDepthPerReplica": 1,
            "targetUtilization": target,
            "scaleUp": {"policies": [{"type": "Pods", "value": start, "periodSeconds": 1}]},
            "scaleDown": {"stabilizationWindowSeconds": window},
        },
    )
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest))
    fleet = Fleet("spread", namespace, k8s_api, kubectl)
    wait_for(lambda: fleet.replicas() == 1, 30, "the fleet at minReplicas")

    # Pods that leave, seen by a watch-like poll: name -> when its deletion began.
    leaving: dict[str, float] = {}
    stop = threading.Event()

    def watch_pods() -> None:
        while not stop.is_set():
            for pod in fleet.pods():
                if pod.metadata.deletion_timestamp and pod.metadata.name not in leaving:
                    leaving[pod.metadata.name] = time.time() * 1000
            time.sleep(0.3)

    watcher = threading.Thread(target=watch_pods, daemon=True)
    watcher.start()

    # A burst of short tasks takes the fleet to 8 pods. Once they are done, 8 blocks of one long task and
    # three short ones arrive in order: a pod takes what arrives until its 4 slots are full, so each pod
    # ends up with one long task (the runtime's polls would otherwise pack the tasks onto few pods). When
    # the short ones end, every pod holds one task, 8 of 32 slots are busy (more with the stream of long
    # tasks that follows, one every 8 s): utilization wants 3-5 pods, so busy pods must leave.
    ids = [conductor_client.start_workflow(wf, {"millis": 2000}) for _ in range(start * 2)]
    wait_for(lambda: fleet.replicas() == start, 10, f"{start} replicas from the burst")
    wait_for(lambda: (fleet.status().get("readyReplicas") or 0) == start, 90, "every pod ready")
    for wid in ids:
        wait_workflow_done(conductor_client, wid, 60)
    duration, gap, stream_for = 45.0, 8.0, 40.0
    stream_ids: list[str] = []
    for _ in range(start):
        stream_ids.append(conductor_client.start_workflow(wf, {"millis": int(duration * 1000)}))
        ids += [conductor_client.start_workflow(wf, {"millis": 4000}) for _ in range(slots - 1)]
    streaming = threading.Event()

    def stream() -> None:
        end = time.monotonic() + stream_for
        while time.monotonic() < end:
            time.sleep(gap)
            stream_ids.append(conductor_client.start_workflow(wf, {"millis": int(duration * 1000)}))
        streaming.set()

    feeder = threading.Thread(target=stream, daemon=True)
    feeder.start()
    time.sleep(2)
    holders = {t["workerId"] for t in (conductor_client.get_workflow(w)["tasks"][0] for w in stream_ids[:start])}
    print(f"spread: the first {start} long tasks are held by {len(holders)} pods")
    assert len(holders) >= start - 2, f"the long tasks are not spread: {len(holders)} pods hold them"

    # The last evaluation that still wanted the whole fleet starts the window; the fleet must be at the
    # utilization's size within the window plus two intervals after it.
    last_full = [time.monotonic()]
    shrunk_at: list[float] = []
    sizes: list[int] = []
    expected = math.ceil((start + stream_for / gap) / (slots * target / 100))  # at most 13 in flight: 5 pods

    def settled() -> bool:
        st = fleet.status()
        proposal = re.search(r"proposes (\d+)", st.get("lastDecisionReason") or "")
        if proposal and int(proposal.group(1)) >= start:
            last_full[0] = time.monotonic()
        n = fleet.replicas() or 0
        sizes.append(n)
        if n <= expected and not shrunk_at:
            shrunk_at.append(time.monotonic())
        return bool(shrunk_at)

    wait_for(settled, 60, f"the fleet down to about {expected}", interval=0.5)
    held = shrunk_at[0] - last_full[0]
    assert held <= window + 2 * INTERVAL + SLACK, f"shrank {held:.1f}s after the last full-size proposal"
    assert min(sizes) >= 1
    feeder.join(stream_for + 10)
    assert streaming.is_set()

    tasks = assert_ran_once(conductor_client, ids + stream_ids)
    stop.set()
    watcher.join(5)
    for t in tasks:
        # no retry (a task cut short by a leaving pod would fail and be retried) and no response timeout
        assert t["status"] == "COMPLETED" and t.get("retryCount", 0) == 0, (t["taskId"], t.get("reasonForIncompletion"))
    # Busy pods were among those that left, and finished what they held after their deletion began.
    drained = [t for t in tasks if (pod := t["outputData"].get("pod")) in leaving and t["endTime"] > leaving[pod]]
    assert leaving, "no pod left"
    assert drained, f"no task finished on a leaving pod ({len(leaving)} left)"
    print(f"spread: {len(tasks)} tasks, {len(leaving)} pods left, {len(drained)} tasks finished while leaving")


def test_tasks_waiting_out_a_callback_let_the_fleet_go_to_zero_and_come_back_when_due(
    operator, node, stack, kubectl, k8s_api, namespace, conductor_client
):
    task = unique("cwo_callback")
    conductor_client.register_task_defs([task_def(task, response_timeout=120)])
    wf = unique("cwo_callback_wf")
    inputs = {"millis": "${workflow.input.millis}", "callback_after": "${workflow.input.callback_after}"}
    conductor_client.register_workflow(linear_workflow(wf, [(task, "t", inputs)]))
    callback, cooldown = 30, 4
    manifest = worker(
        "waiter",
        task,
        stack.pod_conductor_url,
        {
            "minReplicas": 0,
            "maxReplicas": 3,
            "cooldownSeconds": cooldown,
            "scaleDown": {"stabilizationWindowSeconds": 4},
        },
    )
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest))
    fleet = Fleet("waiter", namespace, k8s_api, kubectl)
    wait_for(lambda: fleet.replicas() == 0, 30, "idle at zero")

    with ThreadPoolExecutor(4) as pool:
        ids = list(
            pool.map(
                lambda _: conductor_client.start_workflow(wf, {"millis": 200, "callback_after": callback}), range(12)
            )
        )
    wait_for(lambda: (fleet.replicas() or 0) > 0, INTERVAL + SLACK + 2, "activation by the new tasks")

    # Each task's first run hands it back for 30 s: Conductor's queue counts them all the while. The pod
    # takes them a few at a time, so they are due at different times; the first due one counts.
    def handed_back() -> list[dict[str, Any]] | None:
        tasks = [conductor_client.get_workflow(w)["tasks"][0] for w in ids]
        return tasks if all(t["status"] == "SCHEDULED" and t["callbackAfterSeconds"] for t in tasks) else None

    waiting = wait_for(handed_back, 30, "every task handed back with its callback", interval=0.5)
    first_due_ms = min(t["updateTime"] + 1000 * t["callbackAfterSeconds"] for t in waiting)
    wait_for(lambda: fleet.replicas() == 0, cooldown + 3 * INTERVAL + SLACK, "zero while they wait")
    assert time.time() * 1000 < first_due_ms - 5000, "the fleet must reach zero well before the tasks are due"
    st = wait_for(lambda: (s := fleet.status()).get("desiredReplicas") == 0 and s, INTERVAL + SLACK, "status at zero")
    assert st["totalQueueDepth"] == 12 and st["readyTasks"] == 0, st
    assert "12 waiting" in st["lastDecisionReason"], st["lastDecisionReason"]

    # Due: the fleet comes back (at most a polling interval early) and every workflow completes.
    until_due = first_due_ms / 1000 - time.time()
    wait_for(lambda: (fleet.replicas() or 0) > 0, until_due + INTERVAL + SLACK, "activation when they are due")
    early = first_due_ms / 1000 - time.time()
    assert early <= 2 * INTERVAL + SLACK, f"back {early:.1f}s before the first task was due"
    tasks = assert_ran_once(conductor_client, ids)
    for t in tasks:
        assert t["status"] == "COMPLETED" and t.get("retryCount", 0) == 0
        assert t["outputData"].get("slept_ms") == 200


def test_a_domain_fleet_at_zero_is_activated_by_its_domain_queue(
    operator, node, stack, kubectl, k8s_api, namespace, conductor_client
):
    task = unique("cwo_domain")
    conductor_client.register_task_defs([task_def(task)])
    wf = unique("cwo_domain_wf")
    conductor_client.register_workflow(linear_workflow(wf, [(task, "t", {"millis": "${workflow.input.millis}"})]))
    # A long polling interval: activation comes from the activation watch (about a second), not from it.
    auto = {"minReplicas": 0, "maxReplicas": 2, "pollingIntervalSeconds": 15}
    manifest = worker("blue", task, stack.pod_conductor_url, auto, task_extra={"domain": "blue"})
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest))
    fleet = Fleet("blue", namespace, k8s_api, kubectl)
    wait_for(lambda: fleet.replicas() == 0 and fleet.status().get("desiredReplicas") == 0, 30, "idle at zero")
    time.sleep(1)
    started = time.monotonic()
    wid = conductor_client.start_workflow(wf, {"millis": 100}, task_to_domain={task: "blue"})
    wait_for(lambda: (fleet.replicas() or 0) > 0, 5, "activation by the domain queue", interval=0.1)
    activated = time.monotonic() - started
    assert activated <= 3.0, f"activated {activated:.1f}s after the task (polling interval 15 s)"
    st = wait_for(lambda: (s := fleet.status()).get("desiredReplicas") and s, 5, "status after activation")
    assert f"blue:{task}" in (st.get("queueDepth") or {}), st
    wf_done = wait_workflow_done(conductor_client, wid, 60)
    assert wf_done["status"] == "COMPLETED" and wf_done["tasks"][0]["domain"] == "blue"
