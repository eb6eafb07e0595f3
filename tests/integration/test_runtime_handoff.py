"""The update-v2 hand-over on the real Conductor server: 2,000 tasks in the suite (CWO_HANDOFF_TASKS=20000
for the proof run whose figures bench/README.md gives, about 7 minutes) through pods
that chain tasks with update-v2 while pods are stopped and started under load, so tasks are handed
over to pods that are stopping. None may be lost or run twice, and a task handed to a pod that cannot
take it must be given back at once: the server marks a handed-over task IN_PROGRESS and takes it off
the queue, so a task a stopping pod kept would wait for its response timeout (600 s here).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from helpers import linear_workflow, task_def, unique, wait_for
from worker_runtime import ConductorClient, TaskHandler
from worker_runtime.model import Task
from worker_runtime.worker import WorkerSpec

TASKS = int(os.environ.get("CWO_HANDOFF_TASKS", "2000"))
SLOTS = 10
POLL_TIMEOUT_MS = 100
GIVEN_BACK_BOUND_MS = 30_000  # 20x below the 600 s response timeout a kept task would wait for (the wall
# clock of a loaded 2-core machine stretched a give-back to 12.7 s once)
PODS_STOPPED = 8  # a pod is stopped (and a new one started) every TASKS / (PODS_STOPPED + 1) tasks


class _Record:
    """Every execution: task id -> (pod, ms between the server handing it out and its start)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[str, list[tuple[str, float, int]]] = {}

    def worker(self, pod: str):
        def run(task: Task) -> dict:
            waited = time.time() * 1000 - float(task.raw["startTime"])
            with self.lock:
                self.runs.setdefault(task.task_id, []).append((pod, waited, task.poll_count))
            return {"pod": pod}

        return run

    def count(self) -> int:
        with self.lock:
            return len(self.runs)


def _running(client, wf: str) -> list[str]:
    return client.request("GET", f"/workflow/running/{wf}", params={"version": 1}).json()


def _describe(client, ids: list[str]) -> list[str]:
    """Each stuck workflow's task: status, worker, poll count."""
    out = []
    for wid in ids[:10]:
        task = client.get_workflow(wid)["tasks"][0]
        out.append(f"{wid}: task {task['status']} by {task.get('workerId')} pollCount {task.get('pollCount')}")
    return out


def _pod(record: _Record, name: str, task: str, url: str) -> TaskHandler:
    """A pod: its own client (connection pool) and worker id."""
    overrides = {"thread_count": SLOTS, "poll_timeout": POLL_TIMEOUT_MS, "worker_id": name}
    spec = WorkerSpec(task, record.worker(name))
    return TaskHandler([spec], client=ConductorClient(url), overrides=overrides, update_v2=True).start()


def test_tasks_handed_over_by_update_v2_are_never_lost_run_twice_or_left_waiting(conductor_client):
    task, wf = unique("handoff"), unique("handoff_wf")
    conductor_client.register_task_defs([task_def(task, response_timeout=600)])
    conductor_client.register_workflow(linear_workflow(wf, [(task, "t", {})]))
    record = _Record()
    url = conductor_client.base_url
    pods = [_pod(record, f"pod{i}", task, url) for i in range(2)]
    stopped: list[TaskHandler] = []
    ids: list[str] = []

    def start_all() -> None:
        with ThreadPoolExecutor(8) as starters:
            ids.extend(starters.map(lambda _: conductor_client.start_workflow(wf, {}), range(TASKS)))

    starter = threading.Thread(target=start_all)
    starter.start()  # the pods run tasks while the workflows are started, and are stopped under load
    try:
        for k in range(PODS_STOPPED):
            share = TASKS * (k + 1) // (PODS_STOPPED + 1)
            wait_for(lambda share=share: record.count() >= share, 600, f"{share} tasks run", interval=0.05)
            oldest = pods.pop(0)
            oldest.stop(grace=10)
            stopped.append(oldest)
            pods.append(_pod(record, f"pod{k + 2}", task, url))
        starter.join()
        wait_for(lambda: record.count() >= TASKS, 600, f"{TASKS} tasks run", interval=1)
        running = _running(conductor_client, wf)
        give_up = time.monotonic() + 30  # the last decides
        while running and time.monotonic() < give_up:
            time.sleep(1)
            running = _running(conductor_client, wf)
    finally:
        for pod in pods:
            pod.stop(grace=10)
        starter.join()
    handlers = stopped + pods
    released = sum(
        h.metrics.registry.get_sample_value("task_released_total", {"taskType": task}) or 0 for h in handlers
    )
    handed = sum(
        h.metrics.registry.get_sample_value("task_handed_over_total", {"taskType": task}) or 0 for h in handlers
    )
    waits = sorted(w for runs in record.runs.values() for _, w, _ in runs)
    twice = {t: runs for t, runs in record.runs.items() if len(runs) > 1}
    requeued = [runs[0] for runs in record.runs.values() if runs[0][2] > 1]
    print(
        f"\n{TASKS} tasks: {handed:.0f} handed over by update-v2, {released:.0f} given back by stopping pods"
        f" ({len(requeued)} ran after a give-back); wait in a pod's hands ms p50 {waits[len(waits) // 2]:.1f}"
        f" p99 {waits[int(len(waits) * 0.99)]:.1f} max {waits[-1]:.1f}"
        f" (given back: max {max((w for _, w, _ in requeued), default=0):.1f})"
    )
    assert len(ids) == TASKS
    assert len(record.runs) == TASKS, "a task was lost"
    assert not twice, f"tasks run twice: {list(twice.items())[:5]}"
    assert handed > TASKS / 2, "update-v2 handed over too few tasks to prove anything"
    assert released > 0, "no pod was handed a task while stopping: the give-back was not exercised"
    # Given back at once, a task runs again within moments, never after its 600 s response timeout;
    # the wall-clock figures (printed) suffer from the shared machine's load, so the bound is loose.
    assert max(w for _, w, _ in requeued) < GIVEN_BACK_BOUND_MS
    assert waits[len(waits) // 2] <= POLL_TIMEOUT_MS
    # With the server's workflow-execution lock on (the stack runs it), a task completed through
    # update-v2 cannot race its workflow's first decide: no workflow is left RUNNING (39 of 20,000 were
    # without the lock, each with its task COMPLETED).
    assert running == [], f"workflows left RUNNING: {_describe(conductor_client, running)}"
