"""The client's error classification: what is retried, and what each failure is counted as."""

from __future__ import annotations

import json
import types

import pytest
import urllib3

from worker_runtime.client import ConductorClient, ConductorError


@pytest.mark.parametrize(
    ("status", "body", "retryable", "kind"),
    [
        (None, "", True, "ConnectionError"),
        (503, "", True, "HTTP503"),
        (429, "", True, "HTTP429"),
        (408, "", True, "HTTP408"),
        (400, '{"message":"bad"}', False, "HTTP400"),
        (413, "", False, "HTTP413"),
        (404, "", False, "HTTP404"),
        # an auth refusal after the client renewed its token: credentials being rotated, or a token
        # service that is down, must not cost a result
        (401, "", True, "HTTP401"),
        (403, "", True, "HTTP403"),
        # Conductor 3.21 says retryable:false on a 500 for any non-transient exception, a Redis
        # outage included: a 5xx is retried whatever its body says.
        (500, '{"status":500,"message":"JSON parse error","retryable":false}', True, "HTTP500"),
        (500, '{"status":500,"message":"db down","retryable":true}', True, "HTTP500"),
        (500, "<html>oops</html>", True, "HTTP500"),
        (200, "", True, "MalformedReply"),
    ],
)
def test_retryable_by_status_whatever_the_body_says(status, body, retryable, kind):
    err = ConductorError("x", status, body)
    assert (err.retryable, err.kind) == (retryable, kind)


def test_an_error_of_the_client_itself_is_not_retryable_nor_a_connection_error():
    client = ConductorClient("http://127.0.0.1:9/api")  # never reached: encoding fails first
    with pytest.raises(ConductorError) as caught:
        client.update_task({"taskId": "t1", "outputData": {"x": float("nan")}})
    assert caught.value.kind == "InvalidJSONError"
    assert caught.value.retryable is False


class _Pool:
    """Stands in for the client's urllib3 pool: raises the given exception, or answers a status."""

    def __init__(self, exc: Exception | None = None, status: int = 200, data: bytes = b"{}") -> None:
        self.exc, self.status, self.data = exc, status, data
        self.sent: list[tuple[str, str, dict]] = []

    def urlopen(self, method, url, body=None, headers=None, **kwargs):
        self.sent.append((method, url, dict(headers or {})))
        if self.exc is not None:
            raise self.exc
        return types.SimpleNamespace(status=self.status, data=self.data, headers={})


@pytest.mark.parametrize(
    ("exc", "kind", "retryable"),
    [
        (urllib3.exceptions.NewConnectionError(None, "refused"), "ConnectionError", True),
        (urllib3.exceptions.ReadTimeoutError(None, "/x", "slow"), "ConnectionError", True),
        (urllib3.exceptions.ProtocolError("cut"), "ConnectionError", True),
        (ConnectionResetError("reset"), "ConnectionError", True),
        (urllib3.exceptions.LocationParseError("bad"), "LocationParseError", False),
        (TypeError("not serializable"), "TypeError", False),
    ],
)
def test_transport_failures_are_connection_errors_and_others_are_client_errors(exc, kind, retryable):
    client = ConductorClient("http://127.0.0.1:9/api")
    client.pool = _Pool(exc)
    with pytest.raises(ConductorError) as caught:
        client.get_task("t1")
    assert (caught.value.kind, caught.value.retryable) == (kind, retryable)


def test_an_auth_token_refusal_keeps_its_status():
    client = ConductorClient("http://127.0.0.1:9/api", key_id="k", key_secret="s")
    client.pool = _Pool(status=503, data=b"down")
    with pytest.raises(ConductorError) as caught:
        client.get_task("t1")
    assert (caught.value.status, caught.value.retryable) == (503, True)
    assert [url for _, url, _ in client.pool.sent] == ["/api/token"]  # the task request never went out


class _Tokens(_Pool):
    """A server that takes only the newest token: the first request with an old one answers 401."""

    def __init__(self) -> None:
        super().__init__()
        self.issued = 0

    def urlopen(self, method, url, body=None, headers=None, **kwargs):
        self.sent.append((method, url, dict(headers or {})))
        if url.endswith("/token"):
            self.issued += 1
            return types.SimpleNamespace(
                status=200, data=json.dumps({"token": f"tok{self.issued}"}).encode(), headers={}
            )
        ok = (headers or {}).get("X-Authorization") == f"tok{self.issued}" and self.issued > 1
        return types.SimpleNamespace(status=200 if ok else 401, data=b'{"taskId":"t1"}', headers={})


def test_a_401_gets_a_new_token_and_the_request_is_sent_once_more():
    client = ConductorClient("http://127.0.0.1:9/api", key_id="k", key_secret="s")
    client.pool = _Tokens()
    assert client.get_task("t1") == {"taskId": "t1"}
    sent = [(url, h.get("X-Authorization")) for _, url, h in client.pool.sent]
    assert sent == [("/api/token", None), ("/api/tasks/t1", "tok1"), ("/api/token", None), ("/api/tasks/t1", "tok2")]


def test_params_are_encoded_and_lists_repeat_the_key():
    client = ConductorClient("http://127.0.0.1:9/api")
    client.pool = _Pool(data=b'{"a": 1}')
    assert client.request("GET", "/tasks/queue/sizes", params={"taskType": ["a b", "c"]}).json() == {"a": 1}
    assert client.pool.sent[0][1] == "/api/tasks/queue/sizes?taskType=a+b&taskType=c"


class _Routes(_Pool):
    """Answers each path with its own (status, body); records the paths asked."""

    def __init__(self, routes: dict[str, tuple[int, bytes]]) -> None:
        super().__init__()
        self.routes = routes

    def urlopen(self, method, url, body=None, headers=None, **kwargs):
        self.sent.append((method, url, dict(headers or {})))
        status, data = self.routes[url]
        return types.SimpleNamespace(status=status, data=data, headers={})


def test_update_v2_returns_the_next_task_or_none():
    client = ConductorClient("http://127.0.0.1:9/api")
    client.pool = _Routes({"/api/tasks/update-v2": (200, b'{"taskId": "t2"}')})
    assert client.update_task_v2(b'{"taskId": "t1"}') == {"taskId": "t2"}
    client.pool = _Routes({"/api/tasks/update-v2": (204, b"")})
    assert client.update_task_v2(b'{"taskId": "t1"}') is None
    client.pool = _Routes({"/api/tasks/update-v2": (200, b"not json")})
    assert client.update_task_v2(b'{"taskId": "t1"}') is None  # accepted: the update is not repeated
    assert client.update_v2 is True


@pytest.mark.parametrize("status", [404, 405])
def test_a_server_without_update_v2_gets_the_result_by_post_tasks_and_v2_is_turned_off(status):
    client = ConductorClient("http://127.0.0.1:9/api")
    client.pool = _Routes({"/api/tasks/update-v2": (status, b"no route"), "/api/tasks": (200, b"t1")})
    assert client.update_task_v2(b'{"taskId": "t1"}') is None
    assert [url for _, url, _ in client.pool.sent] == ["/api/tasks/update-v2", "/api/tasks"]
    assert client.update_v2 is False


def test_an_unknown_task_on_update_v2_is_a_refusal_and_keeps_v2_on():
    client = ConductorClient("http://127.0.0.1:9/api")
    client.pool = _Routes({"/api/tasks/update-v2": (404, b"no task"), "/api/tasks": (404, b"no task")})
    with pytest.raises(ConductorError) as caught:
        client.update_task_v2(b'{"taskId": "t1"}')
    assert (caught.value.status, caught.value.retryable, client.update_v2) == (404, False, True)


def test_release_gives_the_task_back_in_progress_with_no_callback_delay():
    client = ConductorClient("http://127.0.0.1:9/api")
    bodies = []
    pool = _Routes({"/api/tasks": (200, b"t1")})
    original = pool.urlopen

    def record(method, url, body=None, headers=None, **kwargs):
        bodies.append(json.loads(body))
        return original(method, url, body, headers, **kwargs)

    pool.urlopen = record
    client.pool = pool
    client.release_task({"taskId": "t1", "workflowInstanceId": "w1"}, "pod")
    assert bodies[0]["status"] == "IN_PROGRESS"
    assert (bodies[0]["callbackAfterSeconds"], bodies[0]["workerId"], bodies[0]["taskId"]) == (0, "pod", "t1")


def test_a_token_reply_that_is_no_token_is_a_retryable_error():
    client = ConductorClient("http://127.0.0.1:9/api", key_id="k", key_secret="s")
    client.pool = _Pool(status=200, data=b"<html>login</html>")
    with pytest.raises(ConductorError) as caught:
        client.get_task("t1")
    assert caught.value.retryable and "login" not in str(caught.value)


def test_an_error_summary_leaves_the_reply_body_out():
    client = ConductorClient("http://127.0.0.1:9/api")
    client.pool = _Pool(status=404, data=b"internal admin page: secret=42")
    with pytest.raises(ConductorError) as caught:
        client.get_task("t1")
    assert "secret=42" in str(caught.value)  # the log keeps it for the operator of the server
    assert caught.value.summary == "GET /tasks/t1: HTTP 404"
