"""The sidecar's request handling, ledger and process watch, against a scripted server (no network),
plus one pass through its real HTTP proxy to an in-process HTTP server."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from worker_runtime.client import ConductorClient, Response
from worker_runtime.errors import ConductorError
from worker_runtime.metrics import WorkerMetrics
from worker_runtime.sidecar import routes
from worker_runtime.sidecar.core import Sidecar, TaskSettings
from worker_runtime.sidecar.ledger import Ledger
from worker_runtime.sidecar.processes import node_addresses, parse_stat, top_level
from worker_runtime.sidecar.proxy import drain_route, proxy_server


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Server:
    """Answers `exchange` from a script: a list of replies (Response or exception) per (method, path)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bytes | None, dict]] = []
        self.replies: dict[tuple[str, str], list] = {}
        self.released: list[str] = []

    def script(self, method: str, path: str, *replies: object) -> None:
        self.replies.setdefault((method, path), []).extend(replies)

    def exchange(self, method, target, body, headers, timeout=None, *, label=None, origin=False, transport=None):
        self.calls.append((method, target, body, dict(headers)))
        path = target.split("?", 1)[0]
        queue = self.replies.get((method, path)) or []
        reply = queue.pop(0) if queue else Response(200, b"", {})
        if isinstance(reply, Exception):
            raise reply
        return reply

    def release_task(self, task, worker_id):
        self.released.append(task["taskId"])


class Procs:
    def __init__(self, alive: frozenset[int] = frozenset({7})) -> None:
        self.enabled = True
        self.now = alive

    def alive(self) -> frozenset[int]:
        return self.now


def task(task_id: str, task_type: str = "work", timeout: int = 0) -> dict:
    return {
        "taskId": task_id,
        "taskType": task_type,
        "workflowInstanceId": f"wf-{task_id}",
        "referenceTaskName": f"ref-{task_id}",
        "responseTimeoutSeconds": timeout,
    }


def ok_json(value: object) -> Response:
    return Response(200, json.dumps(value).encode(), {"Content-Type": "application/json"})


def make(concurrency: int = 2, domain: str | None = "blue", procs: Procs | None = None, clock=None) -> tuple:
    server = Server()
    metrics = WorkerMetrics()
    sidecar = Sidecar(
        server,
        {"work": TaskSettings("work", domain, concurrency)},
        "pod-1",
        metrics,
        procs or Procs(),
        clock=clock or time.monotonic,
        sleep=lambda s: None,
    )
    return sidecar, server, metrics


def gauge(metrics: WorkerMetrics, name: str, task_type: str = "work") -> float:
    return metrics.registry.get_sample_value(name, {"taskType": task_type})


# -- routes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "kind", "task_type"),
    [
        ("GET", "/tasks/poll/batch/get%2Dinventory", routes.BATCH_POLL, "get-inventory"),
        ("GET", "/tasks/poll/work", routes.POLL, "work"),
        ("POST", "/tasks", routes.UPDATE, ""),
        ("POST", "/tasks/update-v2", routes.UPDATE_V2, ""),
        ("POST", "/tasks/wf1/ref1/completed", routes.UPDATE_BY_REF, ""),
        ("POST", "/tasks/wf1/ref1/COMPLETED/sync", routes.UPDATE_BY_REF, ""),
        ("GET", "/tasks/queue/sizes", routes.OTHER, ""),
        ("GET", "/metadata/taskdefs", routes.OTHER, ""),
        ("POST", "/tasks/abc/log", routes.OTHER, ""),
    ],
)
def test_classify(method: str, path: str, kind: str, task_type: str) -> None:
    route = routes.classify(method, path)
    assert (route.kind, route.task_type) == (kind, task_type)


def test_poll_query_adds_the_domain_and_cuts_the_count_but_keeps_the_workers_own_domain() -> None:
    q = routes.PollQuery.parse("workerid=w&count=10&timeout=500")
    assert q.rewritten("workerid=w&count=10&timeout=500", "blue", 2) == "workerid=w&timeout=500&domain=blue&count=2"
    own = routes.PollQuery.parse("count=3&domain=red")
    assert own.rewritten("count=3&domain=red", "blue", 3) == "count=3&domain=red"  # unchanged: same bytes
    assert q.wait_ms(batch=True) == 500 and routes.PollQuery.parse("").wait_ms(batch=False) == 100


# -- processes -----------------------------------------------------------------------------------


def test_parse_stat_reads_a_command_with_spaces_and_parentheses() -> None:
    fields = " ".join(["S", "0"] + ["0"] * 17 + ["4242"])
    assert parse_stat(f"17 (my (odd) cmd) {fields} 0 0") == (17, 0, 4242)
    assert parse_stat("garbage") is None


def test_top_level_is_the_other_containers_first_processes() -> None:
    stats = [(1, 0, 5), (9, 0, 6), (12, 0, 7), (13, 12, 8)]  # pause, the sidecar, the worker, its child
    assert top_level(stats, own_pid=9) == frozenset({12 << 32 | 7})


def test_node_addresses_reads_the_default_gateway_and_host_ips() -> None:
    table = (
        "Iface\tDestination\tGateway \tFlags\n"
        "eth0\t00000000\t0100590A\t0003\n"  # default via 10.89.0.1
        "eth0\t0000590A\t00000000\t0001\n"
    )
    assert node_addresses(table, ["192.168.1.5", ""]) == frozenset({"10.89.0.1", "192.168.1.5"})


# -- ledger --------------------------------------------------------------------------------------


def test_ledger_reservations_never_exceed_the_cap_across_concurrent_polls() -> None:
    ledger = Ledger({"work": 3})
    assert ledger.reserve("work", 2) == 2
    assert ledger.reserve("work", 5) == 1  # one left while the first poll is out
    assert ledger.reserve("work", 1, wait=0.01) == 0
    ledger.settle("work", 2, [task("a")], frozenset({1}))  # the first poll brought one of two
    assert ledger.free("work") == 1
    assert ledger.reserve("other", 50) == 50  # a type without a cap is not cut


# -- polls ---------------------------------------------------------------------------------------


def test_poll_gets_the_domain_and_at_most_the_free_slots_and_a_full_pod_waits_without_asking() -> None:
    sidecar, server, metrics = make(concurrency=2)
    server.script("GET", "/tasks/poll/batch/work", ok_json([task("a"), task("b")]))
    reply = sidecar.handle("GET", "/api/tasks/poll/batch/work", "workerid=w&count=10&timeout=50", {}, b"")
    assert reply.status == 200 and len(json.loads(reply.body)) == 2
    assert server.calls[0][1] == "/tasks/poll/batch/work?workerid=w&timeout=50&domain=blue&count=2"
    assert gauge(metrics, "worker_busy_slots") == 2 and gauge(metrics, "worker_slot_capacity") == 2

    started = time.monotonic()
    reply = sidecar.handle("GET", "/api/tasks/poll/batch/work", "count=10&timeout=50", {}, b"")
    assert reply.body == b"[]" and time.monotonic() - started >= 0.045  # waited as the server would
    assert len(server.calls) == 1  # the server was not asked

    assert sidecar.handle("GET", "/api/tasks/poll/work", "", {}, b"").status == 204


def test_a_freed_slot_lets_a_waiting_poll_go_out() -> None:
    sidecar, server, _ = make(concurrency=1)
    server.script("GET", "/tasks/poll/batch/work", ok_json([task("a")]), ok_json([task("b")]))
    sidecar.handle("GET", "/api/tasks/poll/batch/work", "count=1", {}, b"")
    done = threading.Timer(
        0.05,
        lambda: sidecar.handle(
            "POST", "/api/tasks", "", {}, json.dumps({"taskId": "a", "status": "COMPLETED"}).encode()
        ),
    )
    done.start()
    reply = sidecar.handle("GET", "/api/tasks/poll/batch/work", "count=1&timeout=2000", {}, b"")
    done.join()
    assert [t["taskId"] for t in json.loads(reply.body)] == ["b"]


# -- updates -------------------------------------------------------------------------------------


def test_a_final_update_frees_the_slot_and_is_counted() -> None:
    sidecar, server, metrics = make()
    server.script("GET", "/tasks/poll/batch/work", ok_json([task("a")]))
    sidecar.handle("GET", "/api/tasks/poll/batch/work", "count=1", {}, b"")
    body = json.dumps({"taskId": "a", "workflowInstanceId": "wf-a", "status": "COMPLETED"}).encode()
    server.script("POST", "/tasks", Response(200, b"a", {"Content-Type": "text/plain"}))
    reply = sidecar.handle("POST", "/api/tasks", "", {"Content-Type": "application/json"}, body)
    assert (reply.status, reply.body) == (200, b"a")
    assert server.calls[-1][2] == body  # byte for byte
    assert gauge(metrics, "worker_busy_slots") == 0
    held = gauge(metrics, "worker_busy_slot_seconds_total")
    assert held > 0  # the slot-seconds the task was held: the operator averages busy slots from it
    time.sleep(0.02)
    assert gauge(metrics, "worker_busy_slot_seconds_total") == held  # nothing held: it stands still
    assert (
        metrics.registry.get_sample_value("task_execute_counter_total", {"taskType": "work", "status": "COMPLETED"})
        == 1
    )


def test_update_v2_hands_over_the_next_task_and_a_draining_pod_takes_none() -> None:
    sidecar, server, _ = make()
    server.script("GET", "/tasks/poll/batch/work", ok_json([task("a")]))
    sidecar.handle("GET", "/api/tasks/poll/batch/work", "count=1", {}, b"")
    server.script("POST", "/tasks/update-v2", ok_json(task("b")))
    done = json.dumps({"taskId": "a", "status": "COMPLETED"}).encode()
    reply = sidecar.handle("POST", "/api/tasks/update-v2", "", {}, done)
    assert json.loads(reply.body)["taskId"] == "b"
    assert [h.task_id for h in sidecar.ledger.held()] == ["b"]
    sidecar.draining.set()  # a draining pod reports with POST /tasks: the server hands over nothing
    done_b = json.dumps({"taskId": "b", "status": "COMPLETED"}).encode()
    reply = sidecar.handle("POST", "/api/tasks/update-v2", "", {}, done_b)
    assert reply.status == 204 and sidecar.ledger.held() == []
    assert server.calls[-1][:3] == ("POST", "/tasks", done_b) and server.released == []


def test_a_result_the_server_cannot_take_is_kept_and_delivered_later_never_dropped() -> None:
    sidecar, server, metrics = make()
    server.script("GET", "/tasks/poll/batch/work", ok_json([task("a")]))
    sidecar.handle("GET", "/api/tasks/poll/batch/work", "count=1", {}, b"")
    server.script("POST", "/tasks", Response(503, b"busy"), ConductorError("refused"), Response(502, b""))
    body = json.dumps({"taskId": "a", "status": "COMPLETED"}).encode()
    assert sidecar.handle("POST", "/api/tasks", "", {}, body).status == 200
    assert gauge(metrics, "worker_busy_slots") == 1  # still held until the server has it
    assert sidecar.recover() == 0  # and not handed back, even if the worker dies now
    server.script("POST", "/tasks", Response(500, b""))
    assert sidecar.flush_outbox() == 1
    assert sidecar.flush_outbox() == 0  # the script is empty: 200
    assert gauge(metrics, "worker_busy_slots") == 0
    assert [c[2] for c in server.calls if c[0] == "POST"].count(body) == 5


def test_a_body_that_is_no_task_result_is_forwarded_untouched_and_counted() -> None:
    sidecar, server, _ = make()
    sidecar.handle("POST", "/api/tasks", "", {"Content-Type": "application/json"}, b"{not json")
    assert server.calls[-1][:3] == ("POST", "/tasks", b"{not json")
    assert sidecar.metrics.registry.get_sample_value("sidecar_unparsed_updates_total") == 1


def test_other_requests_pass_through_without_hop_by_hop_headers() -> None:
    sidecar, server, _ = make()
    server.script(
        "GET",
        "/metadata/taskdefs/work",
        Response(404, b'{"message":"no"}', {"Content-Type": "application/json", "Connection": "close"}),
    )
    reply = sidecar.handle(
        "GET",
        "/api/metadata/taskdefs/work",
        "",
        {"Connection": "keep-alive", "X-Trace": "1", "Accept-Encoding": "gzip"},
        b"",
    )
    assert (reply.status, reply.body) == (404, b'{"message":"no"}')
    assert ("Connection", "close") not in reply.headers
    assert server.calls[-1][3] == {"X-Trace": "1"}


def test_an_unreachable_server_is_a_502_and_shows_on_readyz() -> None:
    sidecar, server, _ = make()
    server.script("GET", "/tasks/queue/sizes", ConductorError("connection refused"))
    assert sidecar.handle("GET", "/api/tasks/queue/sizes", "", {}, b"").status == 502
    ok, detail = sidecar.ready()
    assert not ok and "refused" in detail["server"]


# -- the pod -------------------------------------------------------------------------------------


def test_a_dead_workers_tasks_are_handed_back_once_and_a_new_workers_are_not() -> None:
    procs = Procs(frozenset({7}))
    sidecar, server, _ = make(procs=procs)
    server.script("GET", "/tasks/poll/batch/work", ok_json([task("a")]), ok_json([task("b")]))
    sidecar.handle("GET", "/api/tasks/poll/batch/work", "count=1", {}, b"")
    procs.now = frozenset({8})  # the worker restarted (a new process) and polled before the tick
    sidecar.handle("GET", "/api/tasks/poll/batch/work", "count=1", {}, b"")
    assert sidecar.recover() == 1 and server.released == ["a"]
    assert sidecar.recover() == 0
    assert [h.task_id for h in sidecar.ledger.held()] == ["b"]


def test_leases_of_long_tasks_are_extended_from_half_their_response_timeout() -> None:
    clock = Clock()
    sidecar, server, _ = make(clock=clock)
    server.script("GET", "/tasks/poll/batch/work", ok_json([task("a", timeout=60), task("b")]))
    sidecar.handle("GET", "/api/tasks/poll/batch/work", "count=2", {}, b"")
    clock.now += 29
    assert sidecar.extend_leases() == 0
    clock.now += 1
    assert sidecar.extend_leases() == 1
    sent = json.loads(server.calls[-1][2])
    assert sent == {
        "taskId": "a",
        "workflowInstanceId": "wf-a",
        "workerId": "pod-1",
        "status": "IN_PROGRESS",
        "extendLease": True,
    }
    assert sidecar.extend_leases() == 0  # the lease was renewed just now


def test_drain_stops_handing_out_tasks_and_returns_once_the_pod_holds_none() -> None:
    sidecar, server, _ = make()
    server.script("GET", "/tasks/poll/batch/work", ok_json([task("a")]))
    sidecar.handle("GET", "/api/tasks/poll/batch/work", "count=1", {}, b"")
    finish = threading.Timer(
        0.1,
        lambda: sidecar.handle(
            "POST", "/api/tasks", "", {}, json.dumps({"taskId": "a", "status": "COMPLETED"}).encode()
        ),
    )
    finish.start()
    assert sidecar.drain(5) == (True, 0)
    finish.join()
    calls = len(server.calls)
    assert sidecar.handle("GET", "/api/tasks/poll/batch/work", "count=1&timeout=10", {}, b"").body == b"[]"
    assert len(server.calls) == calls
    assert sidecar.ready()[0] is False


def test_drain_is_refused_to_other_pods() -> None:
    sidecar, _, _ = make()
    route = drain_route(sidecar, 0.1, lambda: frozenset({"10.89.0.1"}))
    assert route("10.89.0.7")[0] == 403 and not sidecar.draining.is_set()
    assert route("10.89.0.1") == (200, {"ok": True, "held": 0})


# -- HTTP ----------------------------------------------------------------------------------------


def test_the_proxy_forwards_over_http_with_the_servers_base_path() -> None:
    seen: list[tuple[str, str, bytes]] = []

    class Upstream(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.path, self.headers.get("X-Custom"), body))
            self.send_response(201)
            self.send_header("Content-Length", "2")
            self.send_header("X-Reply", "yes")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            return

    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    client = ConductorClient(f"http://127.0.0.1:{upstream.server_address[1]}/conductor/api")
    sidecar = Sidecar(client, {}, "pod-1", WorkerMetrics(), Procs())
    proxy = proxy_server(sidecar, 0)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        import urllib3

        http = urllib3.PoolManager()
        resp = http.request(
            "POST",
            f"http://127.0.0.1:{proxy.server_address[1]}/api/workflow/x?a=1",
            body=b"{}",
            headers={"X-Custom": "c"},
        )
        assert (resp.status, resp.data, resp.headers.get("X-Reply")) == (201, b"ok", "yes")
        assert seen == [("/conductor/api/workflow/x?a=1", "c", b"{}")]
    finally:
        proxy.shutdown()
        upstream.shutdown()


# -- the sidecar's own HTTP/1.1 ----------------------------------------------------------------------


def test_read_request_takes_content_length_and_chunked_bodies_and_refuses_garbage() -> None:
    import io

    from worker_runtime.sidecar import http1

    raw = b"POST /api/tasks?a=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}GET / HTTP/1.1\r\nConnection: close\r\n\r\n"
    rfile = io.BytesIO(raw)
    first = http1.read_request(rfile)
    assert (first.method, first.target, first.body, first.keep_alive) == ("POST", "/api/tasks?a=1", b"{}", True)
    second = http1.read_request(rfile)
    assert second.method == "GET" and not second.keep_alive
    assert http1.read_request(rfile) is None
    chunked = io.BytesIO(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n")
    assert http1.read_request(chunked).body == b"abcde"
    for bad in (b"NONSENSE\r\n\r\n", b"GET / HTTP/1.1\r\nno colon\r\n\r\n", b"GET / SPDY/3\r\n\r\n"):
        with pytest.raises(http1.BadRequest):
            http1.read_request(io.BytesIO(bad))


def test_upstream_reads_chunked_replies_reuses_its_connection_and_replaces_one_the_server_closed() -> None:
    from worker_runtime.sidecar import http1

    connections: list[int] = []

    class Chunky(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            connections.append(self.client_address[1])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            if self.path.endswith("bye"):
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"4\r\n[1,2\r\n1\r\n]\r\n0\r\n\r\n")

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Chunky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        up = http1.Upstream(f"http://127.0.0.1:{server.server_address[1]}/api")
        assert up.exchange("GET", "/one", None, {}, 5)[0::2] == (200, b"[1,2]")
        up.exchange("GET", "/two", None, {}, 5)
        assert len(set(connections)) == 1  # kept alive
        up.exchange("GET", "/bye", None, {}, 5)  # the server closes this one
        assert up.exchange("GET", "/three", None, {}, 5)[2] == b"[1,2]"
        assert len(set(connections)) == 2
        server.shutdown()
        server.server_close()
        up.close()  # a kept connection would still be served by its handler thread
        with pytest.raises(OSError):
            up.exchange("GET", "/four", None, {}, 1)
    finally:
        server.shutdown()


def test_the_proxy_answers_a_malformed_request_with_400_and_serves_a_whole_session() -> None:
    import socket as sock_mod

    sidecar, server, _ = make()
    server.script("GET", "/metadata/x", Response(200, b"ok", {"Content-Type": "text/plain"}))
    proxy = proxy_server(sidecar, 0)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        with sock_mod.create_connection(proxy.server_address) as s:
            s.sendall(b"GET /api/metadata/x HTTP/1.1\r\nHost: a\r\n\r\nGET /api/metadata/x HTTP/1.1\r\n\r\n")
            time.sleep(0.2)
            data = s.recv(65536)
            assert data.count(b"HTTP/1.1 200 OK") == 2 and b"Content-Length: 2\r\n\r\nok" in data
        with sock_mod.create_connection(proxy.server_address) as s:
            s.sendall(b"GARBAGE\r\n\r\n")
            assert s.recv(1024).startswith(b"HTTP/1.1 400 Bad Request")
    finally:
        proxy.shutdown()
