"""Which queued tasks count as backlog: the rule of readiness.py on the task shapes Conductor 3.21 returns."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conductor_operator.readiness import Pending, PendingTaskSource, Scan, pending_from_task, readiness

NOW = 1_796_539_500_000.0  # epoch ms


def task(status: str, *, scheduled: float, update: float = 0, callback: int = 0, domain: str | None = None) -> dict:
    """The fields of a GET /api/admin/task/{type} entry that matter (as Conductor 3.21.14 returns them)."""
    return {
        "taskType": "resize",
        "taskDefName": "resize",
        "status": status,
        "scheduledTime": scheduled,
        "updateTime": update,
        "callbackAfterSeconds": callback,
        "domain": domain,
    }


def test_pending_from_the_servers_task_shapes():
    # a new task: updateTime 0, due at once
    assert pending_from_task(task("SCHEDULED", scheduled=NOW)) == Pending("resize", False, NOW)
    # returned IN_PROGRESS with callbackAfterSeconds 30: SCHEDULED again, due 30 s after that update
    p = pending_from_task(task("SCHEDULED", scheduled=NOW - 5000, update=NOW - 1000, callback=30))
    assert p == Pending("resize", False, NOW + 29_000)
    # a retry waiting out retryDelaySeconds 20: created with callbackAfterSeconds 20 (updateTime a bit earlier)
    p = pending_from_task(task("SCHEDULED", scheduled=NOW, update=NOW - 23, callback=20))
    assert p == Pending("resize", False, NOW + 20_000)
    assert pending_from_task(task("IN_PROGRESS", scheduled=NOW, update=NOW)) == Pending("resize", True, NOW)
    assert pending_from_task(task("SCHEDULED", scheduled=NOW, domain="eu")).queue == "eu:resize"
    assert pending_from_task(task("COMPLETED", scheduled=NOW)) is None


def scan(*tasks: dict, complete: bool = True) -> Scan:
    return Scan(tuple(p for p in map(pending_from_task, tasks) if p is not None), complete)


def test_waiting_tasks_are_not_ready_and_due_ones_are():
    tasks = [task("SCHEDULED", scheduled=NOW - 1000) for _ in range(3)]
    tasks += [task("SCHEDULED", scheduled=NOW - 9000, update=NOW - 1000, callback=40) for _ in range(20)]
    tasks += [task("IN_PROGRESS", scheduled=NOW - 2000, update=NOW - 1500) for _ in range(4)]  # polled: not queued
    r = readiness({"resize": 23}, {"resize": scan(*tasks)}, {"resize": "resize"}, {}, NOW, lead_s=5)
    assert r.ready == {"resize": 3} and r.waiting == {"resize": 20} and r.total_waiting == 20


def test_tasks_due_within_the_lead_count_as_ready():
    tasks = [task("SCHEDULED", scheduled=NOW - 30_000, update=NOW - 27_000, callback=30)]  # due in 3 s
    r = readiness({"resize": 1}, {"resize": scan(*tasks)}, {"resize": "resize"}, {}, NOW, lead_s=5)
    assert r.ready == {"resize": 1}
    r = readiness({"resize": 1}, {"resize": scan(*tasks)}, {"resize": "resize"}, {}, NOW, lead_s=2)
    assert r.ready == {"resize": 0}


def test_domains_are_counted_per_queue():
    tasks = [task("SCHEDULED", scheduled=NOW, domain="eu"), task("SCHEDULED", scheduled=NOW, update=NOW, callback=60)]
    sizes = {"eu:resize": 1, "resize": 1}
    r = readiness(sizes, {"resize": scan(*tasks)}, {"eu:resize": "resize", "resize": "resize"}, {}, NOW, 5)
    assert r.ready == {"eu:resize": 1, "resize": 0}


def test_a_truncated_list_is_a_sample_of_the_queue():
    tasks = [task("SCHEDULED", scheduled=NOW) for _ in range(25)]
    tasks += [task("SCHEDULED", scheduled=NOW, update=NOW, callback=60) for _ in range(75)]
    r = readiness({"resize": 1000}, {"resize": scan(*tasks, complete=False)}, {"resize": "resize"}, {}, NOW, 5)
    assert r.ready == {"resize": 250} and r.waiting == {"resize": 750}


def test_a_queue_without_a_list_counts_whole_and_the_server_count_bounds_the_list():
    r = readiness({"resize": 7}, {}, {"resize": "resize"}, {}, NOW, 5)
    assert r.ready == {"resize": 7} and r.total_waiting == 0
    # the list saw 3 due, the queue (read a moment earlier) 2: never more than the queue holds
    tasks = [task("SCHEDULED", scheduled=NOW) for _ in range(3)]
    assert readiness({"resize": 2}, {"resize": scan(*tasks)}, {"resize": "resize"}, {}, NOW, 5).ready == {"resize": 2}


def test_a_concurrent_exec_limit_leaves_room_for_limit_minus_running():
    tasks = [task("SCHEDULED", scheduled=NOW) for _ in range(10)] + [task("IN_PROGRESS", scheduled=NOW)] * 4
    r = readiness({"resize": 10}, {"resize": scan(*tasks)}, {"resize": "resize"}, {"resize": 6}, NOW, 5)
    assert r.ready == {"resize": 2} and r.waiting == {"resize": 8}
    full = [task("SCHEDULED", scheduled=NOW)] + [task("IN_PROGRESS", scheduled=NOW)] * 6
    assert readiness({"resize": 1}, {"resize": scan(*full)}, {"resize": "resize"}, {"resize": 6}, NOW, 5).ready == {
        "resize": 0
    }


class _Server:
    """A loopback HTTP server answering GET /api/admin/task/{type} from a table (status, body)."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, object]] = {}
        self.paths: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.paths.append(self.path)
                status, body = owner.answers.get(self.path.split("?")[0], (404, {"message": "no"}))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api"


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def test_source_caches_per_interval_and_marks_a_full_page_as_a_sample(server):
    server.answers["/api/admin/task/resize"] = (200, [task("SCHEDULED", scheduled=NOW)] * 3)
    source = PendingTaskSource(limit=3)
    first = source.scans(server.url, ["resize"], max_age=5, now=100)
    assert first["resize"].complete is False and len(first["resize"].tasks) == 3
    assert source.scans(server.url, ["resize"], max_age=5, now=104) == first
    assert len(server.paths) == 1 and "count=3" in server.paths[0]
    source.scans(server.url, ["resize"], max_age=5, now=106)
    assert len(server.paths) == 2
    server.answers["/api/admin/task/resize"] = (200, [task("SCHEDULED", scheduled=NOW)] * 2)
    assert source.scans(server.url, ["resize"], max_age=5, now=200)["resize"].complete is True
    source.close()


def test_source_remembers_a_refusal_and_asks_again_later(server):
    server.answers["/api/admin/task/resize"] = (403, {"message": "admin only"})
    source = PendingTaskSource(retry_after=600)
    assert source.scans(server.url, ["resize"], max_age=5, now=0) == {}
    assert source.refused(server.url) == 403
    assert source.scans(server.url, ["resize"], max_age=5, now=300) == {}
    assert len(server.paths) == 1  # not asked again within retry_after
    server.answers["/api/admin/task/resize"] = (200, [])
    assert source.scans(server.url, ["resize"], max_age=5, now=601)["resize"] == Scan((), True)
    assert source.refused(server.url) is None
    source.close()
