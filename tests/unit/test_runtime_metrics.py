"""The metric names: the seed's (read by the operator's scraper) and the Conductor SDKs' shared set."""

from __future__ import annotations

import json
import types

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from test_runner import FakeClient, _raw, _runner, _wait_idle

from worker_runtime.client import ConductorClient, ConductorError


def _families(runner) -> dict[str, set[tuple[str, frozenset]]]:
    text = generate_latest(runner.metrics.registry).decode()
    out: dict[str, set[tuple[str, frozenset]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, set()).add(frozenset(sample.labels.items()))
    return out


def test_a_task_run_exposes_both_name_sets_with_the_sdk_labels():
    client = FakeClient()
    runner = _runner(lambda: {"y": 1}, client)
    runner._accept(_raw())
    client.wait_for("accepted", 1)
    _wait_idle(runner)
    runner.metrics.poll.labels(taskType="work").inc()  # as the poll loop does
    seen = _families(runner)
    task = ("taskType", "work")
    # the seed's names, which the operator's scraper and existing dashboards read
    for name in ("worker_busy_slots", "worker_slot_capacity", "task_paused", "task_poll_counter_total"):
        assert frozenset({task}) in seen[name], name
    assert frozenset({task, ("status", "COMPLETED")}) in seen["task_execute_counter_total"]
    # the SDKs' names and labels
    for name in ("task_execution_started_total", "active_workers", "task_result_size_bytes_count"):
        assert frozenset({task}) in seen[name], name
    for name in ("task_execute_time_seconds_count", "task_update_time_seconds_count"):
        assert frozenset({task, ("status", "SUCCESS")}) in seen[name], name


def test_the_sdk_poll_counter_and_timing_follow_the_poll_loop():
    from worker_runtime.handler import TaskHandler
    from worker_runtime.worker import WorkerSpec

    client = FakeClient(polls=[[_raw("a")]])
    handler = TaskHandler([WorkerSpec("work", lambda: {})], client=client)
    with handler:
        client.wait_for("accepted", 1)
        with client._cond:
            assert client._cond.wait_for(lambda: len(client.asked) >= 2, 10)
    get = handler.metrics.registry.get_sample_value
    polls = get("task_poll_total", {"taskType": "work"})
    assert polls >= 2 and polls == get("task_poll_counter_total", {"taskType": "work"})
    assert get("task_poll_time_seconds_count", {"taskType": "work", "status": "SUCCESS"}) >= 1
    assert get("thread_uncaught_exceptions_total", {"exception": "KeyboardInterrupt"}) is None


class _Pool:
    """Stands in for the client's urllib3 pool: answers every request with the given status."""

    def __init__(self, status: int) -> None:
        self.status = status

    def urlopen(self, method, url, **kwargs):
        return types.SimpleNamespace(status=self.status, data=json.dumps([]).encode(), headers={})


def test_api_requests_are_timed_by_uri_template_and_status():
    from worker_runtime.metrics import WorkerMetrics

    metrics = WorkerMetrics()
    client = ConductorClient("http://127.0.0.1:9/api")
    client.observers.append(metrics.observe_api_request)
    client.pool = _Pool(200)
    client.poll_batch("work", "pod", 1, 100)
    client.pool = _Pool(503)
    with pytest.raises(ConductorError):
        client.get_task("t-123")
    get = metrics.registry.get_sample_value
    poll = {"method": "GET", "uri": "/tasks/poll/batch/{taskType}", "status": "200"}
    assert get("http_api_client_request_seconds_count", poll) == 1
    assert (
        get("http_api_client_request_seconds_count", {"method": "GET", "uri": "/tasks/{taskId}", "status": "503"}) == 1
    )


def test_a_client_shared_by_handlers_in_turn_times_requests_for_the_running_one_only():
    from worker_runtime.handler import TaskHandler
    from worker_runtime.worker import WorkerSpec

    client = ConductorClient("http://127.0.0.1:9/api")
    client.pool = _Pool(200)
    first = TaskHandler([WorkerSpec("work", lambda: {})], client=client, overrides={"paused": True})
    with first:
        assert client.observers == [first.metrics.observe_api_request]
    second = TaskHandler([WorkerSpec("work", lambda: {})], client=client, overrides={"paused": True})
    with second:
        client.get_task("t1")
    assert client.observers == []
    labels = {"method": "GET", "uri": "/tasks/{taskId}", "status": "200"}
    assert second.metrics.registry.get_sample_value("http_api_client_request_seconds_count", labels) == 1
    assert first.metrics.registry.get_sample_value("http_api_client_request_seconds_count", labels) is None


def test_busy_time_integrates_the_busy_slots_over_time():
    from worker_runtime.metrics import BusyTime

    now = [100.0]
    busy = BusyTime(clock=lambda: now[0])
    busy.add(2)  # two slots busy from t=100
    now[0] = 103.0
    busy.add(-1)  # one from t=103
    now[0] = 104.5
    assert busy.seconds() == pytest.approx(2 * 3 + 1 * 1.5)
    busy.set(0)
    now[0] = 200.0
    assert busy.seconds() == pytest.approx(7.5)  # idle time adds nothing
    busy.add(-5)  # never below zero
    now[0] = 210.0
    assert busy.seconds() == pytest.approx(7.5)


def test_a_task_run_counts_its_slot_seconds_and_the_page_exposes_them():
    import threading

    release = threading.Event()
    client = FakeClient()
    runner = _runner(lambda: release.wait(5) and {}, client)
    runner._accept(_raw())
    get = runner.metrics.registry.get_sample_value
    seen: list[float] = []
    for _ in range(200):  # the counter grows while the slot is held, read at scrape time
        seen.append(get("worker_busy_slot_seconds_total", {"taskType": "work"}))
        if seen[-1] > seen[0]:
            break
        release.wait(0.01)
    assert seen[-1] > seen[0], "the slot-seconds counter did not move while a task ran"
    release.set()
    client.wait_for("accepted", 1)
    _wait_idle(runner)
    held = get("worker_busy_slot_seconds_total", {"taskType": "work"})
    assert get("worker_busy_slots", {"taskType": "work"}) == 0
    release.wait(0.05)
    assert get("worker_busy_slot_seconds_total", {"taskType": "work"}) == held  # idle: it stands still
