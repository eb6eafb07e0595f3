"""Configuration precedence, backoff and token expiry: pure logic."""

from __future__ import annotations

import base64
import json
import random

import pytest

from worker_runtime.auth import DEFAULT_TTL, token_expiry
from worker_runtime.backoff import Backoff
from worker_runtime.config import resolve
from worker_runtime.worker import WorkerSpec


def _spec(**declared) -> WorkerSpec:
    return WorkerSpec("order-created", lambda: None, **declared)


def test_defaults_when_nothing_is_set():
    s = resolve(_spec(), env={"HOSTNAME": "pod-1"})
    assert (s.thread_count, s.batch_size, s.poll_interval_ms, s.poll_timeout_ms) == (1, 1, 100, 100)
    assert (s.domain, s.paused, s.worker_id) == (None, False, "pod-1")


def test_precedence_flag_over_task_env_over_global_env_over_decorator():
    spec = _spec(thread_count=2, domain="code", poll_interval_millis=300)
    env = {"CONDUCTOR_WORKER_ALL_THREAD_COUNT": "4", "CONDUCTOR_WORKER_ALL_DOMAIN": "global"}
    assert resolve(spec, env).thread_count == 4
    assert resolve(spec, env).domain == "global"
    assert resolve(spec, env).poll_interval_ms == 300  # decorator, nothing overrides it
    env["CONDUCTOR_WORKER_ORDER_CREATED_THREAD_COUNT"] = "8"
    env["conductor.worker.order-created.domain"] = "dotted"
    assert resolve(spec, env).thread_count == 8
    assert resolve(spec, env).domain == "dotted"
    assert resolve(spec, env, overrides={"thread_count": 16, "domain": None}).thread_count == 16
    assert resolve(spec, env, overrides={"domain": None}).domain == "dotted"  # None means "not given"


def test_paused_batch_size_and_poll_timeout_bounds():
    env = {
        "CONDUCTOR_WORKER_ALL_PAUSED": "true",
        "CONDUCTOR_WORKER_ALL_POLL_TIMEOUT": "99999",
        "CONDUCTOR_WORKER_ALL_THREAD_COUNT": "5",
        "CONDUCTOR_WORKER_ALL_BATCH_SIZE": "50",
    }
    s = resolve(_spec(), env)
    assert s.paused is True
    assert s.poll_timeout_ms == 5000  # the server refuses longer long-polls
    assert s.batch_size == 5  # never more than the slots


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CONDUCTOR_WORKER_ALL_THREAD_COUNT": "many"}, "bad thread_count 'many'"),
        ({"CONDUCTOR_WORKER_ALL_THREAD_COUNT": "0"}, "thread_count must be >= 1"),
        ({"CONDUCTOR_WORKER_ALL_PAUSED": "ture"}, "bad paused 'ture': 'ture' is not a boolean"),
        ({"CONDUCTOR_WORKER_ALL_BATCH_SIZE": "0"}, "batch_size must be >= 1, got 0"),
        ({"CONDUCTOR_WORKER_ALL_POLL_INTERVAL": "-1"}, "poll_interval must be >= 0, got -1"),
        ({"CONDUCTOR_WORKER_ALL_POLL_TIMEOUT": "-5"}, "poll_timeout must be >= 0, got -5"),
    ],
)
def test_bad_values_name_the_setting(env, message):
    with pytest.raises(ValueError, match=message):
        resolve(_spec(), env)


def test_backoff_grows_exponentially_is_capped_jittered_and_resets():
    b = Backoff(base=0.1, cap=1.0, factor=2.0, jitter=0.5, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(8)]
    raws = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
    for d, raw in zip(delays, raws, strict=True):
        assert raw * 0.5 <= d <= raw
    assert len(set(delays[4:])) > 1  # jitter spreads capped delays
    b.reset()
    assert b.next_delay() <= 0.1


def test_token_expiry_reads_the_jwt_exp_claim_or_falls_back():
    claims = base64.urlsafe_b64encode(json.dumps({"exp": 2_000_000_000}).encode()).decode().rstrip("=")
    assert token_expiry(f"h.{claims}.s", now=0) == 2_000_000_000
    assert token_expiry("opaque-token", now=100) == 100 + DEFAULT_TTL


def test_execution_timeout_from_the_decorator_or_the_environment_and_off_when_not_positive():
    assert resolve(_spec(), env={}).execution_timeout_s is None
    assert resolve(_spec(execution_timeout=30), env={}).execution_timeout_s == 30
    env = {"CONDUCTOR_WORKER_ORDER_CREATED_EXECUTION_TIMEOUT": "2.5"}
    assert resolve(_spec(execution_timeout=30), env).execution_timeout_s == 2.5
    assert resolve(_spec(), {"CONDUCTOR_WORKER_ALL_EXECUTION_TIMEOUT": "0"}).execution_timeout_s is None
    with pytest.raises(ValueError, match="execution_timeout"):
        resolve(_spec(), {"CONDUCTOR_WORKER_ALL_EXECUTION_TIMEOUT": "soon"})


# The Python SDK's names (conductor-python 2.0 worker_config.py and its docstring's examples), each read
# the way the SDK reads it: (env, task, expected (thread_count, domain, poll_interval_ms)).
SDK_NAMES = [
    ({"conductor.worker.process_order.domain": "production"}, "process_order", (1, "production", 100)),
    ({"conductor.worker.all.poll_interval": "500"}, "process_order", (1, None, 500)),
    ({"CONDUCTOR_WORKER_GET-INVENTORY_THREAD_COUNT": "7"}, "get-inventory", (7, None, 100)),  # '-' kept
    ({"CONDUCTOR_WORKER_get-inventory_THREAD_COUNT": "6"}, "get-inventory", (6, None, 100)),  # as written
    ({"conductor_worker_get-inventory_domain": "eu"}, "get-inventory", (1, "eu", 100)),
    ({"CONDUCTOR_WORKER_GET_INVENTORY_THREAD_COUNT": "3"}, "get-inventory", (3, None, 100)),  # the runtime's form
    ({"CONDUCTOR_WORKER_THREAD_COUNT": "9", "CONDUCTOR_WORKER_DOMAIN": "old"}, "t", (9, "old", 100)),  # old global
    ({"conductor_worker_poll_interval": "250"}, "t", (1, None, 250)),
    ({"CONDUCTOR_WORKER_T_POLLING_INTERVAL": "40"}, "t", (1, None, 40)),  # the SDK's older name
    ({"CONDUCTOR_WORKER_ALL_POLL_INTERVAL": "12.6"}, "t", (1, None, 13)),  # a float, as the SDK parses it
    # order: the dotted per-task name first, then the upper-case one, then the global ones
    (
        {
            "conductor.worker.t.thread_count": "2",
            "CONDUCTOR_WORKER_T_THREAD_COUNT": "3",
            "CONDUCTOR_WORKER_ALL_THREAD_COUNT": "4",
        },
        "t",
        (2, None, 100),
    ),
    (
        {"conductor.worker.all.domain": "a", "CONDUCTOR_WORKER_ALL_DOMAIN": "b", "CONDUCTOR_WORKER_DOMAIN": "c"},
        "t",
        (1, "a", 100),
    ),
]


@pytest.mark.parametrize(("env", "task", "expected"), SDK_NAMES)
def test_the_sdks_names_are_read_as_the_sdk_reads_them(env, task, expected):
    s = resolve(WorkerSpec(task, lambda: None), env)
    assert (s.thread_count, s.domain, s.poll_interval_ms) == expected


def test_names_that_differ_only_in_dash_and_underscore_do_not_collide():
    env = {"CONDUCTOR_WORKER_GET_INVENTORY_THREAD_COUNT": "8", "CONDUCTOR_WORKER_GET-INVENTORY_THREAD_COUNT": "2"}
    names = ["get-inventory", "get_inventory"]
    dash, under = (resolve(WorkerSpec(n, lambda: None), env, others=names) for n in names)
    assert (dash.thread_count, under.thread_count) == (2, 8)  # each its own exact name
    alone = resolve(WorkerSpec("get-inventory", lambda: None), {"CONDUCTOR_WORKER_GET_INVENTORY_THREAD_COUNT": "8"})
    assert alone.thread_count == 8  # unambiguous: the runtime's own form applies
    ambiguous = resolve(
        WorkerSpec("get-inventory", lambda: None), {"CONDUCTOR_WORKER_GET_INVENTORY_THREAD_COUNT": "8"}, others=names
    )
    assert ambiguous.thread_count == 1  # meant for get_inventory, not for get-inventory


def test_exact_settings_name_a_task_called_all_without_touching_the_others():
    env = {
        "CONDUCTOR_WORKER_TASK_SETTINGS": json.dumps({"all": {"thread_count": 5, "domain": "x"}, "b": {"paused": True}})
    }
    task_all, task_b = (resolve(WorkerSpec(n, lambda: None), env, others=["all", "b"]) for n in ("all", "b"))
    assert (task_all.thread_count, task_all.domain, task_all.paused) == (5, "x", False)
    assert (task_b.thread_count, task_b.domain, task_b.paused) == (1, None, True)
    with pytest.raises(ValueError, match="CONDUCTOR_WORKER_TASK_SETTINGS is not JSON"):
        resolve(WorkerSpec("b", lambda: None), {"CONDUCTOR_WORKER_TASK_SETTINGS": "{nope"})
