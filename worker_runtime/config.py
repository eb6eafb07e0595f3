"""Worker settings from the Conductor SDKs' naming: flags > per-task env > global env > decorator > default.

The names and their order are the Python SDK's (conductor-python 2.0, worker_config.py), so a worker
configured for the SDK runs the same here:
Per task:  conductor.worker.<name>.<prop>, conductor_worker_<name>_<prop>,
           CONDUCTOR_WORKER_<NAME>_<PROP> (the name upper-cased as written, '-' kept), then as written,
           (poll_interval also CONDUCTOR_WORKER_<NAME>_POLLING_INTERVAL), then this runtime's own form
           with every non-alphanumeric as '_' (CONDUCTOR_WORKER_GET_INVENTORY_...), unless another task
           of the process has the same such form
Global:    conductor.worker.all.<prop>, CONDUCTOR_WORKER_ALL_<PROP>, conductor_worker_<prop>,
           CONDUCTOR_WORKER_<PROP>
Exact:     CONDUCTOR_WORKER_TASK_SETTINGS, JSON {task name: {prop: value}}, before all of these: names are
           matched exactly (the operator sets it; a task named `all`, or two names that differ only in
           '-' and '_', cannot be told apart by the names above)
Props:     poll_interval (ms, a float is rounded), domain, worker_id, thread_count, poll_timeout (ms),
           paused, batch_size, execution_timeout (s)
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from worker_runtime import env_names
from worker_runtime.env_names import TASK_SETTINGS
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


def _millis(value: Any) -> int:
    """Milliseconds; the SDK reads poll_interval as a float."""
    return round(float(value))


_CONVERT = {
    "poll_interval": _millis,
    "poll_timeout": _millis,
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


def task_keys(name: str, prop: str, sanitized: bool = True) -> list[str]:
    """One task's variable names for a property, in the SDK's order (then the runtime's own form)."""
    keys = [
        env_names.dotted(name, prop),
        f"conductor_worker_{name}_{prop}",
        env_names.upper_verbatim(name, prop),
        f"CONDUCTOR_WORKER_{name}_{prop.upper()}",
    ]
    if prop == "poll_interval":
        keys += [env_names.upper_verbatim(name, "POLLING_INTERVAL"), f"CONDUCTOR_WORKER_{name}_POLLING_INTERVAL"]
    if sanitized:
        keys.append(env_names.upper_underscore(name, prop))
    return list(dict.fromkeys(keys))


def global_keys(prop: str) -> list[str]:
    return [
        f"conductor.worker.all.{prop}",
        f"CONDUCTOR_WORKER_ALL_{prop.upper()}",
        f"conductor_worker_{prop}",
        f"CONDUCTOR_WORKER_{prop.upper()}",
    ]


def _first(env: Mapping[str, str], keys: list[str]) -> str | None:
    for key in keys:
        if key in env:
            return env[key]
    return None


def exact_settings(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """CONDUCTOR_WORKER_TASK_SETTINGS; a value that is not {task: {prop: value}} is a ValueError."""
    raw = env.get(TASK_SETTINGS)
    if not raw:
        return {}
    try:
        found = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{TASK_SETTINGS} is not JSON: {exc}") from None
    if not isinstance(found, dict) or not all(isinstance(v, dict) for v in found.values()):
        raise ValueError(f"{TASK_SETTINGS} must be an object of task name -> {{property: value}}")
    return found


def default_worker_id(env: Mapping[str, str]) -> str:
    """Pod name in Kubernetes (POD_NAME / HOSTNAME), else the host name."""
    return env.get(env_names.POD_NAME) or env.get("HOSTNAME") or socket.gethostname()


def resolve(
    spec: WorkerSpec,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    others: Iterable[str] = (),
) -> WorkerSettings:
    """Resolve one task type's settings; raises ValueError naming the bad variable. `others`: the
    process's other task names (the runtime's own name form applies only where it is unambiguous)."""
    env = os.environ if env is None else env
    name = spec.task_definition_name
    exact = exact_settings(env).get(name) or {}
    sanitized = not any(env_names.sanitized(o) == env_names.sanitized(name) for o in others if o != name)
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
        raw = exact.get(prop)
        if raw is None:
            raw = _first(env, task_keys(name, prop, sanitized))
        if raw is None:
            raw = _first(env, global_keys(prop))
        if raw is not None:
            try:
                values[prop] = _CONVERT[prop](raw)
            except ValueError as exc:
                raise ValueError(f"worker '{spec.task_definition_name}': bad {prop} {raw!r}: {exc}") from exc
        elif declared.get(prop) is not None:
            values[prop] = declared[prop]
        else:
            values[prop] = default
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
