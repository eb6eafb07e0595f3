"""The runtime over real HTTP on loopback: a stand-in Conductor server, /metrics and /healthz."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from test_runner import WAIT, FakeClient

from worker_runtime.client import ConductorClient
from worker_runtime.handler import TaskHandler
from worker_runtime.worker import WorkerSpec


class _Conductor:
    """Hands out two tasks, one per poll or update-v2 reply (the second one in the first update-v2
    reply), then none; records every result update with its path and content type."""

    def __init__(self) -> None:
        self.tasks = [
            {"taskId": f"t{i}", "workflowInstanceId": "w1", "taskType": "work", "inputData": {"x": i * 4}}
            for i in (1, 2)
        ]
        self.updates: list[tuple[str, str, dict]] = []
        self.updated = threading.Event()
        conductor = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                batch, conductor.tasks = conductor.tasks[:1], conductor.tasks[1:]
                self._reply(200, json.dumps(batch).encode())

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                conductor.updates.append((self.path, self.headers["Content-Type"], body))
                if len(conductor.updates) == 2:
                    conductor.updated.set()
                if self.path != "/api/tasks/update-v2":
                    self._reply(200, body["taskId"].encode())
                elif conductor.tasks:
                    self._reply(200, json.dumps(conductor.tasks.pop(0)).encode())
                else:
                    self._reply(204, b"")

            def _reply(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_a_task_round_trip_over_http_and_the_endpoints_name_both_metric_sets():
    server = _Conductor()
    handler = TaskHandler(
        [WorkerSpec("work", lambda x: {"y": x * 2})],
        client=ConductorClient(server.url),
        metrics_port=0,
        metrics_host="127.0.0.1",
        update_v2=True,
    )
    try:
        with handler:
            assert server.updated.wait(WAIT)
            base = f"http://127.0.0.1:{handler.health.port}"
            assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
            text = requests.get(f"{base}/metrics", timeout=5).text
    finally:
        server.server.shutdown()
    assert [(path, content_type) for path, content_type, _ in server.updates] == [
        ("/api/tasks/update-v2", "application/json")
    ] * 2
    assert [(body["taskId"], body["status"], body["outputData"]) for _, _, body in server.updates] == [
        ("t1", "COMPLETED", {"y": 8}),
        ("t2", "COMPLETED", {"y": 16}),  # handed over by the first update-v2 reply, never polled
    ]
    for line in (
        'task_poll_total{taskType="work"}',
        'task_update_time_seconds_count{status="SUCCESS",taskType="work"} 2.0',
        'http_api_client_request_seconds_count{method="POST",status="200",uri="/tasks/update-v2"} 1.0',
        'http_api_client_request_seconds_count{method="POST",status="204",uri="/tasks/update-v2"} 1.0',
        'http_api_client_request_seconds_count{method="GET",status="200",uri="/tasks/poll/batch/{taskType}"}',
        'task_handed_over_total{taskType="work"} 1.0',
        'task_execution_started_total{taskType="work"} 2.0',
        'worker_slot_capacity{taskType="work"} 1.0',
        'task_poll_counter_total{taskType="work"}',
    ):
        assert line in text, line


def test_healthz_answers_503_with_the_reason_when_a_poll_loop_died():
    handler = TaskHandler(
        [WorkerSpec("work", lambda: {})],
        client=FakeClient(polls=[SystemExit(1)]),
        metrics_port=0,
        metrics_host="127.0.0.1",
    )
    handler.start()
    try:
        handler.runners[0].poller.thread.join(WAIT)
        resp = requests.get(f"http://127.0.0.1:{handler.health.port}/healthz", timeout=5)
    finally:
        handler.stop(grace=0)
    assert resp.status_code == 503
    assert resp.json()["problems"] == {"work": "poll loop died: SystemExit: 1"}
