"""The operator on the real kube-apiserver + kube-controller-manager: CRD, children, drift, scale, status."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from helpers import SERVICE_MONITOR_CRD, wait_for
from teststack.operator_process import OperatorProcess

pytestmark = pytest.mark.kube

REPO = Path(__file__).resolve().parents[2]


def cw(name: str, **spec) -> str:
    body = {
        "apiVersion": "conductor.io/v1alpha1",
        "kind": "ConductorWorker",
        "metadata": {"name": name},
        # An image no node has and no registry serves: these tests are about the API objects, pods never run.
        "spec": {
            "conductor": {"serverUrl": "http://127.0.0.1:18080/api"},
            "image": "example.invalid/workers:1",
            "tasks": [{"name": "resize"}],
            **spec,
        },
    }
    return yaml.safe_dump(body)


def connection(name: str, secret_ref: dict | None = None, url: str = "http://127.0.0.1:18080/api") -> str:
    """A ConductorConnection to the stack's Conductor (the operator runs on the host), with a Secret."""
    spec: dict = {"serverUrl": url, **({"authSecretRef": secret_ref} if secret_ref else {})}
    return yaml.safe_dump(
        {"apiVersion": "conductor.io/v1alpha1", "kind": "ConductorConnection", "metadata": {"name": name}, "spec": spec}
    )


def get_json(kubectl, *args):
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def deployment(k8s_api, ns, name):
    try:
        return client.AppsV1Api(k8s_api).read_namespaced_deployment(name, ns)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def service(k8s_api, ns, name):
    try:
        return client.CoreV1Api(k8s_api).read_namespaced_service(name, ns)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def cond(obj, type_):
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


def test_apply_creates_deployment_service_and_truthful_status(operator, kubectl, k8s_api, namespace):
    core = client.CoreV1Api(k8s_api)
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="orkes"),
            data={"id": base64.b64encode(b"key-1").decode(), "sec": base64.b64encode(b"s3cr3t").decode()},
        ),
    )
    kubectl(
        "apply", "-n", namespace, "-f", "-",
        input=connection("orkes-conn", {"name": "orkes", "keyIdKey": "id", "keySecretKey": "sec"}),
    )  # fmt: skip
    manifest = cw(
        "images",
        conductor={"connectionRef": {"name": "orkes-conn"}},
        image="example/workers:2",
        modules=["shop.images"],
        tasks=[{"name": "resize", "concurrency": 3, "domain": "eu"}, {"name": "thumb.v2", "pollIntervalMs": 250}],
        replicas=2,
        terminationGracePeriodSeconds=30,
        metrics={"port": 9100},
        template={"labels": {"team": "media"}, "resources": {"requests": {"cpu": "100m"}}},
    )
    kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    dep = wait_for(lambda: deployment(k8s_api, namespace, "images"), 20, "the Deployment")
    cr = get_json(kubectl, "cw", "images", "-n", namespace)

    ref = dep.metadata.owner_references[0]
    assert (ref.kind, ref.name, ref.uid, ref.controller) == ("ConductorWorker", "images", cr["metadata"]["uid"], True)
    assert dep.spec.replicas == 2
    pod = dep.spec.template
    c = pod.spec.containers[0]
    assert c.image == "example/workers:2" and c.command == ["conductor-worker"]
    assert c.args[c.args.index("--module") : c.args.index("--module") + 2] == ["--module", "shop.images"]
    assert c.args[c.args.index("--drain-timeout") + 1] == "27"
    env = {e.name: e for e in c.env}
    assert env["CONDUCTOR_SERVER_URL"].value == "http://127.0.0.1:18080/api"
    assert env["CONDUCTOR_AUTH_KEY"].value_from.secret_key_ref.to_dict() == {
        "name": "orkes",
        "key": "id",
        "optional": None,
    }
    assert env["CONDUCTOR_AUTH_SECRET"].value is None  # never the value itself
    assert "s3cr3t" not in json.dumps(client.ApiClient().sanitize_for_serialization(dep))
    assert env["CONDUCTOR_WORKER_RESIZE_THREAD_COUNT"].value == "3"
    assert env["CONDUCTOR_WORKER_RESIZE_DOMAIN"].value == "eu"
    assert env["CONDUCTOR_WORKER_THUMB_V2_POLL_INTERVAL"].value == "250"
    assert env["CONDUCTOR_WORKER_TASKS"].value == "resize,thumb.v2"
    assert c.liveness_probe.http_get.path == "/healthz" and c.readiness_probe.http_get.path == "/readyz"
    assert c.ports[0].name == "metrics" and c.ports[0].container_port == 9100
    assert pod.metadata.annotations["prometheus.io/port"] == "9100"
    assert pod.metadata.labels["team"] == "media"
    assert pod.spec.termination_grace_period_seconds == 30
    assert pod.spec.security_context.run_as_non_root is True
    assert c.security_context.read_only_root_filesystem is True
    assert c.resources.requests == {"cpu": "100m"}

    svc = core.read_namespaced_service("images", namespace)
    assert svc.spec.ports[0].port == 9100 and svc.spec.ports[0].target_port == "metrics"
    assert svc.spec.selector == dep.spec.selector.match_labels
    assert svc.metadata.owner_references[0].uid == cr["metadata"]["uid"]
    pdb = client.PolicyV1Api(k8s_api).read_namespaced_pod_disruption_budget("images", namespace)
    assert pdb.spec.max_unavailable == 1

    # Status: the Deployment controller creates 2 pods (Pending: no kubelet), none ready.
    def settled():
        obj = get_json(kubectl, "cw", "images", "-n", namespace)
        st = obj.get("status") or {}
        return st.get("replicas") == 2 and st.get("observedGeneration") == obj["metadata"]["generation"] and obj

    obj = wait_for(settled, 30, "status with 2 replicas")
    st = obj["status"]
    assert st["desiredReplicas"] == 2 and st["readyReplicas"] == 0
    assert st["selector"] == "app.kubernetes.io/name=conductor-worker,app.kubernetes.io/instance=images"
    assert cond(obj, "Degraded")["status"] == "False"
    assert cond(obj, "Ready")["status"] == "False" and cond(obj, "Ready")["message"].startswith("0/2")
    pods = core.list_namespaced_pod(namespace, label_selector=st["selector"]).items
    assert len(pods) == 2
    table = kubectl("get", "cw", "images", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "TASKS", "DESIRED", "PODS", "QUEUE", "AGE"]
    assert table[1].split()[:5] == ["images", "False", "resize,thumb.v2", "2", "0"]
    events = kubectl("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=images").stdout
    assert "Created" in events


def test_spec_change_rolls_and_hand_edits_are_reverted(operator, kubectl, k8s_api, namespace):
    kubectl("apply", "-n", namespace, "-f", "-", input=cw("roll", replicas=1))
    dep = wait_for(lambda: deployment(k8s_api, namespace, "roll"), 20, "the Deployment")
    first_hash = dep.metadata.annotations["conductor.io/spec-hash"]
    apps = client.AppsV1Api(k8s_api)
    wait_for(lambda: len(apps.list_namespaced_replica_set(namespace).items) == 1, 20, "first ReplicaSet")

    kubectl(
        "patch", "cw", "roll", "-n", namespace, "--type=merge", "-p",
        json.dumps({"spec": {"tasks": [{"name": "resize", "concurrency": 7}]}}),
    )  # fmt: skip

    def rolled():
        d = deployment(k8s_api, namespace, "roll")
        env = {e.name: e.value for e in d.spec.template.spec.containers[0].env}
        return env.get("CONDUCTOR_WORKER_RESIZE_THREAD_COUNT") == "7" and d

    d = wait_for(rolled, 20, "the new template")
    assert d.metadata.annotations["conductor.io/spec-hash"] != first_hash
    wait_for(lambda: len(apps.list_namespaced_replica_set(namespace).items) == 2, 20, "a second ReplicaSet (rollout)")

    # Hand edits of managed fields are put back (image, replicas, env).
    kubectl("set", "image", "deployment/roll", "-n", namespace, "worker=evil/image:1")
    kubectl("scale", "deployment/roll", "-n", namespace, "--replicas=4")

    def reverted():
        d = deployment(k8s_api, namespace, "roll")
        return d.spec.template.spec.containers[0].image != "evil/image:1" and d.spec.replicas == 1 and d

    wait_for(reverted, 15, "the hand edits reverted")


def test_with_a_long_resync_a_deleted_deployment_returns_and_status_follows_the_rollout(
    crd, kubectl, k8s_api, kubeconfig, namespace, tmp_path
):
    """Both are event-driven (a Deployment deletion, a Deployment status change), not resync-driven."""
    op = OperatorProcess(kubeconfig, [namespace], tmp_path / "operator.log", env={"CWO_RESYNC_SECONDS": "300"})
    op.start()
    try:
        kubectl("apply", "-n", namespace, "-f", "-", input=cw("events", replicas=2))
        first = wait_for(lambda: deployment(k8s_api, namespace, "events"), 20, "the Deployment")
        # kube-controller-manager creates the pods after our apply: the CR's status shows them
        wait_for(
            lambda: (get_json(kubectl, "cw", "events", "-n", namespace).get("status") or {}).get("replicas") == 2,
            20,
            "status.replicas 2 from the Deployment's rollout",
        )
        kubectl("delete", "deployment", "events", "-n", namespace)
        back = wait_for(
            lambda: (d := deployment(k8s_api, namespace, "events")) and d.metadata.uid != first.metadata.uid and d,
            15,
            "the deleted Deployment put back",
        )
        assert back.spec.replicas == 2
    finally:
        kubectl("delete", "conductorworkers", "--all", "-n", namespace, "--timeout=90s", check=False)
        op.stop()


def test_kubectl_scale_drives_replicas_without_autoscaling(operator, kubectl, k8s_api, namespace):
    kubectl("apply", "-n", namespace, "-f", "-", input=cw("scaled", replicas=1))
    wait_for(lambda: deployment(k8s_api, namespace, "scaled"), 20, "the Deployment")
    kubectl("scale", "cw/scaled", "-n", namespace, "--replicas=3")
    wait_for(lambda: deployment(k8s_api, namespace, "scaled").spec.replicas == 3, 15, "Deployment replicas 3")
    wait_for(
        lambda: (get_json(kubectl, "cw", "scaled", "-n", namespace).get("status") or {}).get("replicas") == 3,
        20,
        "status.replicas 3",
    )
    scale = json.loads(
        kubectl(
            "get", "--raw", f"/apis/conductor.io/v1alpha1/namespaces/{namespace}/conductorworkers/scaled/scale"
        ).stdout
    )
    assert scale["spec"]["replicas"] == 3 and scale["status"]["replicas"] == 3
    assert scale["status"]["selector"].endswith("app.kubernetes.io/instance=scaled")
    policy = client.PolicyV1Api(k8s_api)
    wait_for(lambda: policy.list_namespaced_pod_disruption_budget(namespace).items, 10, "a PDB for 3 replicas")
    kubectl("scale", "cw/scaled", "-n", namespace, "--replicas=1")
    wait_for(lambda: deployment(k8s_api, namespace, "scaled").spec.replicas == 1, 15, "Deployment replicas 1")
    wait_for(lambda: not policy.list_namespaced_pod_disruption_budget(namespace).items, 10, "PDB removed at 1")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"tasks": []}, "spec.tasks in body should have at least 1 items"),
        ({"tasks": [{"name": "bad name!"}]}, "spec.tasks[0].name in body should match"),
        ({"conductor": {"serverUrl": "http://conductor:8080"}}, "spec.conductor.serverUrl in body should match"),
        ({"replicas": -1}, "spec.replicas in body should be greater than or equal to 0"),
        (
            {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}},
            "autoscaling.minReplicas must be less than or equal to autoscaling.maxReplicas",
        ),
        ({"imagePullPolicy": "Sometimes"}, 'supported values: "Always", "IfNotPresent", "Never"'),
        ({"autoscaling": {"scaleDown": {"selectPolicy": "Fast"}}}, 'supported values: "Max", "Min", "Disabled"'),
        ({"modules": ["not a module"]}, "spec.modules[0] in body should match"),
        ({"tasks": [{"name": "a"}, {"name": "a"}]}, "Duplicate value"),
        (
            {"tasks": [{"name": "a", "concurrency": 0}]},
            "spec.tasks[0].concurrency in body should be greater than or equal to 1",
        ),
        (  # the sidecar's ports
            {"sdk": "go", "container": {"image": "x", "ports": [{"containerPort": 7701}]}},
            "ports 7700 and 7701 belong to the Conductor sidecar",
        ),
        ({"sdk": "go", "container": {"image": "x"}, "metrics": {"port": 7700}}, "ports 7700 and 7701 belong"),
    ],
)
def test_invalid_resources_are_rejected_with_a_clear_message(crd, kubectl, namespace, spec, message):
    result = kubectl("apply", "-n", namespace, "-f", "-", input=cw("invalid", **spec), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_explain_teaches_the_api(crd, kubectl):
    out = kubectl("explain", "conductorworkers.spec.autoscaling.cooldownSeconds").stdout
    assert "before scaling to zero" in out
    out = kubectl("explain", "cw.spec.tasks").stdout
    assert "Concurrent execution slots per pod" in out


def test_a_go_worker_runs_its_own_container_with_the_sdks_env(operator, kubectl, k8s_api, namespace):
    """examples/go's manifest (its serverUrl pointed at loopback): the user's image with conductor-go's
    variable names, its server URL pointed at the Conductor sidecar (a native sidecar holding the real
    URL), no probe, the runtime's hardening, the Service on the sidecar's metrics port; pods never run
    here, so the MetricsAvailable condition waits for a pod."""
    example = yaml.safe_load((REPO / "examples" / "go" / "conductorworker.yaml").read_text())
    example["spec"]["conductor"]["serverUrl"] = "http://127.0.0.1:1/api"
    example["spec"]["autoscaling"].update(minReplicas=1, pollingIntervalSeconds=1)
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(example))
    name = example["metadata"]["name"]
    dep = wait_for(lambda: deployment(k8s_api, namespace, name), 20, "the Deployment")
    c = dep.spec.template.spec.containers[0]
    assert c.image == example["spec"]["container"]["image"] and c.command is None and c.args is None
    env = {e.name: e.value for e in c.env}
    assert env["CONDUCTOR_WORKER_GET_INVENTORY_BATCH_SIZE"] == "4"
    assert env["CONDUCTOR_WORKER_GET_INVENTORY_DOMAIN"] == "john"
    assert env["CONDUCTOR_WORKER_METRICS_PORT"] == "2112"
    assert env["CONDUCTOR_SERVER_URL"] == "http://127.0.0.1:7700/api"  # the sidecar
    assert "CONDUCTOR_WORKER_TASKS" not in env and "CONDUCTOR_WORKER_GET_INVENTORY_THREAD_COUNT" not in env
    assert [(p.name, p.container_port) for p in c.ports] == [("metrics", 2112)]  # the user's, as given
    assert c.liveness_probe is None and c.readiness_probe is None
    assert c.lifecycle.pre_stop.http_get.path == "/drain"
    assert c.security_context.read_only_root_filesystem is True and c.security_context.capabilities.drop == ["ALL"]
    pod = dep.spec.template.spec
    assert pod.security_context.run_as_non_root is True and pod.share_process_namespace is True
    (sidecar,) = pod.init_containers
    assert (sidecar.name, sidecar.restart_policy) == ("conductor-sidecar", "Always")
    assert {e.name: e.value for e in sidecar.env}["CONDUCTOR_SERVER_URL"] == "http://127.0.0.1:1/api"
    svc = wait_for(lambda: service(k8s_api, namespace, name), 20, "the Service (applied after the Deployment)")
    assert svc.spec.ports[0].port == 7701 and svc.spec.ports[0].target_port == "sidecar-metrics"

    def metrics_condition():
        return cond(get_json(kubectl, "cw", name, "-n", namespace), "MetricsAvailable")

    got = wait_for(metrics_condition, 30, "the MetricsAvailable condition")
    assert (got["status"], got["reason"]) == ("Unknown", "NoPodsScraped")


def test_metrics_disabled_removes_the_service_and_status_says_queue_depth_only(operator, kubectl, k8s_api, namespace):
    """A worker of another SDK without the sidecar (which would serve metrics for it) and without metrics."""
    spec = {
        "sdk": "javascript",
        "sidecar": {"enabled": False},
        "image": None,
        "container": {"image": "example.invalid/js:1"},
        "tasks": [{"name": "get-inventory", "concurrency": 2}],
        "autoscaling": {"enabled": True, "minReplicas": 1, "pollingIntervalSeconds": 1},
    }
    body = yaml.safe_load(cw("js", **spec))
    body["spec"] = {k: v for k, v in body["spec"].items() if v is not None}
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))
    core = client.CoreV1Api(k8s_api)
    wait_for(lambda: core.list_namespaced_service(namespace).items, 20, "the Service")
    env = {e.name: e.value for e in deployment(k8s_api, namespace, "js").spec.template.spec.containers[0].env}
    assert env["CONDUCTOR_WORKER_GET-INVENTORY_CONCURRENCY"] == "2"  # the JavaScript SDK's own name
    kubectl("patch", "cw", "js", "-n", namespace, "--type=merge", "-p", '{"spec":{"metrics":{"enabled":false}}}')
    wait_for(lambda: not core.list_namespaced_service(namespace).items, 20, "the Service deleted")

    def disabled():
        got = cond(get_json(kubectl, "cw", "js", "-n", namespace), "MetricsAvailable")
        return got if got and got["reason"] == "MetricsDisabled" else None

    got = wait_for(disabled, 30, "MetricsAvailable False, MetricsDisabled")
    assert got["status"] == "False" and got["message"].startswith("queue depth only")
    annotations = deployment(k8s_api, namespace, "js").spec.template.metadata.annotations or {}
    assert not any(k.startswith("prometheus.io/") for k in annotations)


def test_degraded_for_missing_secret_then_recovers(operator, kubectl, k8s_api, namespace):
    kubectl("apply", "-n", namespace, "-f", "-", input=connection("creds-conn", {"name": "missing"}))
    kubectl("apply", "-n", namespace, "-f", "-", input=cw("creds", conductor={"connectionRef": {"name": "creds-conn"}}))

    def degraded(reason):
        def check():
            c = cond(get_json(kubectl, "cw", "creds", "-n", namespace), "Degraded")
            return c and c["status"] == "True" and c["reason"] == reason and c

        return check

    c = wait_for(degraded("SecretNotFound"), 20, "Degraded SecretNotFound")
    assert "missing" in c["message"]
    assert deployment(k8s_api, namespace, "creds") is not None  # the workers wait for the Secret, no crash loop
    events = kubectl("get", "events", "-n", namespace, "--field-selector", "type=Warning").stdout
    assert "SecretNotFound" in events
    core = client.CoreV1Api(k8s_api)
    core.create_namespaced_secret(
        namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="missing"), string_data={"keyId": "x"})
    )
    c = wait_for(degraded("SecretKeyMissing"), 20, "Degraded SecretKeyMissing")
    assert "keySecret" in c["message"]
    core.patch_namespaced_secret("missing", namespace, {"stringData": {"keySecret": "y"}})
    wait_for(
        lambda: cond(get_json(kubectl, "cw", "creds", "-n", namespace), "Degraded")["status"] == "False",
        20,
        "Degraded cleared",
    )


def test_service_monitor_when_its_crd_is_installed(operator, kubectl, k8s_api, namespace):
    kubectl("apply", "-f", "-", input=SERVICE_MONITOR_CRD)
    try:
        kubectl("wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com", "--timeout=90s")
        kubectl(
            "apply", "-n", namespace, "-f", "-",
            input=cw("monitored", metrics={"port": 8000, "serviceMonitor": {"enabled": True, "interval": "10s"}}),
        )  # fmt: skip
        custom = client.CustomObjectsApi(k8s_api)

        def sm():
            items = custom.list_namespaced_custom_object("monitoring.coreos.com", "v1", namespace, "servicemonitors")
            return items["items"]

        items = wait_for(sm, 40, "a ServiceMonitor")
        spec = items[0]["spec"]
        assert spec["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "10s"}]
        assert spec["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "monitored"
        kubectl(
            "patch", "cw", "monitored", "-n", namespace, "--type=merge", "-p",
            json.dumps({"spec": {"metrics": {"serviceMonitor": {"enabled": False}}}}),
        )  # fmt: skip
        wait_for(lambda: not sm(), 20, "ServiceMonitor removed when disabled")
    finally:
        kubectl("delete", "conductorworkers", "--all", "-n", namespace, "--timeout=60s", check=False)
        kubectl("delete", "crd", "servicemonitors.monitoring.coreos.com", "--wait=false", check=False)


def test_deleting_the_worker_garbage_collects_children(operator, kubectl, k8s_api, namespace):
    kubectl("apply", "-n", namespace, "-f", "-", input=cw("gone", replicas=2))
    wait_for(lambda: deployment(k8s_api, namespace, "gone"), 20, "the Deployment")
    core = client.CoreV1Api(k8s_api)
    wait_for(lambda: len(core.list_namespaced_pod(namespace).items) == 2, 30, "2 pods")
    kubectl("delete", "cw", "gone", "-n", namespace, "--timeout=30s")
    wait_for(lambda: deployment(k8s_api, namespace, "gone") is None, 60, "Deployment collected")
    wait_for(lambda: not core.list_namespaced_service(namespace).items, 60, "Service collected")
    wait_for(lambda: not core.list_namespaced_pod(namespace).items, 60, "Pods collected")


# The permissions the operator needs (the Helm chart grants the same): cluster-scoped discovery for kopf,
# the rest per watched namespace (a ClusterRole for --all-namespaces).
CLUSTER_RULES = [
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": ["get", "list", "watch"],
    },
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
]
NAMESPACE_RULES = [  # the chart's (charts/.../_helpers.tpl, cwo.workloadRules)
    {"apiGroups": ["conductor.io"], "resources": ["conductorworkers"], "verbs": ["list", "watch", "patch"]},
    {"apiGroups": ["conductor.io"], "resources": ["conductorworkers/status"], "verbs": ["patch"]},
    {"apiGroups": ["conductor.io"], "resources": ["conductorconnections"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["conductor.io"], "resources": ["conductorconnections/status"], "verbs": ["patch"]},
    {"apiGroups": ["conductor.io"], "resources": ["conductorworkers/finalizers"], "verbs": ["update"]},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch", "create", "patch"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["create", "patch", "delete"]},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ["create", "patch", "delete"]},
    {"apiGroups": ["monitoring.coreos.com"], "resources": ["servicemonitors"], "verbs": ["create", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch", "patch"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]


def test_operator_works_with_least_privilege_rbac(crd, kubectl, k8s_api, kubeconfig, namespace, tmp_path):
    rbac = client.RbacAuthorizationV1Api(k8s_api)
    core = client.CoreV1Api(k8s_api)
    sa = f"op-{namespace}"
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=sa)))
    subject = [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}]
    rbac.create_cluster_role({"metadata": {"name": sa}, "rules": CLUSTER_RULES})
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": sa},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": sa},
            "subjects": subject,
        }
    )
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "operator"}, "rules": NAMESPACE_RULES})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "operator"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "operator"},
            "subjects": subject,
        },
    )
    try:
        token = core.create_namespaced_service_account_token(
            sa, namespace, client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
        ).status.token
        cfg = k8s_api.configuration
        sa_kubeconfig = tmp_path / "sa-kubeconfig"
        sa_kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {"name": "c", "cluster": {"server": cfg.host, "certificate-authority": cfg.ssl_ca_cert}}
                    ],
                    "users": [{"name": "sa", "user": {"token": token}}],
                    "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa", "namespace": namespace}}],
                    "current-context": "sa",
                }
            )
        )
        op = OperatorProcess(sa_kubeconfig, [namespace], tmp_path / "operator.log").start()
        try:
            kubectl("apply", "-n", namespace, "-f", "-", input=cw("rbac", replicas=2))
            wait_for(lambda: deployment(k8s_api, namespace, "rbac"), 20, "the Deployment (as the ServiceAccount)")

            def ready_status():
                obj = get_json(kubectl, "cw", "rbac", "-n", namespace)
                return (obj.get("status") or {}).get("replicas") == 2 and obj

            obj = wait_for(ready_status, 30, "status written by the ServiceAccount")
            assert cond(obj, "Degraded")["status"] == "False"
            assert client.PolicyV1Api(k8s_api).read_namespaced_pod_disruption_budget("rbac", namespace)
            kubectl("scale", "deployment/rbac", "-n", namespace, "--replicas=5")
            wait_for(lambda: deployment(k8s_api, namespace, "rbac").spec.replicas == 2, 15, "drift reverted")
            kubectl("delete", "cw", "rbac", "-n", namespace, "--timeout=30s")
            log = op.log_tail(400)
            assert "Forbidden" not in log and " 403" not in log, log
        finally:
            op.stop()
    finally:
        rbac.delete_cluster_role_binding(sa)
        rbac.delete_cluster_role(sa)


def test_resume_after_operator_restart_applies_changes_made_while_down(
    crd, kubectl, k8s_api, kubeconfig, namespace, tmp_path
):
    op = OperatorProcess(kubeconfig, [namespace], tmp_path / "operator-1.log").start()
    try:
        kubectl("apply", "-n", namespace, "-f", "-", input=cw("resumed", replicas=1))
        wait_for(lambda: deployment(k8s_api, namespace, "resumed"), 20, "the Deployment")
    finally:
        op.stop()
    # While no operator runs: the spec changes and someone scales the Deployment by hand.
    kubectl("patch", "cw", "resumed", "-n", namespace, "--type=merge", "-p", json.dumps({"spec": {"replicas": 2}}))
    kubectl("scale", "deployment/resumed", "-n", namespace, "--replicas=4")
    op = OperatorProcess(kubeconfig, [namespace], tmp_path / "operator-2.log").start()
    try:
        wait_for(lambda: deployment(k8s_api, namespace, "resumed").spec.replicas == 2, 20, "resumed to spec.replicas")
        obj = wait_for(
            lambda: (
                (o := get_json(kubectl, "cw", "resumed", "-n", namespace))["status"].get("observedGeneration")
                == o["metadata"]["generation"]
                and o
            ),
            20,
            "status of the new generation",
        )
        assert obj["status"]["desiredReplicas"] == 2
    finally:
        kubectl("delete", "conductorworkers", "--all", "-n", namespace, "--timeout=60s", check=False)
        op.stop()
