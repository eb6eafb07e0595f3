"""Pure manifest builders: a ConductorWorker (name, namespace, uid, spec) -> child manifests as dicts.

Why pure: every field the operator sets is decided here, without I/O, so the unit tests can check the
whole contract (env, probes, security, ownership) and the handlers only apply what comes out.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from conductor_operator import sidecar_pod
from conductor_operator.config import Config
from conductor_operator.sdk_env import CONVENTIONS, auth_env, env_value, sdk_env
from worker_runtime import env_names

GROUP = "conductor.io"
VERSION = "v1alpha1"
KIND = "ConductorWorker"
PLURAL = "conductorworkers"
MANAGER = "conductor-operator"
APP_NAME = "conductor-worker"
CONTAINER = "worker"
METRICS_PORT_NAME = "metrics"
HASH_ANNOTATION = f"{GROUP}/spec-hash"
DEFAULT_METRICS_PORT = 8000
DEFAULT_GRACE_SECONDS = 60
GRACE_CAP_SECONDS = 600  # the cluster autoscaler's default --max-graceful-termination-sec
GRACE_MARGIN_SECONDS = 5  # drain_timeout's margin: the drain itself still covers the response timeout
DEFAULT_SDK = "python"  # this project's runtime: spec.image + spec.modules
RUNTIME_UID = sidecar_pod.IMAGE_USER  # the runtime image's USER (Dockerfile): its pods and the sidecar

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Owner:
    """What the children need to know about the ConductorWorker that owns them."""

    name: str
    namespace: str
    uid: str

    @classmethod
    def from_body(cls, body: Any) -> Owner:
        meta = body["metadata"]
        return cls(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])


def selector_labels(name: str) -> dict[str, str]:
    """The immutable part of the labels: the Deployment/Service/PDB selector."""
    return {"app.kubernetes.io/name": APP_NAME, "app.kubernetes.io/instance": name}


def labels(name: str) -> dict[str, str]:
    return {
        **selector_labels(name),
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/part-of": "conductor",
        "app.kubernetes.io/managed-by": MANAGER,
    }


def selector_string(name: str) -> str:
    """The selector as the scale subresource wants it (status.selector is a string)."""
    return ",".join(f"{k}={v}" for k, v in selector_labels(name).items())


def owner_reference(owner: Owner) -> dict[str, Any]:
    """Controller reference: kube-controller-manager's GC deletes the children with the CR."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(owner: Owner, name: str | None = None, extra_labels: dict[str, str] | None = None) -> Manifest:
    return {
        "name": name or owner.name,
        "namespace": owner.namespace,
        "labels": {**labels(owner.name), **(extra_labels or {})},
        "ownerReferences": [owner_reference(owner)],
    }


def env_task_name(task: str) -> str:
    """CONDUCTOR_WORKER_<NAME>_<PROP>: the runtime's env key for a task (non-alphanumerics -> '_')."""
    return env_names.sanitized(task)


def sdk(spec: dict[str, Any]) -> str:
    """The SDK the worker container was written with (python: this project's runtime)."""
    return spec.get("sdk") or DEFAULT_SDK


def is_runtime(spec: dict[str, Any]) -> bool:
    return sdk(spec) == DEFAULT_SDK


def has_sidecar(spec: dict[str, Any]) -> bool:
    """A pod of another SDK gets the Conductor sidecar unless spec.sidecar.enabled is false."""
    return sidecar_pod.enabled(spec, is_runtime(spec))


def drains(spec: dict[str, Any]) -> bool:
    """Whether a pod finishes the tasks it holds before it exits: the runtime on SIGTERM, any other SDK
    through the sidecar's preStop drain."""
    return is_runtime(spec) or has_sidecar(spec)


def worker_metrics_enabled(spec: dict[str, Any]) -> bool:
    """spec.metrics.enabled: whether the worker container itself serves /metrics."""
    return bool((spec.get("metrics") or {}).get("enabled", True))


def metrics_enabled(spec: dict[str, Any]) -> bool:
    """False when the pod serves no /metrics (no sidecar, and spec.metrics.enabled false): no Service, no
    scrape, autoscaling on queue depth alone."""
    return has_sidecar(spec) or worker_metrics_enabled(spec)


def scrape_port(spec: dict[str, Any]) -> int:
    """The port the operator, the Service and Prometheus read: the sidecar's, else the worker's."""
    return sidecar_pod.METRICS_PORT if has_sidecar(spec) else metrics_port(spec)


def scrape_path(spec: dict[str, Any]) -> str:
    return "/metrics" if has_sidecar(spec) else metrics_path(spec)


def metrics_port(spec: dict[str, Any]) -> int:
    """spec.metrics.port, else the port the SDK's convention serves /metrics on (runtime: 8000)."""
    port = (spec.get("metrics") or {}).get("port")
    if port:
        return int(port)
    conv = CONVENTIONS.get(sdk(spec))
    return conv.metrics_port if conv else DEFAULT_METRICS_PORT


def metrics_path(spec: dict[str, Any]) -> str:
    path = (spec.get("metrics") or {}).get("path")
    if path:
        return str(path)
    conv = CONVENTIONS.get(sdk(spec))
    return conv.metrics_path if conv else "/metrics"


def task_slots(spec: dict[str, Any]) -> dict[str, int]:
    """Slots per pod for each task type (spec.tasks[].concurrency, default 1): the capacity of pods whose
    SDK reports busy slots but not its capacity (only the runtime exports worker_slot_capacity)."""
    return {t["name"]: int(t.get("concurrency") or 1) for t in spec.get("tasks") or []}


def grace_seconds(spec: dict[str, Any]) -> int:
    return int(spec.get("terminationGracePeriodSeconds") or DEFAULT_GRACE_SECONDS)


def default_grace(response_timeouts: Iterable[int | None]) -> int:
    """The grace period when the spec sets none: long enough for the pod to finish the longest task it may
    hold. A task is held at most its `responseTimeoutSeconds` (the server times it out after that, unless a
    lease extension keeps it), so the longest of them plus the drain's margin; at least
    DEFAULT_GRACE_SECONDS, at most GRACE_CAP_SECONDS (Conductor's default response timeout is an hour, and
    a node drain or the cluster autoscaler waits 10 min at most by default)."""
    known = [int(t) for t in response_timeouts if t]
    if not known:
        return DEFAULT_GRACE_SECONDS
    return max(DEFAULT_GRACE_SECONDS, min(GRACE_CAP_SECONDS, max(known) + GRACE_MARGIN_SECONDS))


def drain_timeout(grace: int) -> int:
    """A little below the grace period, so the runtime reports its last results before SIGKILL."""
    margin = min(5, max(1, grace // 10))
    return max(0, grace - margin)


def task_names(spec: dict[str, Any]) -> list[str]:
    return [t["name"] for t in spec.get("tasks") or []]


def _override(env: list[dict[str, Any]], *overrides: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Later lists win by name: an override replaces the operator's value instead of duplicating it."""
    out = list(env)
    for extra in overrides:
        extra = list(extra or [])
        names = {e.get("name") for e in extra}
        out = [e for e in out if e["name"] not in names] + copy.deepcopy(extra)
    return out


_POD_REFS = [
    {"name": env_names.POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    {"name": env_names.POD_NAMESPACE, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
]


def sdk_container_env(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Env of a worker written with another SDK: its own variable names (sdk_env), then spec.container.env,
    then spec.template.env (each overriding the earlier by name)."""
    conductor = spec.get("conductor") or {}
    sidecar = has_sidecar(spec)  # the worker then talks to the sidecar, which holds the credentials
    env = sdk_env(
        sdk(spec),
        spec.get("tasks") or [],
        sidecar_pod.SERVER_URL if sidecar else conductor["serverUrl"],
        None if sidecar else conductor.get("authSecretRef"),
        metrics_port(spec),
    )
    have = {e["name"] for e in env}
    env += [copy.deepcopy(ref) for ref in _POD_REFS if ref["name"] not in have]
    container = spec.get("container") or {}
    return _override(env, container.get("env"), (spec.get("template") or {}).get("env"))


def worker_env(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The runtime's configuration as env; credentials only as secretKeyRef (never their values)."""
    conductor = spec.get("conductor") or {}
    env: list[dict[str, Any]] = [
        {"name": env_names.SERVER_URL, "value": conductor["serverUrl"]},
        *copy.deepcopy(_POD_REFS),
        {"name": env_names.TASKS, "value": ",".join(task_names(spec))},
        {"name": env_names.METRICS_PORT, "value": str(metrics_port(spec))},
    ]
    env += auth_env(conductor.get("authSecretRef"))
    if spec.get("modules"):
        env.append({"name": env_names.MODULES, "value": ",".join(spec["modules"])})
    tasks = spec.get("tasks") or []
    forms = [env_task_name(t["name"]) for t in tasks]
    exact: dict[str, dict[str, Any]] = {}
    for task, form in zip(tasks, forms, strict=True):
        settings = {
            prop: task[field] for field, prop in env_names.RUNTIME_TASK_PROPS if task.get(field) not in (None, "")
        }
        if settings:
            exact[task["name"]] = settings
        if form == "ALL" or forms.count(form) > 1:
            continue  # the name form would also be another task's (or every task's): the exact JSON says it
        for prop, value in settings.items():
            env.append({"name": env_names.upper_underscore(task["name"], prop), "value": env_value(value)})
    if exact:  # exact task names, read first by the runtime (worker_runtime/config.py)
        env.append({"name": env_names.TASK_SETTINGS, "value": json.dumps(exact, separators=(",", ":"))})
    # User env last and by name: an override replaces the operator's value instead of duplicating it.
    return _override(env, (spec.get("template") or {}).get("env"))


def worker_args(spec: dict[str, Any]) -> list[str]:
    # No --metrics-host: the runtime binds all addresses by default (CONDUCTOR_WORKER_METRICS_HOST can narrow it).
    args = ["run", "--metrics-port", str(metrics_port(spec))]
    args += ["--drain-timeout", str(drain_timeout(grace_seconds(spec))), "--json-logs"]
    for module in spec.get("modules") or []:
        args += ["--module", module]
    return args


def _pod_security(template: dict[str, Any], runtime: bool) -> dict[str, Any]:
    """Non-root always. The runtime image's user is known (uid and gid 10001, as its Dockerfile makes it:
    files an image built FROM it copies with --chown=10001 stay readable); another SDK's image runs as its
    own numeric USER (the kubelet refuses a root or non-numeric one), unless the template sets runAsUser."""
    base: dict[str, Any] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    if runtime:
        base.update({"runAsUser": RUNTIME_UID, "runAsGroup": RUNTIME_UID, "fsGroup": RUNTIME_UID})
    return {**base, **copy.deepcopy(template.get("securityContext") or {})}


def _container_security(template: dict[str, Any]) -> dict[str, Any]:
    base = {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    return {**base, **copy.deepcopy(template.get("containerSecurityContext") or {})}


def _runtime_container(spec: dict[str, Any], config: Config) -> dict[str, Any]:
    """The conductor-worker runtime: CLI args, its env, /healthz and /readyz probes on the metrics port;
    config.default_worker_image when spec.image is empty."""
    return {
        "name": CONTAINER,
        "image": spec.get("image") or config.default_worker_image,
        "imagePullPolicy": spec.get("imagePullPolicy") or "IfNotPresent",
        "command": ["conductor-worker"],
        "args": worker_args(spec),
        "env": worker_env(spec),
        "ports": [{"name": METRICS_PORT_NAME, "containerPort": metrics_port(spec), "protocol": "TCP"}],
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": METRICS_PORT_NAME},
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": METRICS_PORT_NAME},
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 2,
        },
    }


def sdk_ports(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """spec.container.ports, with the metrics port named `metrics` (added when missing) so the Service can
    target it by name; a user's port that already has another name keeps it."""
    ports = copy.deepcopy((spec.get("container") or {}).get("ports") or [])
    if not worker_metrics_enabled(spec) or has_sidecar(spec):  # the sidecar's port is the one scraped
        return ports
    port = metrics_port(spec)
    named = any(p.get("name") == METRICS_PORT_NAME for p in ports)
    mine = next((p for p in ports if p.get("containerPort") == port), None)
    if mine is None:
        ports.append({"containerPort": port, "protocol": "TCP", **({} if named else {"name": METRICS_PORT_NAME})})
    elif not mine.get("name") and not named:
        mine["name"] = METRICS_PORT_NAME
    return ports


def metrics_target_port(spec: dict[str, Any]) -> str | int:
    """The Service's targetPort: the container port named `metrics`, or the number when that name is taken."""
    if is_runtime(spec):
        return METRICS_PORT_NAME
    if has_sidecar(spec):
        return sidecar_pod.PORT_NAME
    port = metrics_port(spec)
    named = any(p.get("name") == METRICS_PORT_NAME and p.get("containerPort") == port for p in sdk_ports(spec))
    return METRICS_PORT_NAME if named else port


_USER_CONTAINER_FIELDS = ("command", "args", "workingDir", "livenessProbe", "readinessProbe", "startupProbe")


def _sdk_container(spec: dict[str, Any]) -> dict[str, Any]:
    """A worker written with another SDK: the user's image, command and args; the SDK's env; probes only
    where the user gave them (such a worker may serve no health endpoint: no probe beats a wrong one)."""
    user = spec.get("container") or {}
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": user["image"],
        "imagePullPolicy": user.get("imagePullPolicy") or spec.get("imagePullPolicy") or "IfNotPresent",
    }
    for field in _USER_CONTAINER_FIELDS:
        if user.get(field):
            container[field] = copy.deepcopy(user[field])
    container["env"] = sdk_container_env(spec)
    ports = sdk_ports(spec)
    if ports:
        container["ports"] = ports
    return container


def pod_template(owner: Owner, spec: dict[str, Any], config: Config) -> Manifest:
    """The worker pod: the runtime or the user's container, env, hardened defaults, template overrides."""
    template = spec.get("template") or {}
    runtime = is_runtime(spec)
    user = spec.get("container") or {}
    container = _runtime_container(spec, config) if runtime else _sdk_container(spec)
    container["securityContext"] = _container_security(template)
    container["volumeMounts"] = [
        {"name": "tmp", "mountPath": "/tmp"},
        *copy.deepcopy(template.get("volumeMounts") or []),
    ]
    env_from = [*(template.get("envFrom") or []), *(user.get("envFrom") or [])]
    if env_from:
        container["envFrom"] = copy.deepcopy(env_from)
    resources = user.get("resources") or template.get("resources")
    if resources:
        container["resources"] = copy.deepcopy(resources)
    if has_sidecar(spec):
        container["lifecycle"] = sidecar_pod.pre_stop()
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "terminationGracePeriodSeconds": grace_seconds(spec),
        "securityContext": _pod_security(template, runtime),
        "volumes": [{"name": "tmp", "emptyDir": {}}, *copy.deepcopy(template.get("volumes") or [])],
    }
    if has_sidecar(spec):
        sidecar = sidecar_pod.container(spec, config, drain_timeout(grace_seconds(spec)), _container_security({}))
        pod_spec["initContainers"] = [sidecar]
        pod_spec["shareProcessNamespace"] = True  # the sidecar sees the worker crash (crash recovery)
    for field in (
        "nodeSelector",
        "tolerations",
        "affinity",
        "serviceAccountName",
        "priorityClassName",
        "imagePullSecrets",
    ):
        if template.get(field):
            pod_spec[field] = copy.deepcopy(template[field])
    annotations = dict(template.get("annotations") or {})
    if metrics_enabled(spec):
        annotations.update(
            {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(scrape_port(spec)),
                "prometheus.io/path": scrape_path(spec),
            }
        )
    return {
        "metadata": {
            "labels": {**(template.get("labels") or {}), **labels(owner.name)},
            "annotations": annotations,
        },
        "spec": pod_spec,
    }


def spec_hash(obj: Any) -> str:
    """Stable short hash of a manifest part, for change detection (status.specHash, annotations)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def deployment(
    owner: Owner, spec: dict[str, Any], replicas: int | None, config: Config, grace: int | None = None
) -> Manifest:
    """The worker Deployment; replicas None leaves the field unmanaged (it is always set today). grace: the
    termination grace period when the spec sets none (default_grace of the task definitions)."""
    if grace is not None and not spec.get("terminationGracePeriodSeconds"):
        spec = {**spec, "terminationGracePeriodSeconds": grace}
    template = pod_template(owner, spec, config)
    meta = _metadata(owner)
    meta["annotations"] = {HASH_ANNOTATION: spec_hash(template)}
    dep_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(owner.name)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
        "revisionHistoryLimit": 5,
        "progressDeadlineSeconds": 600,
        "template": template,
    }
    if replicas is not None:
        dep_spec["replicas"] = int(replicas)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": dep_spec}


def service_wanted(spec: dict[str, Any]) -> bool:
    """The Service exists only to expose /metrics (nothing calls a worker)."""
    return metrics_enabled(spec)


def service(owner: Owner, spec: dict[str, Any]) -> Manifest:
    """Headless Service over the worker pods' metrics port (Prometheus scrapes each pod)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner, extra_labels={"conductor.io/metrics": "true"}),
        "spec": {
            "clusterIP": "None",
            "selector": selector_labels(owner.name),
            "ports": [
                {
                    "name": METRICS_PORT_NAME,
                    "port": scrape_port(spec),
                    "targetPort": metrics_target_port(spec),
                    "protocol": "TCP",
                }
            ],
        },
    }


def service_monitor_wanted(spec: dict[str, Any]) -> bool:
    return metrics_enabled(spec) and bool(((spec.get("metrics") or {}).get("serviceMonitor") or {}).get("enabled"))


def service_monitor(owner: Owner, spec: dict[str, Any]) -> Manifest:
    sm = (spec.get("metrics") or {}).get("serviceMonitor") or {}
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _metadata(owner, extra_labels=sm.get("labels") or {}),
        "spec": {
            "selector": {"matchLabels": {**selector_labels(owner.name), "conductor.io/metrics": "true"}},
            "namespaceSelector": {"matchNames": [owner.namespace]},
            "endpoints": [
                {"port": METRICS_PORT_NAME, "path": scrape_path(spec), "interval": sm.get("interval") or "30s"}
            ],
        },
    }


def pdb_wanted(spec: dict[str, Any], replicas: int) -> bool:
    """A PDB only helps with more than one pod; with one it would block node drains."""
    enabled = (spec.get("podDisruptionBudget") or {}).get("enabled", True)
    return bool(enabled) and replicas > 1


def pod_disruption_budget(owner: Owner, spec: dict[str, Any]) -> Manifest:
    """AlwaysAllow: worker pods turn unready when Conductor is unreachable (their /readyz says so); with
    the default policy those unhealthy pods would count against the budget and block node drains for the
    whole outage. Evicting an unready worker loses nothing: it drains its tasks on SIGTERM."""
    max_unavailable = (spec.get("podDisruptionBudget") or {}).get("maxUnavailable", 1)
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(owner),
        "spec": {
            "maxUnavailable": max_unavailable,
            "selector": {"matchLabels": selector_labels(owner.name)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def fixed_replicas(spec: dict[str, Any]) -> int:
    """spec.replicas drives the Deployment when the operator's autoscaler is off."""
    value = spec.get("replicas")
    return 1 if value is None else int(value)


def autoscaling_enabled(spec: dict[str, Any]) -> bool:
    return bool((spec.get("autoscaling") or {}).get("enabled"))
