"""An unmodified SDK worker made first-class by the Conductor sidecar (issue 20), on the real stack.

Each worker (tests/images/plain-{go,java,javascript}) is written as its SDK's README shows: 10 tasks at a
time, no domain, no metrics, no drain, nothing read from the operator's variables. The ConductorWorker gives it a
domain and a concurrency of 2; the operator process under test adds the sidecar. Checked from the server's
side (every task's workerId, start and end time, pollCount and retryCount):

- the domain and the concurrency hold, and the fleet's busy slots come from the sidecar;
- a rollout and a scale-in from 4 to 1 (maxReplicas lowered) during a load of 5 s tasks: every workflow completes and no task
  is polled twice (pollCount 1, retryCount 0): each pod left with empty hands;
- `kill -9` of the worker process mid-task: its tasks run again within 15 s (their response timeout is
  300 s), each once more;
- another pod's request to a pod's /drain is refused.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from kubernetes import client

from helpers import linear_workflow, task_def, unique, wait_for
from teststack import demo, images
from teststack.config import StackConfig

pytestmark = [pytest.mark.kube, pytest.mark.conductor]

DOMAIN = "blue"
CONCURRENCY = 2
RESPONSE_TIMEOUT = 300  # without the sidecar, a dead worker's task would wait this long


@pytest.fixture(scope="module", params=["go", "java", "javascript"])
def plain(request, stack: StackConfig, node) -> tuple[str, str]:
    """(sdk, image) of the plain worker of each SDK, built and loaded into the node."""
    return request.param, demo.load_example(stack, f"plain-{request.param}")


def register_sleep(conductor_client, prefix: str, response_timeout: int) -> tuple[str, str]:
    """A sleep task type and its one-task workflow (input.seconds): (task, workflow)."""
    task = unique(prefix).replace("_", "-")
    conductor_client.register_task_defs([task_def(task, response_timeout=response_timeout)])
    workflow = f"wf-{task}"
    conductor_client.register_workflow(
        linear_workflow(workflow, [(task, "sleep", {"seconds": "${workflow.input.seconds}"})])
    )
    return task, workflow


@pytest.fixture
def sleep_task(conductor_client) -> tuple[str, str]:
    return register_sleep(conductor_client, "plain", RESPONSE_TIMEOUT)


def manifest(name: str, task: str, plain: tuple[str, str], url: str, replicas: int) -> dict[str, Any]:
    sdk, image = plain
    return {
        "apiVersion": "conductor.io/v1alpha1",
        "kind": "ConductorWorker",
        "metadata": {"name": name},
        "spec": {
            "conductor": {"serverUrl": url},
            "sdk": sdk,
            "imagePullPolicy": "Never",
            "container": {"image": image, "env": [{"name": "PLAIN_TASK", "value": task}]},
            "metrics": {"enabled": False},  # the worker serves none: the sidecar's are the pod's
            "sidecar": {"image": images.RUNTIME_IMAGE},
            "tasks": [{"name": task, "domain": DOMAIN, "concurrency": CONCURRENCY}],
            # The autoscaler reads the pods' busy slots; min = max pins the size each test wants.
            "autoscaling": {
                "enabled": True,
                "minReplicas": replicas,
                "maxReplicas": replicas,
                "pollingIntervalSeconds": 2,
            },
            "terminationGracePeriodSeconds": 40,
        },
    }


class Fleet:
    def __init__(self, name: str, namespace: str, k8s_api, kubectl) -> None:
        self.name, self.namespace, self.kubectl = name, namespace, kubectl
        self.core = client.CoreV1Api(k8s_api)
        self.custom = client.CustomObjectsApi(k8s_api)

    def pods(self, ready_only: bool = True) -> list[client.V1Pod]:
        found = self.core.list_namespaced_pod(
            self.namespace, label_selector=f"app.kubernetes.io/instance={self.name}"
        ).items
        if not ready_only:
            return found
        return [
            p
            for p in found
            if p.metadata.deletion_timestamp is None
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        ]

    def patch(self, spec: dict[str, Any]) -> None:
        self.kubectl(
            "patch",
            "conductorworker",
            self.name,
            "-n",
            self.namespace,
            "--type",
            "merge",
            "-p",
            json.dumps({"spec": spec}),
        )

    def status(self) -> dict:
        cw = self.custom.get_namespaced_custom_object(
            "conductor.io", "v1alpha1", self.namespace, "conductorworkers", self.name
        )
        return cw.get("status") or {}


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def deploy(kubectl, k8s_api, namespace: str, cw: dict[str, Any]) -> Fleet:
    """Apply the ConductorWorker and wait until all its pods are ready (min = max replicas)."""
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(cw))
    fleet = Fleet(cw["metadata"]["name"], namespace, k8s_api, kubectl)
    replicas = cw["spec"]["autoscaling"]["minReplicas"]
    wait_for(lambda: len(fleet.pods()) == replicas, 90, f"{replicas} ready pod(s)")
    return fleet


def start(conductor_client, workflow: str, task: str, count: int, seconds: float) -> list[str]:
    return [
        conductor_client.start_workflow(workflow, {"seconds": seconds}, task_to_domain={task: DOMAIN})
        for _ in range(count)
    ]


def finished(conductor_client, ids: list[str], timeout: float) -> list[dict]:
    done: dict[str, dict] = {}

    def all_done() -> bool:
        for wf_id in ids:
            if wf_id not in done:
                wf = conductor_client.get_workflow(wf_id)
                if wf["status"] != "RUNNING":
                    done[wf_id] = wf
        return len(done) == len(ids)

    wait_for(all_done, timeout, f"{len(ids)} workflows finished", interval=1)
    return [done[i] for i in ids]


def the_task(wf: dict) -> dict:
    (task,) = [t for t in wf["tasks"] if t["referenceTaskName"] == "sleep"]
    return task


def max_overlap(tasks: list[dict]) -> dict[str, int]:
    """The most tasks each worker held at once, from the server's start and end times."""
    edges: dict[str, list[tuple[int, int]]] = {}
    for t in tasks:
        edges.setdefault(t["workerId"], []).extend([(t["startTime"], 1), (t["endTime"], -1)])
    peak = {}
    for worker, points in edges.items():
        now = top = 0
        for _, step in sorted(points, key=lambda p: (p[0], p[1])):  # an end before a start at the same ms
            now += step
            top = max(top, now)
        peak[worker] = top
    return peak


def assert_each_ran_once(workflows: list[dict]) -> list[dict]:
    tasks = [the_task(wf) for wf in workflows]
    for wf, task in zip(workflows, tasks, strict=True):
        assert wf["status"] == "COMPLETED", (wf["workflowId"], wf["status"], wf.get("reasonForIncompletion"))
        assert (task["status"], task["retryCount"], task["pollCount"]) == ("COMPLETED", 0, 1), {
            k: task.get(k) for k in ("taskId", "status", "retryCount", "pollCount", "workerId", "reasonForIncompletion")
        }
        assert task["domain"] == DOMAIN
    return tasks


def test_domain_and_concurrency_hold_and_a_rollout_loses_nothing(
    plain, sleep_task, operator, namespace, k8s_api, kubectl, conductor_client, stack
):
    task, workflow = sleep_task
    fleet = deploy(kubectl, k8s_api, namespace, manifest(unique_name("plain"), task, plain, stack.pod_conductor_url, 2))

    ids = start(conductor_client, workflow, task, 16, 5)
    time.sleep(4)
    busy = wait_for(lambda: fleet.status().get("busySlots"), 15, "busy slots from the sidecars")
    assert 0 < busy <= 2 * CONCURRENCY
    old = {p.metadata.name for p in fleet.pods()}
    fleet.patch({"template": {"env": [{"name": "ROLLOUT", "value": "1"}]}})
    workflows = finished(conductor_client, ids, 180)
    tasks = assert_each_ran_once(workflows)
    peaks = max_overlap(tasks)
    assert max(peaks.values()) <= CONCURRENCY, peaks  # the worker asked for 10 at a time
    assert old & set(peaks), "the old pods ran tasks before the rollout"
    wait_for(lambda: not ({p.metadata.name for p in fleet.pods(ready_only=False)} & old), 90, "the old pods gone")
    metrics = [c for c in fleet.status().get("conditions") or [] if c["type"] == "MetricsAvailable"]
    assert metrics and metrics[0]["status"] == "True", metrics

    # Another pod may not drain this one: its /drain answers the pod and its node only.
    target = fleet.pods()[0].status.pod_ip
    probe = f"probe-{uuid.uuid4().hex[:6]}"
    code = (
        "import urllib.request, urllib.error\n"
        f"try: urllib.request.urlopen('http://{target}:7701/drain', timeout=5); print('status 200')\n"
        "except urllib.error.HTTPError as e: print('status', e.code)\n"
    )
    kubectl(
        "run", probe, "-n", namespace, "--image", images.RUNTIME_IMAGE, "--image-pull-policy", "Never",
        "--restart", "Never", "--command", "--", "python", "-c", code,
    )  # fmt: skip
    wait_for(
        lambda: kubectl("get", "pod", probe, "-n", namespace, "-o", "jsonpath={.status.phase}").stdout == "Succeeded",
        60,
        "the probe pod",
    )
    assert kubectl("logs", probe, "-n", namespace).stdout.strip() == "status 403"
    ok = start(conductor_client, workflow, task, 2, 0.1)  # the pod still takes work: it was not drained
    assert_each_ran_once(finished(conductor_client, ok, 60))


def test_scale_in_from_4_to_1_under_load_loses_nothing(
    plain, sleep_task, operator, namespace, k8s_api, kubectl, conductor_client, stack
):
    task, workflow = sleep_task
    fleet = deploy(kubectl, k8s_api, namespace, manifest(unique_name("plain"), task, plain, stack.pod_conductor_url, 4))
    # 12 tasks for 8 slots: every pod holds tasks when it is told to leave, and the one left has a
    # backlog of 4 (a longer backlog only adds minutes of 2-slot work after the scale-in)
    ids = start(conductor_client, workflow, task, 12, 5)
    wait_for(lambda: (fleet.status().get("busySlots") or 0) >= 6, 20, "most slots busy")
    fleet.patch({"autoscaling": {"minReplicas": 1, "maxReplicas": 1}})  # maxReplicas holds at once
    wait_for(lambda: len(fleet.pods(ready_only=False)) == 1, 120, "one pod left")
    workflows = finished(conductor_client, ids, 180)
    tasks = assert_each_ran_once(workflows)
    assert len({t["workerId"] for t in tasks}) == 4  # the three that left had tasks in hand
    assert max(max_overlap(tasks).values()) <= CONCURRENCY


KILL = """
import os, signal
# The worker container's first process: parent 0 (outside the shared PID namespace), not the pause
# process (PID 1), not the sidecar, not this exec.
for pid in os.listdir('/proc'):
    if pid.isdigit() and int(pid) not in (1, os.getpid()):
        try:
            stat = open(f'/proc/{pid}/stat').read()
            cmd = open(f'/proc/{pid}/cmdline', 'rb').read()
        except OSError:
            continue
        if stat[stat.rfind(')') + 2 :].split()[1] == '0' and b'conductor-worker' not in cmd:
            os.kill(int(pid), signal.SIGKILL)
            print(pid, cmd)
"""


def test_a_killed_workers_tasks_run_again_within_15_s_each_once(
    plain, sleep_task, operator, namespace, k8s_api, kubectl, conductor_client, stack
):
    task, workflow = sleep_task
    fleet = deploy(kubectl, k8s_api, namespace, manifest(unique_name("plain"), task, plain, stack.pod_conductor_url, 1))
    (pod,) = fleet.pods()
    ids = start(conductor_client, workflow, task, CONCURRENCY, 8)
    wait_for(
        lambda: all(the_task(conductor_client.get_workflow(i))["status"] == "IN_PROGRESS" for i in ids),
        30,
        "both tasks taken",
    )
    time.sleep(1)
    killed = kubectl("exec", pod.metadata.name, "-n", namespace, "-c", "conductor-sidecar", "--", "python", "-c", KILL)
    assert killed.stdout.strip(), "no worker process found to kill"
    at = time.time()
    workflows = finished(conductor_client, ids, 60)
    for wf in workflows:
        t = the_task(wf)
        assert wf["status"] == "COMPLETED" and t["retryCount"] == 0, (wf["status"], t.get("reasonForIncompletion"))
        assert t["pollCount"] == 2, t["pollCount"]  # handed back once, run once more
        # run again within 15 s of the kill: its second run (8 s) ended within 15 + 8 s (+ 2 s of reads)
        assert t["endTime"] / 1000 - at <= 15 + 8 + 2, t["endTime"] / 1000 - at
    restarts = fleet.pods()[0].status.container_statuses
    assert any(c.name == "worker" and c.restart_count >= 1 for c in restarts)


@pytest.fixture(scope="module")
def plain_go(stack: StackConfig, node) -> tuple[str, str]:
    return "go", demo.load_example(stack, "plain-go")


def test_the_sidecar_extends_the_lease_of_a_task_longer_than_its_response_timeout(
    plain_go, conductor_client, operator, namespace, k8s_api, kubectl, stack
):
    """A 14 s task whose responseTimeoutSeconds is 4. The sidecar sends extendLease every 2 s (half the
    timeout); the server then refreshes only the task's updateTime (the clock of its response timeout),
    seen moving while the worker runs, and the task completes, polled once, with no retry used."""
    task, workflow = register_sleep(conductor_client, "lease", 4)
    deploy(kubectl, k8s_api, namespace, manifest(unique_name("lease"), task, plain_go, stack.pod_conductor_url, 1))
    (wf_id,) = start(conductor_client, workflow, task, 1, 14)
    running = wait_for(
        lambda: (t := the_task(conductor_client.get_workflow(wf_id)))["status"] == "IN_PROGRESS" and t,
        30,
        "the task taken",
    )
    time.sleep(6)
    later = conductor_client.get_task(running["taskId"])
    assert later["status"] == "IN_PROGRESS" and later["updateTime"] > running["updateTime"], (running, later)
    (wf,) = finished(conductor_client, [wf_id], 60)
    t = the_task(wf)
    assert (wf["status"], t["status"], t["pollCount"], t["retryCount"]) == ("COMPLETED", "COMPLETED", 1, 0), t
