"""The `conductor-worker` CLI as a real process: graceful drain on SIGTERM, and /metrics during a run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from helpers import linear_workflow, task_def, unique, wait_for, wait_workflow_done

HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_worker(conductor_url: str, task: str, port: int, *extra: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "CONDUCTOR_SERVER_URL": conductor_url,
        "TEST_SLOW_TASK": task,
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("conductor-worker")),
            "run",
            "--path",
            str(HERE),
            "--module",
            "slow_workers",
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            str(port),
            *extra,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(lambda: proc.poll() is not None or _ready(port), 20, "the worker's /readyz")
    assert proc.poll() is None, proc.communicate()[0]
    return proc


def _ready(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).ok
    except requests.ConnectionError:
        return False


def _metrics(port: int) -> dict[tuple[str, frozenset], float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_sigterm_with_20_tasks_in_flight_reports_all_and_polls_none_after(conductor_client, conductor_url):
    task, wf = unique("slow"), unique("wf")
    conductor_client.register_task_defs([task_def(task)])
    conductor_client.register_workflow(linear_workflow(wf, [(task, "s", {"millis": "${workflow.input.ms}"})]))
    port = _free_port()
    proc = _start_worker(conductor_url, task, port, "--thread-count", "20", "--drain-timeout", "20")
    try:
        ids = [conductor_client.start_workflow(wf, {"ms": 3000}) for _ in range(20)]
        labels = frozenset({"taskType": task}.items())
        wait_for(lambda: _metrics(port).get(("worker_busy_slots", labels)) == 20, 15, "20 busy slots")
        polls_before = _metrics(port)[("task_poll_counter_total", labels)]
        extra = [conductor_client.start_workflow(wf, {"ms": 10}) for _ in range(5)]  # must not be polled
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "drained" in out
    finished = [wait_workflow_done(conductor_client, i, timeout=10) for i in ids]
    assert [w["status"] for w in finished] == ["COMPLETED"] * 20
    assert all(w["tasks"][0]["outputData"]["slept"] == 3000 for w in finished)
    for wf_id in extra:  # queued after the signal: untouched, still waiting for a worker
        t = conductor_client.get_workflow(wf_id)["tasks"][0]
        assert (t["status"], t["pollCount"]) == ("SCHEDULED", 0)
    assert conductor_client.queue_size(task) == 5
    assert polls_before > 0


def test_metrics_endpoint_exposes_every_metric_with_sane_values(conductor_client, conductor_url):
    task, wf = unique("metered"), unique("wf")
    conductor_client.register_task_defs([task_def(task)])
    conductor_client.register_workflow(linear_workflow(wf, [(task, "s", {"millis": "${workflow.input.ms}"})]))
    port = _free_port()
    proc = _start_worker(conductor_url, task, port, "--thread-count", "4")
    try:
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok
        ids = [conductor_client.start_workflow(wf, {"ms": 300}) for _ in range(12)]
        labels = frozenset({"taskType": task}.items())
        busy = wait_for(lambda: _metrics(port).get(("worker_busy_slots", labels)), 10, "busy slots")
        assert 1 <= busy <= 4
        for wf_id in ids:
            assert wait_workflow_done(conductor_client, wf_id)["status"] == "COMPLETED"
        m = wait_for(lambda: (v := _metrics(port))[("worker_busy_slots", labels)] == 0 and v, 5, "idle")
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()

    def value(name: str, **extra: str) -> float:
        return m[(name, frozenset({"taskType": task, **extra}.items()))]

    assert value("worker_slot_capacity") == 4
    assert value("task_paused") == 0
    assert value("task_polled_total") == 12
    assert value("task_execute_counter_total", status="COMPLETED") == 12
    assert value("task_poll_counter_total") >= value("task_poll_empty_total") + 3  # 12 tasks, <= 4 per poll
    assert value("task_poll_empty_total") >= 1
    assert value("task_execute_time_seconds_count", status="SUCCESS") == 12
    assert 12 * 0.3 <= value("task_execute_time_seconds_sum", status="SUCCESS") < 12 * 1.0
    # the poll latency histogram has the SDKs' status label: every poll here succeeded
    polls_timed = value("task_poll_time_seconds_count", status="SUCCESS")
    assert polls_timed == value("task_poll_counter_total") or (
        polls_timed == value("task_poll_counter_total") - 1  # one poll in flight
    )
    assert value("task_result_size_bytes_count") == 12
    names = {name for name, _ in m}
    for family in ("task_poll_error_total", "task_execute_error_total", "task_update_error_total"):
        assert not any(n == family for n in names) or all(v == 0 for (n, _), v in m.items() if n == family)


def test_tasks_overrunning_the_drain_timeout_are_reported_failed_for_retry(conductor_client, conductor_url):
    task, wf = unique("overrun"), unique("wf")
    conductor_client.register_task_defs([task_def(task, retry_count=1)])
    conductor_client.register_workflow(linear_workflow(wf, [(task, "s", {"millis": "${workflow.input.ms}"})]))
    port = _free_port()
    proc = _start_worker(conductor_url, task, port, "--thread-count", "3", "--drain-timeout", "2")
    try:
        ids = [conductor_client.start_workflow(wf, {"ms": 60_000}) for _ in range(3)]
        labels = frozenset({"taskType": task}.items())
        wait_for(lambda: _metrics(port).get(("worker_busy_slots", labels)) == 3, 15, "3 busy slots")
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert took < 8, f"exit took {took:.1f}s with a 2 s drain timeout"
    assert "drain timeout" in out
    for wf_id in ids:
        first = wait_for(lambda i=wf_id: conductor_client.get_workflow(i)["tasks"][0], 5, "the first attempt")
        assert first["status"] == "FAILED"
        assert first["reasonForIncompletion"] == "worker shut down before the task finished (drain timeout)"
        assert len(conductor_client.get_workflow(wf_id)["tasks"]) == 2  # the server scheduled the retry
