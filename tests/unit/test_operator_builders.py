"""Builders: the manifests' contract (env, secrets by reference, probes, ports, security, ownership)."""

from __future__ import annotations

import copy

from conductor_operator import builders as b

OWNER = b.Owner(name="orders", namespace="prod", uid="uid-1")
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
    dep = b.deployment(OWNER, SPEC, replicas=3)
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
    env = env_map(b.deployment(OWNER, SPEC, 1))
    assert env["CONDUCTOR_AUTH_KEY"] == {
        "name": "CONDUCTOR_AUTH_KEY",
        "valueFrom": {"secretKeyRef": {"name": "orkes", "key": "id"}},
    }
    assert env["CONDUCTOR_AUTH_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": "orkes", "key": "secret"}
    assert "value" not in env["CONDUCTOR_AUTH_SECRET"]
    spec = copy.deepcopy(SPEC)
    spec["conductor"]["authSecretRef"] = {"name": "s"}
    env = env_map(b.deployment(OWNER, spec, 1))
    assert env["CONDUCTOR_AUTH_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "keyId"
    del spec["conductor"]["authSecretRef"]
    assert "CONDUCTOR_AUTH_KEY" not in env_map(b.deployment(OWNER, spec, 1))


def test_probes_ports_annotations_grace_and_security():
    dep = b.deployment(OWNER, SPEC, 1)
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
    dep = b.deployment(OWNER, SPEC, 1)
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
    assert b.selector_string("orders") == "app.kubernetes.io/name=conductor-worker,app.kubernetes.io/instance=orders"
    h1 = dep["metadata"]["annotations"][b.HASH_ANNOTATION]
    assert h1 == b.deployment(OWNER, SPEC, 7)["metadata"]["annotations"][b.HASH_ANNOTATION]  # replicas: same
    changed = copy.deepcopy(SPEC)
    changed["tasks"][0]["concurrency"] = 5
    assert b.deployment(OWNER, changed, 1)["metadata"]["annotations"][b.HASH_ANNOTATION] != h1


def test_default_image_from_env(monkeypatch):
    spec = {k: v for k, v in SPEC.items() if k != "image"}
    monkeypatch.setenv("CWO_DEFAULT_WORKER_IMAGE", "example/runtime:9")
    assert b.deployment(OWNER, spec, 1)["spec"]["template"]["spec"]["containers"][0]["image"] == "example/runtime:9"
    monkeypatch.delenv("CWO_DEFAULT_WORKER_IMAGE")
    assert b.deployment(OWNER, spec, 1)["spec"]["template"]["spec"]["containers"][0]["image"] == b.DEFAULT_IMAGE


def test_minimal_spec_gets_defaults():
    spec = {"conductor": {"serverUrl": "http://c/api"}, "tasks": [{"name": "t"}]}
    dep = b.deployment(OWNER, spec, None)
    assert "replicas" not in dep["spec"]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["ports"][0]["containerPort"] == 8000
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 60
    assert "--module" not in c["args"]
    assert b.drain_timeout(10) == 9 and b.drain_timeout(1) == 0 and b.drain_timeout(300) == 295


def test_service_service_monitor_and_pdb():
    svc = b.service(OWNER, SPEC)
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 9100, "targetPort": "metrics", "protocol": "TCP"}]
    assert svc["spec"]["selector"] == b.selector_labels("orders")
    assert svc["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert b.service_monitor_wanted(SPEC)
    sm = b.service_monitor(OWNER, SPEC)
    assert sm["apiVersion"] == "monitoring.coreos.com/v1" and sm["kind"] == "ServiceMonitor"
    assert sm["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s"}]
    assert all(svc["metadata"]["labels"][k] == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
    assert not b.service_monitor_wanted({"metrics": {"port": 1}})
    assert b.pdb_wanted(SPEC, 2) and not b.pdb_wanted(SPEC, 1)
    assert not b.pdb_wanted({"podDisruptionBudget": {"enabled": False}}, 5)
    pdb = b.pod_disruption_budget(OWNER, SPEC)
    assert pdb["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": b.selector_labels("orders")},
        # an outage of Conductor makes pods unready; they must not block node drains
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }


def test_env_task_name_and_replica_helpers():
    assert b.env_task_name("charge-card.v2") == "CHARGE_CARD_V2"
    assert b.fixed_replicas({}) == 1 and b.fixed_replicas({"replicas": 0}) == 0
    assert not b.autoscaling_enabled({}) and b.autoscaling_enabled({"autoscaling": {"enabled": True}})
    assert b.task_names(SPEC) == ["charge-card", "ship"]
