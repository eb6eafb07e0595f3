"""The client's error classification: what is retried, and what each failure is counted as."""

from __future__ import annotations

import pytest
import requests

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


class _Session:
    """Stands in for requests.Session: raises the given exception on every request."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def request(self, *args, **kwargs):
        raise self.exc


@pytest.mark.parametrize(
    ("exc", "kind", "retryable"),
    [
        (requests.ConnectionError("refused"), "ConnectionError", True),
        (requests.ReadTimeout("slow"), "ConnectionError", True),
        (requests.exceptions.ChunkedEncodingError("cut"), "ConnectionError", True),
        (requests.exceptions.InvalidURL("bad"), "InvalidURL", False),
        (TypeError("not serializable"), "TypeError", False),
    ],
)
def test_transport_failures_are_connection_errors_and_others_are_client_errors(exc, kind, retryable):
    client = ConductorClient("http://127.0.0.1:9/api")
    client.session = _Session(exc)
    with pytest.raises(ConductorError) as caught:
        client.get_task("t1")
    assert (caught.value.kind, caught.value.retryable) == (kind, retryable)


def test_an_auth_token_refusal_keeps_its_status():
    resp = requests.Response()
    resp.status_code = 503
    client = ConductorClient("http://127.0.0.1:9/api")
    client.session = _Session(requests.HTTPError("token request failed: HTTP 503", response=resp))
    with pytest.raises(ConductorError) as caught:
        client.get_task("t1")
    assert (caught.value.status, caught.value.retryable) == (503, True)
