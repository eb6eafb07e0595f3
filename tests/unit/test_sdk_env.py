"""sdk_env: each SDK's variable names for server, credentials and per-task settings."""

from __future__ import annotations

import re

import pytest

from conductor_operator.sdk_env import CONVENTIONS, TASK_FIELDS, sdk_env

URL = "http://conductor:8080/api"
TASKS = [{"name": "get-inventory", "domain": "john", "concurrency": 4, "pollIntervalMs": 250}]
SECRET = {"name": "orkes-creds"}
POD_NAME = {"fieldRef": {"fieldPath": "metadata.name"}}


def as_map(env: list[dict]) -> dict[str, object]:
    names = [e["name"] for e in env]
    assert len(names) == len(set(names)), names
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in env}


@pytest.mark.parametrize(
    ("sdk", "expected"),
    [
        (
            "python",
            {
                "CONDUCTOR_WORKER_GET_INVENTORY_THREAD_COUNT": "4",
                "CONDUCTOR_WORKER_GET_INVENTORY_DOMAIN": "john",
                "CONDUCTOR_WORKER_GET_INVENTORY_POLL_INTERVAL": "250",
                "CONDUCTOR_WORKER_METRICS_PORT": "8000",
            },
        ),
        (
            "go",
            {
                "CONDUCTOR_WORKER_GET_INVENTORY_BATCH_SIZE": "4",
                "CONDUCTOR_WORKER_GET_INVENTORY_DOMAIN": "john",
                "CONDUCTOR_WORKER_GET_INVENTORY_POLL_INTERVAL": "250",
                "CONDUCTOR_WORKER_METRICS_PORT": "2112",
            },
        ),
        (
            "javascript",
            {
                # the SDK upper-cases the task name as it is: the '-' stays
                "CONDUCTOR_WORKER_GET-INVENTORY_CONCURRENCY": "4",
                "CONDUCTOR_WORKER_GET-INVENTORY_DOMAIN": "john",
                "CONDUCTOR_WORKER_GET-INVENTORY_POLL_INTERVAL": "250",
                "CONDUCTOR_WORKER_METRICS_PORT": "9090",
            },
        ),
        (
            "java",
            {
                "conductor.worker.get-inventory.threadCount": "4",
                "conductor.worker.get-inventory.domain": "john",
                "conductor.worker.get-inventory.pollInterval": "250",
                "CONDUCTOR_WORKER_METRICS_PORT": "9991",
            },
        ),
    ],
)
def test_each_sdk_gets_its_own_names(sdk, expected):
    env = as_map(sdk_env(sdk, TASKS, URL))
    assert env == {"CONDUCTOR_SERVER_URL": URL, "POD_NAME": POD_NAME, **expected}


@pytest.mark.parametrize("sdk", sorted(CONVENTIONS))
def test_credentials_only_as_secret_refs(sdk):
    env = sdk_env(sdk, TASKS, URL, auth_secret_ref={"name": "creds", "keySecretKey": "secret"})
    by_name = {e["name"]: e for e in env}
    assert by_name["CONDUCTOR_AUTH_KEY"] == {
        "name": "CONDUCTOR_AUTH_KEY",
        "valueFrom": {"secretKeyRef": {"name": "creds", "key": "keyId"}},
    }
    assert by_name["CONDUCTOR_AUTH_SECRET"]["valueFrom"] == {"secretKeyRef": {"name": "creds", "key": "secret"}}
    assert all("value" not in e for e in env if e["name"].startswith("CONDUCTOR_AUTH"))


@pytest.mark.parametrize("sdk", sorted(CONVENTIONS))
def test_names_are_valid_kubernetes_env_names(sdk):
    tasks = [{"name": "a.b-c_d", "domain": "x", "concurrency": 1, "pollIntervalMs": 10}]
    for e in sdk_env(sdk, tasks, URL, auth_secret_ref=SECRET):
        assert re.fullmatch(r"[-._a-zA-Z][-._a-zA-Z0-9]*", e["name"]), e["name"]


def test_unset_fields_leave_the_workers_defaults():
    env = as_map(sdk_env("go", [{"name": "t"}, {"name": "u", "domain": "", "concurrency": 2}], URL, metrics_port=9000))
    assert env == {
        "CONDUCTOR_SERVER_URL": URL,
        "POD_NAME": POD_NAME,
        "CONDUCTOR_WORKER_METRICS_PORT": "9000",
        "CONDUCTOR_WORKER_U_BATCH_SIZE": "2",
    }


def test_several_tasks_each_get_their_variables():
    tasks = [{"name": "get-inventory", "concurrency": 2}, {"name": "ship", "domain": "eu"}]
    env = as_map(sdk_env("javascript", tasks, URL))
    assert env["CONDUCTOR_WORKER_GET-INVENTORY_CONCURRENCY"] == "2"
    assert env["CONDUCTOR_WORKER_SHIP_DOMAIN"] == "eu"
    assert "CONDUCTOR_WORKER_SHIP_CONCURRENCY" not in env


def test_unknown_sdk_is_refused():
    with pytest.raises(ValueError, match="unknown sdk 'csharp'"):
        sdk_env("csharp", TASKS, URL)


def test_table_says_who_reads_each_setting():
    for conv in CONVENTIONS.values():
        assert set(conv.props) == set(TASK_FIELDS)
        assert set(conv.read_by) == {"server", "auth", *TASK_FIELDS, "metrics_port"}
        assert set(conv.read_by.values()) <= {"sdk", "example"}
    # the SDKs without per-task variables: the example reads them, and says so
    assert CONVENTIONS["go"].read_by["concurrency"] == "example"
    assert CONVENTIONS["java"].read_by["domain"] == "example"
    assert CONVENTIONS["javascript"].read_by["concurrency"] == "sdk"
