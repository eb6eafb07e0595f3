"""The runtime under faults on the real Conductor server: injected 5xx/resets, a server restart, bad input.

Every result must arrive: workflows COMPLETED with exactly the function's output, no task executed
twice by the runtime, nothing counted as dropped.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import requests

from helpers import linear_workflow, task_def, unique, wait_for, wait_workflow_done
from teststack import conductor
from teststack.config import StackConfig
from teststack.faultproxy import FaultProxy, Rule
from worker_runtime import ConductorClient, TaskHandler, get_task_context
from worker_runtime.worker import WorkerSpec


@pytest.fixture
def restartable(stack: StackConfig, conductor_url: str) -> StackConfig:
    """The session's Conductor server: Redis-backed, so its state survives being killed and restarted
    (a second server would cost another JVM start; the test restarts this one and waits for it)."""
    return stack


class Ledger:
    """The worker function's own record of what it executed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.task_ids: Counter[str] = Counter()

    def record(self) -> None:
        with self.lock:
            self.task_ids[get_task_context().task_id] += 1


def _start_many(client: ConductorClient, wf: str, n: int) -> list[str]:
    return [client.start_workflow(wf, {"x": i}) for i in range(n)]


def _all_done(client: ConductorClient, ids: list[str], timeout: float) -> list[dict]:
    pending, done = list(ids), {}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for wf_id in pending[:100]:
            w = client.get_workflow(wf_id)
            if w["status"] != "RUNNING":
                done[wf_id] = w
        pending = [i for i in pending if i not in done]
        if pending:
            time.sleep(0.5)
    assert not pending, f"{len(pending)} workflows unfinished after {timeout}s, e.g. {pending[:3]}"
    return [done[i] for i in ids]


def test_2000_workflows_complete_exactly_through_20_percent_5xx_and_resets(conductor_client, conductor_url):
    name, wf = unique("faulty"), unique("wf")
    conductor_client.register_task_defs([task_def(name, retry_count=5, response_timeout=5)])
    conductor_client.register_workflow(
        linear_workflow(wf, [(name, "t", {"x": "${workflow.input.x}"})], output={"y": "${t.output.y}"})
    )
    ledger = Ledger()

    def double(x: int) -> dict:
        ledger.record()
        return {"y": 2 * x}

    proxy = FaultProxy(upstream=conductor_url.removesuffix("/api")).start()
    # Polls: faults before the server acts. A poll answer lost after the server handed the task out
    # leaves it IN_PROGRESS until the server's response timeout, which Conductor OSS 3.21.14 in
    # memory did not enforce within 7 minutes here; that is the server's job, not the runtime's.
    # Updates: every fault, including the reply lost after the server applied the result.
    proxy.set_rules(
        Rule(path=r"^/api/tasks/poll/batch/", error5xx=0.10, reset_before=0.10),
        # results: POST /api/tasks, or /api/tasks/update-v2 (whose lost reply also loses the next task it
        # handed out: the server's response timeout hands that one out again)
        Rule(
            path=r"^/api/tasks(/update-v2)?$",
            methods=("POST",),
            error5xx=0.10,
            reset_before=0.04,
            reset_after=0.04,
            truncate=0.02,
        ),
    )
    ids = _start_many(conductor_client, wf, 2000)
    handler = TaskHandler(
        [WorkerSpec(name, double)],
        client=ConductorClient(f"{proxy.url}/api", read_timeout=10),
        overrides={"thread_count": 20, "poll_timeout": 200},
    )
    try:
        with handler:
            finished = _all_done(conductor_client, ids, timeout=300)
    finally:
        proxy.stop()
    assert [w["status"] for w in finished] == ["COMPLETED"] * 2000
    assert [w["output"]["y"] for w in finished] == [2 * i for i in range(2000)]
    duplicates = {t: n for t, n in ledger.task_ids.items() if n > 1}
    assert duplicates == {}, "the runtime executed a task twice"
    attempts = sum(len(w["tasks"]) for w in finished)
    redelivered = attempts - 2000  # lost poll responses: the server timed them out and retried
    assert sum(ledger.task_ids.values()) <= attempts
    m = handler.metrics
    dropped = m.result_dropped.labels(taskType=name)._value.get()
    assert dropped == 0
    assert proxy.injected["error5xx"] > 200 and proxy.injected["reset_after"] > 40
    print(
        f"\nfaults injected {dict(proxy.injected)}; executions {sum(ledger.task_ids.values())}; "
        f"server re-deliveries {redelivered}; results lost 0"
    )


def _ready(port: int) -> int:
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code
    except requests.RequestException:
        return 0


def test_server_killed_and_restarted_mid_run_the_runtime_reconnects_and_finishes(restartable):
    client = ConductorClient(restartable.conductor_url)
    name, wf = unique("outage"), unique("wf")
    client.register_task_defs([task_def(name, retry_count=2, response_timeout=60)])
    client.register_workflow(
        linear_workflow(wf, [(name, "t", {"x": "${workflow.input.x}"})], output={"y": "${t.output.y}"})
    )
    ledger = Ledger()

    def slow_double(x: int) -> dict:
        ledger.record()
        time.sleep(0.02)
        return {"y": 2 * x}

    ids = _start_many(client, wf, 400)
    handler = TaskHandler(
        [WorkerSpec(name, slow_double)],
        client=ConductorClient(restartable.conductor_url, read_timeout=10),
        overrides={"thread_count": 4},
        metrics_port=0,
        metrics_host="127.0.0.1",
    )
    with handler:
        port = handler.health.port
        wait_for(lambda: _ready(port) == 200, 20, "ready")
        wait_for(lambda: sum(ledger.task_ids.values()) >= 100, 60, "a quarter of the work done")
        conductor.kill(restartable)
        wait_for(lambda: _ready(port) == 503, 30, "/readyz to report the outage")
        time.sleep(3)  # results in flight keep retrying against a dead server
        conductor.start(restartable)
        wait_for(lambda: _ready(port) == 200, 60, "/readyz to recover")
        finished = _all_done(client, ids, timeout=180)
    assert [w["status"] for w in finished] == ["COMPLETED"] * 400
    assert [w["output"]["y"] for w in finished] == [2 * i for i in range(400)]
    assert handler.metrics.result_dropped.labels(taskType=name)._value.get() == 0
    # the outage was felt: by a poll, or by result updates when every slot was busy reporting
    m = handler.metrics
    felt = m.poll_error.labels(taskType=name, exception="ConnectionError")._value.get()
    felt += m.update_error.labels(taskType=name, exception="ConnectionError")._value.get()
    assert felt >= 1


def test_huge_output_fails_the_task_with_the_servers_reason_and_the_worker_keeps_running(conductor_client):
    name, wf = unique("huge"), unique("wf")
    conductor_client.register_task_defs([task_def(name, retry_count=0)])
    conductor_client.register_workflow(linear_workflow(wf, [(name, "t", {"mb": "${workflow.input.mb}"})]))

    def blob(mb: int) -> dict:
        return {"blob": "x" * (mb * 1024 * 1024)}

    with TaskHandler([WorkerSpec(name, blob)], client=conductor_client):
        big = wait_workflow_done(conductor_client, conductor_client.start_workflow(wf, {"mb": 25}), timeout=60)
        small = wait_workflow_done(conductor_client, conductor_client.start_workflow(wf, {"mb": 0}), timeout=30)
    assert big["status"] == "FAILED"
    reason = big["tasks"][0]["reasonForIncompletion"]
    assert reason and ("size" in reason.lower() or "payload" in reason.lower() or "server refused" in reason), reason
    assert small["status"] == "COMPLETED"
