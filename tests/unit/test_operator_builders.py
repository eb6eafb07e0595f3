"""Builders: the manifests' contract (env, secrets by reference, probes, ports, security, ownership)."""

from __future__ import annotations

import copy
import json

import pytest

from conductor_operator import builders
from conductor_operator.config import DEFAULT_WORKER_IMAGE, Config

OWNER = builders.Owner(name="orders", namespace="prod", uid="uid-1")
CONFIG = Config()
SPEC = {
    "conductor": {
        "serverUrl": "http://conductor:8080/api",
        "authSecretRef": {"name": "orkes", "keyIdKey": "id", "keySecretKey": "secret"},
    },
    "image": "registry/workers:1",
    "modules": ["shop.workers", "shop.more"],
    "tasks": [
        {
            "name": "charge-card",
            "domain": "eu",
            "concurrency": 4,
            "pollIntervalMs": 200,
            "pollTimeoutMs": 1000,
            "batchSize": 2,
        },
        {"name": "ship", "concurrency": 1, "paused": True},
    ],
    "replicas": 2,
    "terminationGracePeriodSeconds": 60,
    "metrics": {"port": 9100, "serviceMonitor": {"enabled": True, "interval": "15s"}},
    "template": {
        "labels": {"team": "shop"},
        "annotations": {"a": "b"},
        "env": [{"name": "EXTRA", "value": "1"}, {"name": "CONDUCTOR_SERVER_URL", "value": "http://other/api"}],
        "resources": {"limits": {"cpu": "1"}},
        "nodeSelector": {"pool": "workers"},
        "serviceAccountName": "shop",
        "securityContext": {"runAsUser": 2000},
    },
}


def env_map(dep):
    return {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_deployment_runs_the_runtime_with_tasks_modules_and_server():
    dep = builders.deployment(OWNER, SPEC, 3, CONFIG)
    assert dep["spec"]["replicas"] == 3
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "registry/workers:1" and c["command"] == ["conductor-worker"]
    assert c["args"][:1] == ["run"]
    assert c["args"][c["args"].index("--metrics-port") + 1] == "9100"
    assert c["args"][c["args"].index("--drain-timeout") + 1] == "55"
    assert [c["args"][i + 1] for i, a in enumerate(c["args"]) if a == "--module"] == ["shop.workers", "shop.more"]
    env = env_map(dep)
    assert env["CONDUCTOR_SERVER_URL"]["value"] == "http://other/api"  # user override replaces, no duplicate
    assert [e["name"] for e in c["env"]].count("CONDUCTOR_SERVER_URL") == 1
    assert env["CONDUCTOR_WORKER_TASKS"]["value"] == "charge-card,ship"
    assert env["CONDUCTOR_WORKER_CHARGE_CARD_THREAD_COUNT"]["value"] == "4"
    assert env["CONDUCTOR_WORKER_CHARGE_CARD_DOMAIN"]["value"] == "eu"
    assert env["CONDUCTOR_WORKER_CHARGE_CARD_POLL_INTERVAL"]["value"] == "200"
    assert env["CONDUCTOR_WORKER_CHARGE_CARD_POLL_TIMEOUT"]["value"] == "1000"
    assert env["CONDUCTOR_WORKER_CHARGE_CARD_BATCH_SIZE"]["value"] == "2"
    assert env["CONDUCTOR_WORKER_SHIP_PAUSED"]["value"] == "true"
    assert "CONDUCTOR_WORKER_SHIP_DOMAIN" not in env
    assert env["EXTRA"]["value"] == "1"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_credentials_are_secret_references_never_values():
    env = env_map(builders.deployment(OWNER, SPEC, 1, CONFIG))
    assert env["CONDUCTOR_AUTH_KEY"] == {
        "name": "CONDUCTOR_AUTH_KEY",
        "valueFrom": {"secretKeyRef": {"name": "orkes", "key": "id"}},
    }
    assert env["CONDUCTOR_AUTH_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": "orkes", "key": "secret"}
    assert "value" not in env["CONDUCTOR_AUTH_SECRET"]
    spec = copy.deepcopy(SPEC)
    spec["conductor"]["authSecretRef"] = {"name": "s"}
    env = env_map(builders.deployment(OWNER, spec, 1, CONFIG))
    assert env["CONDUCTOR_AUTH_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "keyId"
    del spec["conductor"]["authSecretRef"]
    assert "CONDUCTOR_AUTH_KEY" not in env_map(builders.deployment(OWNER, spec, 1, CONFIG))


def test_probes_ports_annotations_grace_and_security():
    dep = builders.deployment(OWNER, SPEC, 1, CONFIG)
    pod = dep["spec"]["template"]
    c = pod["spec"]["containers"][0]
    assert c["ports"] == [{"name": "metrics", "containerPort": 9100, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert pod["metadata"]["annotations"] == {
        "a": "b",
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9100",
        "prometheus.io/path": "/metrics",
    }
    assert pod["spec"]["terminationGracePeriodSeconds"] == 60
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["runAsUser"] == 2000  # override
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert c["resources"] == {"limits": {"cpu": "1"}}
    assert pod["spec"]["nodeSelector"] == {"pool": "workers"} and pod["spec"]["serviceAccountName"] == "shop"


def test_labels_selector_owner_and_hash():
    dep = builders.deployment(OWNER, SPEC, 1, CONFIG)
    sel = dep["spec"]["selector"]["matchLabels"]
    assert sel == {"app.kubernetes.io/name": "conductor-worker", "app.kubernetes.io/instance": "orders"}
    assert dep["spec"]["template"]["metadata"]["labels"]["team"] == "shop"
    assert all(dep["spec"]["template"]["metadata"]["labels"][k] == v for k, v in sel.items())
    assert dep["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "conductor-operator"
    ref = dep["metadata"]["ownerReferences"][0]
    assert ref == {
        "apiVersion": "conductor.io/v1alpha1",
        "kind": "ConductorWorker",
        "name": "orders",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert (
        builders.selector_string("orders")
        == "app.kubernetes.io/name=conductor-worker,app.kubernetes.io/instance=orders"
    )
    h1 = dep["metadata"]["annotations"][builders.HASH_ANNOTATION]
    assert (
        h1 == builders.deployment(OWNER, SPEC, 7, CONFIG)["metadata"]["annotations"][builders.HASH_ANNOTATION]
    )  # replicas: same
    changed = copy.deepcopy(SPEC)
    changed["tasks"][0]["concurrency"] = 5
    assert builders.deployment(OWNER, changed, 1, CONFIG)["metadata"]["annotations"][builders.HASH_ANNOTATION] != h1


def test_default_image_from_the_config_not_the_environment(monkeypatch):
    spec = {k: v for k, v in SPEC.items() if k != "image"}
    monkeypatch.setenv("CWO_DEFAULT_WORKER_IMAGE", "example/ignored:1")  # builders read no environment
    mine = Config(default_worker_image="example/runtime:9")
    assert (
        builders.deployment(OWNER, spec, 1, mine)["spec"]["template"]["spec"]["containers"][0]["image"]
        == "example/runtime:9"
    )
    assert (
        builders.deployment(OWNER, spec, 1, CONFIG)["spec"]["template"]["spec"]["containers"][0]["image"]
        == DEFAULT_WORKER_IMAGE
    )
    assert (
        Config.from_env({"CWO_DEFAULT_WORKER_IMAGE": "example/runtime:9"}).default_worker_image == "example/runtime:9"
    )


def test_minimal_spec_gets_defaults():
    spec = {"conductor": {"serverUrl": "http://c/api"}, "tasks": [{"name": "t"}]}
    dep = builders.deployment(OWNER, spec, None, CONFIG)
    assert "replicas" not in dep["spec"]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["ports"][0]["containerPort"] == 8000
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 60
    assert "--module" not in c["args"]
    assert builders.drain_timeout(10) == 9 and builders.drain_timeout(1) == 0 and builders.drain_timeout(300) == 295


def test_service_service_monitor_and_pdb():
    svc = builders.service(OWNER, SPEC)
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 9100, "targetPort": "metrics", "protocol": "TCP"}]
    assert svc["spec"]["selector"] == builders.selector_labels("orders")
    assert svc["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert builders.service_monitor_wanted(SPEC)
    sm = builders.service_monitor(OWNER, SPEC)
    assert sm["apiVersion"] == "monitoring.coreos.com/v1" and sm["kind"] == "ServiceMonitor"
    assert sm["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s"}]
    assert all(svc["metadata"]["labels"][k] == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
    assert not builders.service_monitor_wanted({"metrics": {"port": 1}})
    assert builders.pdb_wanted(SPEC, 2) and not builders.pdb_wanted(SPEC, 1)
    assert not builders.pdb_wanted({"podDisruptionBudget": {"enabled": False}}, 5)
    pdb = builders.pod_disruption_budget(OWNER, SPEC)
    assert pdb["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": builders.selector_labels("orders")},
        # an outage of Conductor makes pods unready; they must not block node drains
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }


def test_env_task_name_and_replica_helpers():
    assert builders.env_task_name("charge-card.v2") == "CHARGE_CARD_V2"
    assert builders.fixed_replicas({}) == 1 and builders.fixed_replicas({"replicas": 0}) == 0
    assert not builders.autoscaling_enabled({}) and builders.autoscaling_enabled({"autoscaling": {"enabled": True}})
    assert builders.task_names(SPEC) == ["charge-card", "ship"]


# -- workers of other SDKs (spec.sdk, spec.container) -----------------------------------------------

GO_SPEC = {
    "conductor": {"serverUrl": "http://conductor:8080/api", "authSecretRef": {"name": "orkes"}},
    "sdk": "go",
    "container": {
        "image": "registry/go-worker:1",
        "command": ["/worker"],
        "args": ["--verbose"],
        "env": [{"name": "LOG_LEVEL", "value": "debug"}, {"name": "CONDUCTOR_WORKER_METRICS_PORT", "value": "7"}],
        "ports": [{"name": "http", "containerPort": 8080}],
    },
    "metrics": {"path": "/prom"},
    "tasks": [{"name": "get-inventory", "domain": "john", "concurrency": 4, "pollIntervalMs": 100}],
    "template": {"env": [{"name": "LOG_LEVEL", "value": "info"}]},
    "sidecar": {"enabled": False},  # the worker talks to the server itself (the sidecar's tests are below)
}


def container(spec):
    return builders.deployment(OWNER, spec, 1, CONFIG)["spec"]["template"]["spec"]["containers"][0]


def test_sdk_worker_runs_the_users_container_with_its_sdk_env():
    c = container(GO_SPEC)
    assert (c["name"], c["image"], c["command"], c["args"]) == (
        "worker",
        "registry/go-worker:1",
        ["/worker"],
        ["--verbose"],
    )
    assert c["imagePullPolicy"] == "IfNotPresent"
    env = {e["name"]: e for e in c["env"]}
    assert env["CONDUCTOR_SERVER_URL"]["value"] == "http://conductor:8080/api"
    # conductor-go's names (sdk_env): concurrency is its batch size
    assert env["CONDUCTOR_WORKER_GET_INVENTORY_BATCH_SIZE"]["value"] == "4"
    assert env["CONDUCTOR_WORKER_GET_INVENTORY_DOMAIN"]["value"] == "john"
    assert env["CONDUCTOR_WORKER_GET_INVENTORY_POLL_INTERVAL"]["value"] == "100"
    assert env["CONDUCTOR_AUTH_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "orkes", "key": "keyId"}}
    assert "value" not in env["CONDUCTOR_AUTH_SECRET"]
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # container.env overrides the operator's, template.env overrides both; each name once
    assert env["CONDUCTOR_WORKER_METRICS_PORT"]["value"] == "7" and env["LOG_LEVEL"]["value"] == "info"
    assert len(c["env"]) == len(env)
    # nothing of the python runtime
    assert not {"CONDUCTOR_WORKER_TASKS", "CONDUCTOR_WORKER_MODULES"} & set(env)
    assert "CONDUCTOR_WORKER_GET_INVENTORY_THREAD_COUNT" not in env


def test_each_sdk_gets_its_own_variable_names_and_metrics_port():
    names = {
        "java": ("conductor.worker.get-inventory.threadCount", 9991),
        "javascript": ("CONDUCTOR_WORKER_GET-INVENTORY_CONCURRENCY", 9090),
        "go": ("CONDUCTOR_WORKER_GET_INVENTORY_BATCH_SIZE", 2112),
    }
    for sdk, (var, port) in names.items():
        spec = {**GO_SPEC, "sdk": sdk, "container": {"image": "i"}, "template": {}}
        c = container(spec)
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env[var] == "4", sdk
        assert env["CONDUCTOR_WORKER_METRICS_PORT"] == str(port), sdk
        assert c["ports"] == [{"containerPort": port, "protocol": "TCP", "name": "metrics"}], sdk
        assert builders.service(OWNER, spec)["spec"]["ports"][0]["port"] == port


def test_sdk_worker_has_no_probe_unless_given_and_the_same_hardening():
    dep = builders.deployment(OWNER, GO_SPEC, 1, CONFIG)
    pod = dep["spec"]["template"]
    c = pod["spec"]["containers"][0]
    assert not {"livenessProbe", "readinessProbe", "startupProbe"} & set(c)  # no /healthz to assume
    assert c["securityContext"] == {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    sec = pod["spec"]["securityContext"]
    assert sec["runAsNonRoot"] is True and "runAsUser" not in sec  # the image's numeric USER
    assert c["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["spec"]["volumes"][0] == {"name": "tmp", "emptyDir": {}}
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/prom"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "2112"
    probe = {"httpGet": {"path": "/live", "port": 8080}}
    spec = copy.deepcopy(GO_SPEC)
    spec["container"].update(livenessProbe=probe, resources={"limits": {"memory": "64Mi"}}, envFrom=[{"a": 1}])
    spec["template"] = {"envFrom": [{"t": 1}], "securityContext": {"runAsUser": 4242}}
    c = container(spec)
    assert c["livenessProbe"] == probe and "readinessProbe" not in c
    assert c["resources"] == {"limits": {"memory": "64Mi"}} and c["envFrom"] == [{"t": 1}, {"a": 1}]
    assert (
        builders.deployment(OWNER, spec, 1, CONFIG)["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 4242
    )


def test_sdk_metrics_port_naming_service_and_service_monitor():
    # the user's port 8080 stays; the metrics port is added and named
    assert container(GO_SPEC)["ports"] == [
        {"name": "http", "containerPort": 8080},
        {"containerPort": 2112, "protocol": "TCP", "name": "metrics"},
    ]
    spec = copy.deepcopy(GO_SPEC)
    spec["container"]["ports"] = [{"containerPort": 2112}]  # listed without a name: named metrics
    assert container(spec)["ports"] == [{"containerPort": 2112, "name": "metrics"}]
    assert builders.service(OWNER, spec)["spec"]["ports"][0]["targetPort"] == "metrics"
    spec["container"]["ports"] = [{"name": "prom", "containerPort": 2112}]  # the user's name is kept
    assert container(spec)["ports"] == [{"name": "prom", "containerPort": 2112}]
    assert builders.service(OWNER, spec)["spec"]["ports"][0]["targetPort"] == 2112
    spec["metrics"] = {"path": "/prom", "serviceMonitor": {"enabled": True}}
    sm = builders.service_monitor(OWNER, spec)
    assert sm["spec"]["endpoints"] == [{"port": "metrics", "path": "/prom", "interval": "30s"}]


def test_metrics_disabled_means_no_service_no_scrape_annotations_no_port():
    spec = {**GO_SPEC, "metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}}
    assert (
        not builders.metrics_enabled(spec)
        and not builders.service_wanted(spec)
        and not builders.service_monitor_wanted(spec)
    )
    pod = builders.deployment(OWNER, spec, 1, CONFIG)["spec"]["template"]
    assert not any(k.startswith("prometheus.io/") for k in pod["metadata"]["annotations"])
    assert pod["spec"]["containers"][0]["ports"] == [{"name": "http", "containerPort": 8080}]
    assert builders.metrics_enabled(SPEC) and builders.service_wanted(SPEC)


def test_python_stays_the_default_and_task_slots():
    assert builders.sdk({}) == "python" and builders.is_runtime(SPEC) and not builders.is_runtime(GO_SPEC)
    assert builders.metrics_port({}) == 8000 and builders.metrics_path({}) == "/metrics"
    assert builders.task_slots(SPEC) == {"charge-card": 4, "ship": 1}
    assert builders.task_slots({"tasks": [{"name": "t"}]}) == {"t": 1}


# -- the Conductor sidecar in pods of other SDKs ------------------------------------------------------

SIDECAR_SPEC = {k: v for k, v in GO_SPEC.items() if k != "sidecar"}


def pod_spec(spec):
    return builders.deployment(OWNER, spec, 1, CONFIG)["spec"]["template"]["spec"]


def test_every_sdk_pod_gets_the_sidecar_as_a_native_sidecar_holding_the_server_and_credentials():
    pod = pod_spec(SIDECAR_SPEC)
    assert pod["shareProcessNamespace"] is True
    (side,) = pod["initContainers"]
    assert (side["name"], side["image"], side["restartPolicy"]) == (
        "conductor-sidecar",
        CONFIG.default_worker_image,
        "Always",
    )
    assert side["args"][:5] == ["sidecar", "--port", "7700", "--metrics-port", "7701"]
    assert side["args"][side["args"].index("--drain-timeout") + 1] == str(builders.drain_timeout(60))
    env = {e["name"]: e for e in side["env"]}
    assert env["CONDUCTOR_SERVER_URL"]["value"] == "http://conductor:8080/api"
    assert env["CONDUCTOR_AUTH_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "orkes", "key": "keyId"}}
    assert json.loads(env["CONDUCTOR_SIDECAR_TASKS"]["value"]) == [
        {"name": "get-inventory", "domain": "john", "concurrency": 4}
    ]
    sec = side["securityContext"]
    assert sec["runAsUser"] == 10001 and sec["readOnlyRootFilesystem"] and sec["capabilities"] == {"drop": ["ALL"]}
    assert side["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "sidecar-metrics"}
    # the worker talks to the sidecar and holds no credentials; the kubelet drains the pod before SIGTERM
    worker = pod["containers"][0]
    wenv = {e["name"]: e for e in worker["env"]}
    assert wenv["CONDUCTOR_SERVER_URL"]["value"] == "http://127.0.0.1:7700/api"
    assert not {"CONDUCTOR_AUTH_KEY", "CONDUCTOR_AUTH_SECRET"} & set(wenv)
    assert worker["lifecycle"] == {"preStop": {"httpGet": {"path": "/drain", "port": 7701}}}
    # the sidecar's page is the one scraped; the user's ports stay as they are
    assert worker["ports"] == [{"name": "http", "containerPort": 8080}]
    svc = builders.service(OWNER, SIDECAR_SPEC)["spec"]["ports"][0]
    assert (svc["port"], svc["targetPort"]) == (7701, "sidecar-metrics")
    annotations = builders.deployment(OWNER, SIDECAR_SPEC, 1, CONFIG)["spec"]["template"]["metadata"]["annotations"]
    assert (annotations["prometheus.io/port"], annotations["prometheus.io/path"]) == ("7701", "/metrics")
    assert builders.drains(SIDECAR_SPEC) and not builders.drains(GO_SPEC) and builders.drains(SPEC)


def test_the_sidecar_serves_metrics_even_when_the_worker_does_not_and_can_be_turned_off():
    spec = {**SIDECAR_SPEC, "metrics": {"enabled": False}}
    assert builders.metrics_enabled(spec) and builders.service_wanted(spec)
    assert "initContainers" not in pod_spec(GO_SPEC) and "shareProcessNamespace" not in pod_spec(GO_SPEC)
    assert "initContainers" not in pod_spec(SPEC)  # the runtime needs none
    spec = {**SIDECAR_SPEC, "sidecar": {"image": "mine/sidecar:2", "resources": {"limits": {"memory": "1Gi"}}}}
    (side,) = pod_spec(spec)["initContainers"]
    assert side["image"] == "mine/sidecar:2" and side["resources"] == {"limits": {"memory": "1Gi"}}


def test_task_names_the_sdk_names_cannot_tell_apart_reach_the_runtime_exactly():
    """A task named `all`, and two names that differ only in '-' and '_', get no name-form variables (they
    would be every task's, or each other's); the exact JSON carries them, and the runtime reads it."""
    from worker_runtime.config import resolve
    from worker_runtime.worker import WorkerSpec

    tasks = [
        {"name": "all", "concurrency": 5},
        {"name": "get-inventory", "concurrency": 2},
        {"name": "get_inventory", "concurrency": 3, "domain": "eu"},
        {"name": "ship", "concurrency": 4},
    ]
    env = {e["name"]: e.get("value") for e in builders.worker_env({**SPEC, "tasks": tasks})}
    assert not [k for k in env if k.startswith(("CONDUCTOR_WORKER_ALL_", "CONDUCTOR_WORKER_GET_INVENTORY_"))]
    assert env["CONDUCTOR_WORKER_SHIP_THREAD_COUNT"] == "4"  # unambiguous: the readable form stays
    names = [t["name"] for t in tasks]
    seen = {n: resolve(WorkerSpec(n, lambda: None), env, others=names) for n in names}
    assert {n: (s.thread_count, s.domain) for n, s in seen.items()} == {
        "all": (5, None),
        "get-inventory": (2, None),
        "get_inventory": (3, "eu"),
        "ship": (4, None),
    }


@pytest.mark.parametrize(
    ("timeouts", "grace"),
    [
        ([], 60),  # no definition read: the old default
        ([None, None], 60),  # definitions without a response timeout
        ([30], 60),  # short tasks: never below 60 s
        ([100, 240], 245),  # the longest, plus the drain's margin
        ([3600], 600),  # Conductor's default response timeout: the documented cap
    ],
)
def test_the_default_grace_covers_the_longest_response_timeout_up_to_the_cap(timeouts, grace):
    assert builders.default_grace(timeouts) == grace


def test_a_default_grace_reaches_the_pod_and_the_drain_but_never_overrides_the_spec():
    unset = {k: v for k, v in SPEC.items() if k != "terminationGracePeriodSeconds"}
    pod = builders.deployment(OWNER, unset, 1, CONFIG, grace=245)["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 245
    args = pod["containers"][0]["args"]
    assert args[args.index("--drain-timeout") + 1] == "240"  # the drain covers the 240 s response timeout
    assert (
        builders.deployment(OWNER, unset, 1, CONFIG)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 60
    )
    explicit = builders.deployment(OWNER, SPEC, 1, CONFIG, grace=245)["spec"]["template"]["spec"]
    assert explicit["terminationGracePeriodSeconds"] == SPEC["terminationGracePeriodSeconds"]
