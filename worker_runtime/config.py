"""Worker settings from the Conductor SDKs' naming: flags > per-task env > global env > decorator > default.

Per task:  CONDUCTOR_WORKER_<NAME>_<PROP> or conductor.worker.<name>.<prop>
Global:    CONDUCTOR_WORKER_ALL_<PROP>   or conductor.worker.all.<prop>
Props:     poll_interval (ms), domain, worker_id, thread_count, poll_timeout (ms), paused, batch_size,
           execution_timeout (s)
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worker_runtime.worker import WorkerSpec

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def truthy(value: Any) -> bool:
    """A boolean setting as the SDKs spell it; anything else is a ValueError, never a silent False."""
    text = str(value).strip().lower()
    if text not in _TRUE + _FALSE:
        raise ValueError(f"{value!r} is not a boolean (true/false, 1/0, yes/no, on/off)")
    return text in _TRUE


DEFAULTS: dict[str, Any] = {
    "poll_interval": 100,
    "poll_timeout": 100,
    "thread_count": 1,
    "domain": None,
    "worker_id": None,
    "paused": False,
    "batch_size": None,
    "execution_timeout": None,
}
_CONVERT = {
    "poll_interval": int,
    "poll_timeout": int,
    "thread_count": int,
    "batch_size": int,
    "execution_timeout": float,
    "paused": truthy,
    "domain": lambda v: str(v) or None,
    "worker_id": lambda v: str(v) or None,
}
MAX_POLL_TIMEOUT_MS = 5000  # the server refuses longer long-polls


@dataclass(frozen=True)
class WorkerSettings:
    task_name: str
    poll_interval_ms: int
    poll_timeout_ms: int
    thread_count: int
    batch_size: int
    domain: str | None
    worker_id: str
    paused: bool
    execution_timeout_s: float | None = None  # None: only the task's responseTimeoutSeconds applies


def _env_key(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def _lookup(env: Mapping[str, str], scope: str, prop: str) -> str | None:
    for key in (
        f"CONDUCTOR_WORKER_{_env_key(scope)}_{prop.upper()}",
        f"conductor_worker_{scope}_{prop}",
        f"conductor.worker.{scope}.{prop}",
    ):
        if key in env:
            return env[key]
    return None


def default_worker_id(env: Mapping[str, str]) -> str:
    """Pod name in Kubernetes (POD_NAME / HOSTNAME), else the host name."""
    return env.get("POD_NAME") or env.get("HOSTNAME") or socket.gethostname()


def resolve(
    spec: WorkerSpec,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> WorkerSettings:
    """Resolve one task type's settings; raises ValueError naming the bad variable."""
    env = os.environ if env is None else env
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    declared = {
        "poll_interval": spec.poll_interval_millis,
        "poll_timeout": spec.poll_timeout_millis,
        "thread_count": spec.thread_count,
        "domain": spec.domain,
        "worker_id": spec.worker_id,
        "batch_size": spec.batch_size,
        "execution_timeout": spec.execution_timeout,
    }
    values: dict[str, Any] = {}
    for prop, default in DEFAULTS.items():
        if prop in overrides:
            values[prop] = overrides[prop]
            continue
        raw = _lookup(env, spec.task_definition_name, prop)
        if raw is None:
            raw = _lookup(env, "all", prop)
        if raw is not None:
            try:
                values[prop] = _CONVERT[prop](raw)
            except ValueError as exc:
                raise ValueError(f"worker '{spec.task_definition_name}': bad {prop} {raw!r}: {exc}") from exc
        elif declared.get(prop) is not None:
            values[prop] = declared[prop]
        else:
            values[prop] = default
    name = spec.task_definition_name
    for prop, low in (("thread_count", 1), ("batch_size", 1), ("poll_interval", 0), ("poll_timeout", 0)):
        if values[prop] is not None and int(values[prop]) < low:
            raise ValueError(f"worker '{name}': {prop} must be >= {low}, got {values[prop]}")
    thread_count = int(values["thread_count"])
    batch = int(values["batch_size"] or thread_count)
    return WorkerSettings(
        task_name=name,
        poll_interval_ms=int(values["poll_interval"]),
        poll_timeout_ms=min(MAX_POLL_TIMEOUT_MS, int(values["poll_timeout"])),  # the server's own limit
        thread_count=thread_count,
        batch_size=min(batch, thread_count),
        domain=values["domain"],
        worker_id=values["worker_id"] or default_worker_id(env),
        paused=bool(values["paused"]),
        execution_timeout_s=_positive_or_none(values["execution_timeout"]),
    )


def _positive_or_none(value: Any) -> float | None:
    return float(value) if value is not None and float(value) > 0 else None
