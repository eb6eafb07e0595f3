"""ConductorConnection: the server a ConductorWorker's pods and the operator talk to, and with which Secret.

Why a resource: a ConductorWorker whose spec named a server URL and any Secret of its namespace made the
operator itself send that Secret's values to that URL (the token request), from the operator's network
position, to whoever may create a ConductorWorker, even one who may not read Secrets. Now credentials
come only from a ConductorConnection, and the operator sends them only to that connection's server; a
ConductorWorker names the connection (spec.conductor.connectionRef) or, for a server without auth, a URL.

`resolve` (pure) turns a ConductorWorker into the shape the rest of the operator reads (spec.conductor
with serverUrl and, from the connection, authSecretRef); `check` gives a connection's Ready condition.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from conductor_operator.status import Problem
from worker_runtime.errors import ConductorError

KIND = "ConductorConnection"
PLURAL = "conductorconnections"
CHECK_SECONDS = 60.0  # how often the operator checks each connection (its Ready condition)


@dataclass(frozen=True)
class Resolution:
    """The ConductorWorker as the operator uses it; `problem`: why not as written; `blocking`: the step
    must not apply or autoscale (there is no server to point the pods at)."""

    body: dict[str, Any]
    problem: Problem | None = None
    blocking: bool = False


def connection_name(spec: dict[str, Any]) -> str | None:
    ref = (spec.get("conductor") or {}).get("connectionRef") or {}
    return ref.get("name") or None


def _with_conductor(body: dict[str, Any], conductor: dict[str, Any]) -> dict[str, Any]:
    out = dict(body)
    out["spec"] = {**(body.get("spec") or {}), "conductor": conductor}
    return out


def resolve(body: dict[str, Any], connection: dict[str, Any] | None) -> Resolution:
    """The ConductorWorker with spec.conductor taken from its connection (`connection`: the named
    ConductorConnection, None when it does not exist). An inline authSecretRef (an older CRD accepted it)
    is never used: the operator would send the Secret to a URL its owner did not choose."""
    spec = body.get("spec") or {}
    conductor = dict(spec.get("conductor") or {})
    name = connection_name(spec)
    if name is None:
        if "authSecretRef" not in conductor:
            return Resolution(body)
        conductor.pop("authSecretRef")
        problem = Problem(
            "InlineCredentials",
            "spec.conductor.authSecretRef is ignored: name a ConductorConnection that holds the Secret "
            "(spec.conductor.connectionRef); the operator sends credentials only to its server",
        )
        return Resolution(_with_conductor(body, conductor), problem)
    if connection is None:
        problem = Problem("ConnectionNotFound", f"ConductorConnection {name!r} not found in this namespace")
        return Resolution(body, problem, blocking=True)
    cspec = connection.get("spec") or {}
    resolved: dict[str, Any] = {"serverUrl": cspec.get("serverUrl"), "connectionRef": {"name": name}}
    if cspec.get("authSecretRef"):
        resolved["authSecretRef"] = copy.deepcopy(cspec["authSecretRef"])
    return Resolution(_with_conductor(body, resolved))


def check(probe: Callable[[], None], credentials_problem: str | None = None) -> tuple[str, str, str]:
    """(status, reason, message) of a connection's Ready condition. `probe` calls the server with the
    connection's credentials and raises ConductorError; `credentials_problem`: why the Secret cannot be
    used (then the server is not called). Messages are fixed: a reply body never reaches the status (it
    could be anything the URL answers, e.g. from an internal service)."""
    if credentials_problem:
        return "False", "SecretUnusable", credentials_problem
    try:
        probe()
    except ConductorError as exc:
        if exc.status in (401, 403):
            return "False", "Unauthorized", f"the server refused the credentials (HTTP {exc.status})"
        if exc.status is None:
            return "False", "Unreachable", f"no answer from the server ({exc.kind})"
        return "False", "ServerError", f"the server answered HTTP {exc.status}"
    return "True", "Reachable", "the server answered with these credentials"


def status(previous: dict[str, Any] | None, ready: tuple[str, str, str], generation: int | None) -> dict[str, Any]:
    """The connection's status; lastTransitionTime moves only when the Ready status does."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    state, reason, message = ready
    old = next((c for c in (previous or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
    since = old.get("lastTransitionTime") if old and old.get("status") == state else now
    condition = {"type": "Ready", "status": state, "reason": reason, "message": message, "lastTransitionTime": since}
    return {"observedGeneration": generation, "lastCheckTime": now, "conditions": [condition]}
