"""ConductorConnection: resolving a worker's server and Secret, and the connection's Ready condition."""

from __future__ import annotations

import pytest

from conductor_operator import connections
from worker_runtime.errors import ConductorError


def worker(conductor: dict) -> dict:
    return {"metadata": {"name": "orders", "namespace": "shop"}, "spec": {"conductor": conductor, "tasks": []}}


def test_a_worker_without_a_connection_is_used_as_written():
    body = worker({"serverUrl": "http://conductor:8080/api"})
    assert connections.resolve(body, None) == connections.Resolution(body)


def test_the_connection_gives_the_server_and_the_secret():
    conn = {"spec": {"serverUrl": "https://c.example/api", "authSecretRef": {"name": "key"}}}
    resolved = connections.resolve(worker({"connectionRef": {"name": "prod"}}), conn)
    assert resolved.problem is None and not resolved.blocking
    assert resolved.body["spec"]["conductor"] == {
        "serverUrl": "https://c.example/api",
        "connectionRef": {"name": "prod"},
        "authSecretRef": {"name": "key"},
    }


def test_an_inline_secret_is_dropped_and_said_so():
    resolved = connections.resolve(worker({"serverUrl": "http://x/api", "authSecretRef": {"name": "key"}}), None)
    assert resolved.body["spec"]["conductor"] == {"serverUrl": "http://x/api"}
    assert resolved.problem.reason == "InlineCredentials" and not resolved.blocking


def test_a_missing_connection_blocks():
    resolved = connections.resolve(worker({"connectionRef": {"name": "prod"}}), None)
    assert resolved.blocking and resolved.problem.reason == "ConnectionNotFound"


def _raise(exc: Exception):
    def probe() -> None:
        raise exc

    return probe


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ConductorError("HTTP 401", 401, body="internal secret page"), "Unauthorized"),
        (ConductorError("HTTP 403", 403, body="internal secret page"), "Unauthorized"),
        (ConductorError("connection refused"), "Unreachable"),
        (ConductorError("HTTP 502", 502, body="internal secret page"), "ServerError"),
    ],
)
def test_a_failed_check_names_the_failure_and_never_the_reply(error, reason):
    status, got, message = connections.check(_raise(error))
    assert (status, got) == ("False", reason)
    assert "internal" not in message and "secret page" not in message


def test_a_check_reaches_the_server_only_with_usable_credentials():
    calls: list[int] = []
    assert connections.check(lambda: calls.append(1)) == (
        "True",
        "Reachable",
        "the server answered with these credentials",
    )
    assert connections.check(lambda: calls.append(1), "Secret 'k' not found")[1] == "SecretUnusable"
    assert calls == [1]


def test_the_transition_time_moves_only_with_the_status():
    first = connections.status(None, ("True", "Reachable", "ok"), 1)
    same = connections.status(first, ("True", "Reachable", "ok"), 1)
    assert same["conditions"][0]["lastTransitionTime"] == first["conditions"][0]["lastTransitionTime"]
    assert same["observedGeneration"] == 1
    flipped = connections.status(
        {"conditions": [{**first["conditions"][0], "lastTransitionTime": "x"}]}, ("False", "Unreachable", "no"), 2
    )
    assert flipped["conditions"][0]["lastTransitionTime"] != "x"
