"""The Helm chart against the real helm binary and the real kube-apiserver (RBAC on).

- `helm lint --strict` for the default and non-default value sets;
- `helm template` renders, and every rendered manifest is accepted by the API server
  (`kubectl apply --dry-run=server`), with a minimal ServiceMonitor CRD installed for the ServiceMonitor;
- values.schema.json refuses bad values; the template refuses contradictory ones;
- what the rendered objects promise (Recreate, probes on the operator's own liveness endpoint, the
  security context, env, CRD copy, keep policy, labels);
- a real `helm install` (namespaced RBAC over two namespaces), whose ServiceAccount the API server then
  allows exactly what the operator needs (`kubectl auth can-i`), and a `helm uninstall` that leaves
  nothing behind.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from helpers import SERVICE_MONITOR_CRD, wait_for

pytestmark = [pytest.mark.kube]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "conductor-worker-operator"

VALUE_SETS = {
    "default": [],
    "local-values": ["--values", str(ROOT / "examples" / "local-values.yaml")],
    "namespaced-servicemonitor-no-crds": [
        "--set", "rbac.scope=namespaced",
        "--set", "watchNamespaces={NS_A,NS_B}",
        "--set", "serviceMonitor.enabled=true",
        "--set", "crds.install=false",
    ],
    "peering-two-replicas": [
        "--set", "replicaCount=2",
        "--set", "peering.enabled=true",
        "--set", "crds.keep=false",
        "--set", "watchNamespaces={NS_A}",
        "--set", "image.repository=registry.example/cwo/operator",
        "--set", "image.tag=0.1.0-rc1",
        "--set", "workerImage.tag=0.1.1",
        "--set", "operator.verbose=true",
        "--set", "operator.logFormat=json",
        "--set", "podAnnotations.team=platform",
        "--set", "serviceMonitor.enabled=true",
        "--set", "serviceMonitor.labels.release=prometheus",
    ],
}  # fmt: skip


@pytest.fixture(scope="session")
def helm(stack):
    if not stack.helm.is_file():
        pytest.fail(f"helm missing at {stack.helm}: run `bash scripts/setup.sh`", pytrace=False)

    def run(*args: str, check: bool = True, kubeconfig: Path | None = None) -> subprocess.CompletedProcess:
        env_args = [f"--kubeconfig={kubeconfig}"] if kubeconfig else []
        proc = subprocess.run(
            [str(stack.helm), *args, *env_args], capture_output=True, text=True, timeout=180, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
        return proc

    return run


def values(name: str, ns_a: str = "team-a", ns_b: str = "team-b") -> list[str]:
    return [a.replace("NS_A", ns_a).replace("NS_B", ns_b) for a in VALUE_SETS[name]]


def render(helm, *args: str, namespace: str = "cwo-system", release: str = "cwo") -> list[dict]:
    out = helm("template", release, str(CHART), "--namespace", namespace, *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def env_of(docs: list[dict]) -> dict[str, str]:
    (dep,) = by_kind(docs, "Deployment")
    return {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}


@pytest.fixture(scope="module")
def service_monitor_crd(kubectl):
    """A minimal monitoring.coreos.com ServiceMonitor CRD (created only if absent, removed only if ours)."""
    existing = kubectl("get", "crd", "servicemonitors.monitoring.coreos.com", check=False).returncode == 0
    if not existing:
        kubectl("apply", "-f", "-", input=SERVICE_MONITOR_CRD)
        kubectl("wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com", "--timeout=30s")
    yield
    if not existing:
        kubectl("delete", "crd", "servicemonitors.monitoring.coreos.com", "--wait=false", check=False)


@pytest.fixture
def two_namespaces(k8s_api):
    from kubernetes import client

    core = client.CoreV1Api(k8s_api)
    names = [f"t-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for n in names:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=n)))
    yield names
    for n in names:
        core.delete_namespace(n)


# -- lint and render -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_helm_lint_strict_is_clean(helm, name):
    proc = helm("lint", "--strict", str(CHART), *values(name))
    assert "0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_every_rendered_manifest_is_accepted_by_the_api_server(
    helm, kubectl, namespace, two_namespaces, service_monitor_crd, name
):
    docs = render(helm, *values(name, *two_namespaces), namespace=namespace, release=f"r{uuid.uuid4().hex[:6]}")
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "ServiceAccount", "Service"} <= kinds
    manifest = yaml.safe_dump_all(docs)
    proc = kubectl("apply", "--dry-run=server", "-f", "-", input=manifest, check=False)
    assert proc.returncode == 0, proc.stderr
    accepted = [ln for ln in proc.stdout.splitlines() if "(server dry run)" in ln]
    assert len(accepted) == len(docs), proc.stdout


def test_schema_refuses_bad_values(helm):
    for bad, message in [
        (["--set", "rbac.scope=bogus"], "/rbac/scope"),
        (["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy"),
        (["--set", "image.tag=latest"], "/image/tag"),
        (["--set", "watchNamespaces={Not_A_Namespace}"], "/watchNamespaces/0"),
        (["--set", "serviceMonitor.interval=5"], "/serviceMonitor/interval"),
        (["--set", "replicaCount=-1"], "/replicaCount"),
        (["--set", "unknownKey=1"], "unknownKey"),
        (["--set", "crds.instal=false"], "instal"),
        (["--set", "replicaCount=2"], "/peering/enabled"),
    ]:
        proc = helm("template", "cwo", str(CHART), *bad, check=False)
        assert proc.returncode != 0, f"{bad} was accepted"
        assert "schema" in proc.stderr and message in proc.stderr, (bad, proc.stderr)
        lint = helm("lint", str(CHART), *bad, check=False)
        assert lint.returncode != 0, f"helm lint accepted {bad}"


# -- what the rendered objects promise -------------------------------------------------------------


def test_default_render(helm, monkeypatch):
    docs = render(helm)
    (dep,) = by_kind(docs, "Deployment")
    spec = dep["spec"]
    assert spec["strategy"] == {"type": "Recreate"} and spec["replicas"] == 1
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "conductor-worker-operator:0.1.0"
    assert pod["serviceAccountName"] == "cwo-conductor-worker-operator"

    # The probes hit the operator's own kopf liveness endpoint (as conductor-operator's CLI defines it).
    from conductor_operator.main import parse_args

    for var in ("CWO_LIVENESS", "CWO_METRICS_PORT", "WATCH_NAMESPACES", "CWO_STANDALONE", "CWO_PEERING"):
        monkeypatch.delenv(var, raising=False)
    cli = parse_args([])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert cli.liveness == f"http://0.0.0.0:{ports['health']}/healthz" and ports["metrics"] == cli.metrics_port
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}

    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    assert container["resources"]["requests"] and container["resources"]["limits"]

    env = env_of(docs)
    # namespaced by default: the release's own namespace, a Role there, nothing of the workloads cluster-wide
    assert env["WATCH_NAMESPACES"] == "cwo-system"
    assert env["CWO_DEFAULT_WORKER_IMAGE"] == "conductor-worker-runtime:0.1.0"
    assert env["CWO_STANDALONE"] == "1" and "CWO_PEERING" not in env

    (svc,) = by_kind(docs, "Service")
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]
    assert svc["spec"]["selector"] == spec["selector"]["matchLabels"]
    assert not by_kind(docs, "ServiceMonitor")
    assert [(r["metadata"]["name"], r["metadata"]["namespace"]) for r in by_kind(docs, "Role")] == [
        ("cwo-conductor-worker-operator", "cwo-system")
    ]
    roles = {d["metadata"]["name"]: d for d in by_kind(docs, "ClusterRole")}
    assert sorted(roles) == [f"cwo-conductor-worker-operator{s}" for s in ("-cluster", "-edit", "-view")]
    cluster_wide = {r for rule in roles["cwo-conductor-worker-operator-cluster"]["rules"] for r in rule["resources"]}
    assert cluster_wide == {"customresourcedefinitions", "namespaces"}  # no Deployment, pod or Secret verb
    assert (
        roles["cwo-conductor-worker-operator-edit"]["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"]
        == "true"
    )
    assert by_kind(render(helm, "--set", "rbac.aggregateToDefaultRoles=false"), "ClusterRole")[0]["metadata"][
        "name"
    ] == ("cwo-conductor-worker-operator-cluster")
    cluster = render(helm, "--set", "rbac.scope=cluster")  # documented as cluster-wide: all namespaces
    assert env_of(cluster)["WATCH_NAMESPACES"] == "" and not by_kind(cluster, "Role")

    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "conductor-worker-operator", doc["kind"]
        assert labels["app.kubernetes.io/instance"] == "cwo" and labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/version"] == "0.1.0"


def test_crds_are_the_ones_of_crds_dir_with_keep_policy(helm):
    sources = [
        yaml.safe_load((ROOT / "crds" / f).read_text()) for f in ("conductorworker.yaml", "conductorconnection.yaml")
    ]
    crds = by_kind(render(helm), "CustomResourceDefinition")
    assert [c["metadata"]["name"] for c in crds] == [s["metadata"]["name"] for s in sources]
    for crd, source in zip(crds, sources, strict=True):
        assert crd["spec"] == source["spec"]
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert source["metadata"]["labels"].items() <= crd["metadata"]["labels"].items()

    for crd in by_kind(render(helm, "--set", "crds.keep=false"), "CustomResourceDefinition"):
        assert "annotations" not in crd["metadata"]
    assert not by_kind(render(helm, "--set", "crds.install=false"), "CustomResourceDefinition")

    peering = by_kind(render(helm, "--set", "peering.enabled=true"), "CustomResourceDefinition")
    kopf = [d for d in yaml.safe_load_all((ROOT / "crds" / "kopf-peering.yaml").read_text()) if d]
    assert [c["spec"] for c in peering[2:]] == [s["spec"] for s in kopf]


def test_namespaced_rbac_with_two_watch_namespaces(helm):
    docs = render(helm, *values("namespaced-servicemonitor-no-crds"))
    assert not by_kind(docs, "CustomResourceDefinition")
    assert env_of(docs)["WATCH_NAMESPACES"] == "team-a,team-b"
    roles = by_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    bindings = by_kind(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for b in bindings:
        assert b["subjects"] == [
            {"kind": "ServiceAccount", "name": "cwo-conductor-worker-operator", "namespace": "cwo-system"}
        ]
    (cluster_role,) = [r for r in by_kind(docs, "ClusterRole") if r["metadata"]["name"].endswith("-cluster")]
    assert {r["resources"][0] for r in cluster_role["rules"]} == {"customresourcedefinitions", "namespaces"}
    for r in [*cluster_role["rules"], *roles[0]["rules"]]:
        assert "*" not in r["verbs"] and "*" not in r["resources"] and "*" not in r["apiGroups"], r
    (sm,) = by_kind(docs, "ServiceMonitor")
    (svc,) = by_kind(docs, "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"


def test_peering_values(helm):
    docs = render(helm, *values("peering-two-replicas"))
    (dep,) = by_kind(docs, "Deployment")
    assert dep["spec"]["replicas"] == 2
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example/cwo/operator:0.1.0-rc1" and container["args"] == ["--verbose"]
    env = env_of(docs)
    assert env["CWO_PEERING"] == "conductor-worker-operator" and "CWO_STANDALONE" not in env
    assert env["CWO_LOG_FORMAT"] == "json" and env["CWO_DEFAULT_WORKER_IMAGE"] == "conductor-worker-runtime:0.1.1"
    assert dep["spec"]["template"]["metadata"]["annotations"] == {"team": "platform"}
    (role,) = by_kind(docs, "Role")  # namespaced (the default): kopf's peering object lives in the watched namespace
    assert {"apiGroups": ["kopf.dev"], "resources": ["kopfpeerings"], "verbs": ["get", "list", "watch", "patch"]} in (
        role["rules"]
    )
    cluster = render(
        helm, *values("peering-two-replicas"), "--set", "rbac.scope=cluster", "--set", "watchNamespaces=null"
    )
    (cluster_role,) = [
        r for r in by_kind(cluster, "ClusterRole") if not r["metadata"]["name"].endswith(("-edit", "-view"))
    ]
    assert {
        "apiGroups": ["kopf.dev"],
        "resources": ["clusterkopfpeerings"],
        "verbs": ["get", "list", "watch", "patch"],
    } in (cluster_role["rules"])
    (sm,) = by_kind(docs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    notes = helm("install", "cwo", str(CHART), "--dry-run=client", *values("peering-two-replicas")).stdout
    assert "KopfPeering" in notes


def test_notes_tell_the_next_step(helm):
    out = helm("install", "cwo", str(CHART), "--dry-run=client", "--namespace", "cwo-system").stdout
    notes = out[out.index("NOTES:") :]
    assert "kubectl apply" in notes and "kind: ConductorWorker" in notes and "kubectl get cw" in notes
    # namespaced by default: the notes say which namespace is watched and apply the example there
    assert "watches ConductorWorkers in namespace(s) cwo-system" in notes and "kubectl apply -n cwo-system" in notes
    out = helm("install", "cwo", str(CHART), "--dry-run=client", "--set", "rbac.scope=cluster").stdout
    assert "watches ConductorWorkers in all namespaces" in out[out.index("NOTES:") :]


# -- a real install ------------------------------------------------------------------------------------


def can_i(kubectl, sa: str, verb: str, resource: str, namespace: str | None = None) -> bool:
    """`resource/sub` asks about a subresource (kubectl alone would read `sub` as an object's name)."""
    resource, _, subresource = resource.partition("/")
    args = ["auth", "can-i", verb, resource, f"--as={sa}", *([f"--subresource={subresource}"] if subresource else [])]
    args += ["-n", namespace] if namespace else []
    return kubectl(*args, check=False).stdout.strip() == "yes"


def test_install_grants_exactly_what_the_operator_needs_and_uninstall_leaves_nothing(
    helm, kubectl, kubeconfig, namespace, two_namespaces, crd, service_monitor_crd
):
    """`kubectl auth can-i` resolves a resource through discovery: both CRDs must be installed (on a
    fresh stack with this test alone, conductorworkers was "not known" and every check of it said no)."""
    release = f"cwo-{uuid.uuid4().hex[:6]}"
    ns_a, ns_b = two_namespaces
    args = ["--set", "rbac.scope=namespaced", "--set", f"watchNamespaces={{{ns_a}}}", "--set", "crds.install=false"]
    # an image no node has and no registry serves, so no operator container starts from this release
    args += ["--set", "image.repository=example.invalid/chart-test"]
    helm("install", release, str(CHART), "--namespace", namespace, *args, kubeconfig=kubeconfig)
    try:
        dep = json.loads(kubectl("get", "deployment", "-n", namespace, "-o", "json").stdout)["items"]
        assert [d["metadata"]["name"] for d in dep] == [f"{release}-conductor-worker-operator"]
        sa = f"system:serviceaccount:{namespace}:{release}-conductor-worker-operator"
        allowed = [
            ("watch", "conductorworkers.conductor.io", ns_a),
            ("patch", "conductorworkers.conductor.io", ns_a),
            ("patch", "conductorworkers.conductor.io/status", ns_a),
            ("update", "conductorworkers.conductor.io/finalizers", ns_a),  # blockOwnerDeletion
            ("watch", "conductorconnections.conductor.io", ns_a),
            ("patch", "conductorconnections.conductor.io/status", ns_a),  # its Ready condition
            ("create", "deployments.apps", ns_a),
            ("patch", "deployments.apps", ns_a),
            ("delete", "poddisruptionbudgets.policy", ns_a),
            ("patch", "servicemonitors.monitoring.coreos.com", ns_a),
            ("list", "pods", ns_a),
            ("patch", "pods", ns_a),
            ("get", "secrets", ns_a),
            ("create", "events", ns_a),
            ("watch", "customresourcedefinitions.apiextensions.k8s.io", None),
            ("watch", "namespaces", None),
        ]
        denied = [
            ("patch", "deployments.apps", ns_b),  # not a watched namespace
            ("get", "secrets", ns_b),
            ("list", "secrets", ns_a),  # one named Secret at a time, never all of them
            ("delete", "conductorworkers.conductor.io", ns_a),
            ("create", "conductorworkers.conductor.io", ns_a),
            ("delete", "pods", ns_a),
            ("create", "pods", ns_a),
            ("create", "customresourcedefinitions.apiextensions.k8s.io", None),
            ("create", "roles.rbac.authorization.k8s.io", ns_a),
            ("get", "configmaps", ns_a),
            ("delete", "namespaces", None),
            ("patch", "deployments.apps", namespace),  # its own namespace is not watched either
            # verbs the operator never uses (it writes with PATCH and lists none of these)
            ("update", "deployments.apps", ns_a),
            ("delete", "deployments.apps", ns_a),  # the garbage collector deletes them with their owner
            ("create", "conductorconnections.conductor.io", ns_a),  # users name servers and Secrets, not it
            ("patch", "conductorconnections.conductor.io", ns_a),
            ("update", "conductorworkers.conductor.io", ns_a),
            ("list", "services", ns_a),
            ("watch", "poddisruptionbudgets.policy", ns_a),
            ("get", "servicemonitors.monitoring.coreos.com", ns_a),
            ("get", "conductorworkers.conductor.io", ns_a),  # kopf lists and watches them
            ("get", "pods", ns_a),
            ("patch", "events", ns_a),
            ("create", "events.events.k8s.io", ns_a),
        ]
        wrong = [c for c in allowed if not can_i(kubectl, sa, *c)]
        wrong += [("NOT", *c) for c in denied if can_i(kubectl, sa, *c)]
        assert not wrong, wrong

        # Users: `edit` in a namespace manages its ConductorWorkers, `view` reads them (aggregated roles,
        # merged into the default roles by the controller-manager).
        for user, role in (("alice", "edit"), ("bob", "view")):
            kubectl("create", "rolebinding", f"{user}-{role}", f"--clusterrole={role}", f"--user={user}", "-n", ns_a)
        cw = "conductorworkers.conductor.io"
        wait_for(lambda: can_i(kubectl, "alice", "create", cw, ns_a), 30, "edit aggregates ConductorWorkers")
        wait_for(lambda: can_i(kubectl, "bob", "list", cw, ns_a), 30, "view aggregates ConductorWorkers")
        users = [
            ("alice", "delete", cw, ns_a, True),
            ("alice", "patch", f"{cw}/scale", ns_a, True),
            ("alice", "patch", f"{cw}/status", ns_a, False),  # the status is the operator's
            ("alice", "create", cw, ns_b, False),  # only where the binding is
            ("bob", "watch", cw, ns_a, True),
            ("bob", "create", cw, ns_a, False),
            ("bob", "patch", cw, ns_a, False),
            ("alice", "create", "conductorconnections.conductor.io", ns_a, True),  # edit may read Secrets too
            ("bob", "list", "conductorconnections.conductor.io", ns_a, True),
            ("bob", "create", "conductorconnections.conductor.io", ns_a, False),
        ]
        wrong = [u for u in users if can_i(kubectl, u[0], *u[1:4]) != u[4]]
        kubectl(
            "delete", "rolebinding", "alice-edit", "bob-view", "-n", ns_a
        )  # not the chart's: gone before the check below
        assert not wrong, wrong
    finally:
        helm("uninstall", release, "--namespace", namespace, "--wait", kubeconfig=kubeconfig)

    def leftovers() -> list[str]:
        items = json.loads(kubectl("get", "all,sa,role,rolebinding", "-n", namespace, "-o", "json").stdout)["items"]
        return [f"{i['kind']}/{i['metadata']['name']}" for i in items if i["metadata"]["name"] != "default"]

    wait_for(lambda: not leftovers(), 30, f"nothing left after uninstall (left: {leftovers()})")
    for ns in (ns_a,):
        assert not json.loads(kubectl("get", "role,rolebinding", "-n", ns, "-o", "json").stdout)["items"]
    cluster = kubectl("get", "clusterrole,clusterrolebinding", "-o", "name").stdout
    assert release not in cluster


def test_the_pod_patch_policy_lets_the_operator_change_only_the_deletion_cost(helm, kubectl, namespace):
    """RBAC grants the operator `patch` on pods (for pod-deletion-cost); the chart's ValidatingAdmissionPolicy
    holds it to that annotation on the real API server: its ServiceAccount cannot change a pod's image."""
    release = f"vap-{uuid.uuid4().hex[:6]}"
    docs = render(helm, "--show-only", "templates/pod-patch-policy.yaml", namespace=namespace, release=release)
    assert [d["kind"] for d in docs] == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    manifests = "\n---\n".join(yaml.safe_dump(d) for d in docs)
    sa = f"{release}-conductor-worker-operator"
    setup = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "pods"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "pods"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pods"},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}],
        },
        {  # never runs: no node has the label (a pod bound to a missing node would be garbage-collected)
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "worker", "labels": {"app": "w"}, "annotations": {"team": "a"}},
            "spec": {
                "nodeSelector": {"cwo-test": "none"},
                "containers": [{"name": "w", "image": "example.invalid/w:1"}],
            },
        },
    ]
    kubectl("apply", "-n", namespace, "-f", "-", input="\n---\n".join(yaml.safe_dump(d) for d in setup))
    kubectl("apply", "-f", "-", input=manifests)
    as_operator = ("--as", f"system:serviceaccount:{namespace}:{sa}", "-n", namespace)

    def patch(change: dict | list, *who: str):
        kind = "json" if isinstance(change, list) else "merge"
        return kubectl("patch", "pod", "worker", "--type", kind, "-p", json.dumps(change), *who, check=False)

    try:
        # The policy takes effect a moment after it is created: probe with a change it refuses (a new value
        # each time, as a probe that got through changed the pod).
        wait_for(
            lambda: "may change only" in patch({"metadata": {"annotations": {"probe": uuid.uuid4().hex}}}, *as_operator).stderr,
            30, "the policy in force (it is compiled asynchronously)",
        )  # fmt: skip
        image = [{"op": "replace", "path": "/spec/containers/0/image", "value": "attacker.example/w:1"}]
        denied = patch(image, *as_operator)
        assert denied.returncode != 0, denied.stdout
        assert "not its spec" in denied.stderr
        cost = {"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "100"}}}
        assert patch(cost, *as_operator).returncode == 0
        other = patch({"metadata": {"annotations": {"team": "b"}}}, *as_operator)
        assert other.returncode != 0 and "not other annotations" in other.stderr
        label = patch({"metadata": {"labels": {"app": "x"}}}, *as_operator)
        assert label.returncode != 0 and "not its labels" in label.stderr
        assert patch({"metadata": {"annotations": {"team": "b"}}}, "-n", namespace).returncode == 0  # others: RBAC
        pod = json.loads(kubectl("get", "pod", "worker", "-n", namespace, "-o", "json").stdout)
        assert pod["spec"]["containers"][0]["image"] == "example.invalid/w:1"
        assert pod["metadata"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"] == "100"
    finally:
        kubectl("delete", "-f", "-", "--ignore-not-found", input=manifests, check=False)
