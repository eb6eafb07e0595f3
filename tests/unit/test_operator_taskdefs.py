"""Task-definition limits: reading them (cached, 404 = no limit, errors keep the last known) and the pod caps."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from conductor_operator.taskdefs import TaskDefSource, TaskLimits, pod_caps

DEFINITIONS = {
    "limited": {"name": "limited", "concurrentExecLimit": 6, "rateLimitPerFrequency": 0},
    "rated": {
        "name": "rated",
        "rateLimitPerFrequency": 4,
        "rateLimitFrequencyInSeconds": 60,
        "responseTimeoutSeconds": 90,
    },
    "free": {"name": "free", "concurrentExecLimit": 0},
}


@pytest.fixture
def conductor():
    """A stand-in for GET /api/metadata/taskdefs/{name}; `down` makes every answer a 500."""
    state = {"down": False, "paths": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            state["paths"].append(self.path)
            name = self.path.rsplit("/", 1)[-1]
            if state["down"]:
                code, payload = 500, {"message": "boom"}
            elif self.path.startswith("/api/metadata/taskdefs/") and name in DEFINITIONS:
                code, payload = 200, DEFINITIONS[name]
            else:
                code, payload = 404, {"message": f"No such taskType found by name: {name}"}
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api", state
    server.shutdown()
    server.server_close()


def test_limits_are_read_cached_and_survive_a_failed_read(conductor):
    url, state = conductor
    now = [0.0]
    source = TaskDefSource(timeout=2, max_age=60, clock=lambda: now[0])
    try:
        names = ["limited", "rated", "free", "unknown"]
        got = source.limits(url, names)
        assert got == {
            "limited": TaskLimits(6, None),
            "rated": TaskLimits(None, 4, 90),
            "free": TaskLimits(),
            "unknown": TaskLimits(),  # 404: no definition, no limit
        }
        assert state["paths"][0] == "/api/metadata/taskdefs/limited"
        asked = len(state["paths"])
        now[0] = 59
        assert source.limits(url, names) == got and len(state["paths"]) == asked  # cached
        state["down"] = True
        now[0] = 61
        assert source.limits(url, ["limited"]) == {"limited": TaskLimits(6, None)}  # last known kept
        assert len(state["paths"]) == asked + 1
        never = source.limits(url, ["never-read"])["never-read"]
        assert never == TaskLimits(known=False) and never.tasks is None  # a guess, and said to be one
    finally:
        source.close()


def test_pod_caps_divide_the_limit_by_the_slots_of_a_pod():
    tasks = [
        {"name": "limited", "concurrency": 4},
        {"name": "rated", "domain": "eu", "concurrency": 1},
        {"name": "free", "concurrency": 2},
    ]
    limits = {"limited": TaskLimits(6, 10), "rated": TaskLimits(None, 4), "free": TaskLimits()}
    assert pod_caps(tasks, limits) == {"limited": 2, "eu:rated": 4}
    assert TaskLimits.from_definition({"concurrentExecLimit": 3, "rateLimitPerFrequency": 2}).tasks == 2
    assert TaskLimits.from_definition(None).tasks is None
