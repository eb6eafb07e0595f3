"""The autoscalers bench/autoscalers.py compares, behind one small interface.

Every contender gets a `Workload`: its own namespace, task type and workflow, and the same worker image,
slots per pod and maxReplicas as the others. It owns one Deployment (named `workload.name`) and whatever
scales it; the runner only reads that Deployment and its pods.

- `operator`: a ConductorWorker with the operator's autoscaling defaults but minReplicas 0 (and the shared
  maxReplicas), reconciled by the operator as a host process watching only this namespace (as
  bench/autoscaler_response.py runs it), with the operator's default resync interval.
- `keda-default`, `keda-tuned`: what a user writes for KEDA instead (bench/keda_contender.py: a Deployment
  and a ScaledObject with a metrics-api trigger on the queue size, at KEDA's defaults or polling every
  5 s), KEDA itself running on the stack (teststack/keda.py). Its pods run the same container as the
  operator's: the same command, arguments and worker env (rendered by the operator's own builders from
  the same ConductorWorker spec) and the same termination grace period, so only the autoscaler differs.
  When those modules are missing, asking for a KEDA contender is an error naming scripts/build-keda.sh.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

GROUP, VERSION, PLURAL = "conductor.io", "v1alpha1", "conductorworkers"
KEDA_VARIANTS = {"keda-default": "default", "keda-tuned": "tuned"}
KNOWN = ("operator", *KEDA_VARIANTS)
KEDA_MISSING = "KEDA not available: run scripts/build-keda.sh"


@dataclass(frozen=True)
class Workload:
    """What one contender serves; identical for all contenders but for the names."""

    namespace: str
    name: str  # the Deployment's name (and the ConductorWorker's)
    task: str
    workflow: str
    image: str
    module: str  # the image's worker module
    slots: int  # concurrent tasks per pod
    max_replicas: int
    server_url: str  # Conductor as the pods reach it
    env: dict[str, str] = field(default_factory=dict)  # for the worker container


class Contender(Protocol):
    workload: Workload

    def start(self) -> None: ...

    def stop(self) -> None: ...


def custom_resource(w: Workload) -> dict[str, Any]:
    """The operator contender's ConductorWorker: the operator's defaults but minReplicas 0."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ConductorWorker",
        "metadata": {"name": w.name},
        "spec": {
            "conductor": {"serverUrl": w.server_url},
            "image": w.image,
            "imagePullPolicy": "Never",
            "modules": [w.module],
            "tasks": [{"name": w.task, "concurrency": w.slots}],
            "template": {"env": [{"name": k, "value": v} for k, v in w.env.items()]},
            "autoscaling": {"enabled": True, "minReplicas": 0, "maxReplicas": w.max_replicas},
        },
    }


class OperatorContender:
    def __init__(self, workload: Workload, cfg: Any, api: Any, log_dir: Path) -> None:
        self.workload, self.cfg, self.api, self.log_dir = workload, cfg, api, log_dir
        self.op: Any = None

    def start(self) -> None:
        from kubernetes import client

        from conductor_operator.config import Config
        from teststack.operator_process import OperatorProcess

        w = self.workload
        # OperatorProcess shortens the resync interval for tests: give it back the operator's default
        env = {"CWO_RESYNC_SECONDS": str(Config.resync_seconds)}
        log = self.log_dir / f"operator-{w.namespace}.log"
        self.op = OperatorProcess(self.cfg.kubeconfig, [w.namespace], log, env=env).start(timeout=60)
        client.CustomObjectsApi(self.api).create_namespaced_custom_object(
            GROUP, VERSION, w.namespace, PLURAL, custom_resource(w)
        )

    def stop(self) -> None:
        """Delete the ConductorWorker while the operator runs (its finalizer), then stop the operator."""
        from kubernetes import client

        custom = client.CustomObjectsApi(self.api)
        w = self.workload
        try:
            custom.delete_namespaced_custom_object(GROUP, VERSION, w.namespace, PLURAL, w.name)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                custom.get_namespaced_custom_object(GROUP, VERSION, w.namespace, PLURAL, w.name)
                time.sleep(1)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
        finally:
            if self.op is not None:
                self.op.stop()


def keda_available() -> str | None:
    """None when the KEDA contender's modules import and KEDA's binaries are built, else why not."""
    try:
        import keda_contender  # noqa: F401

        from teststack import keda
        from teststack.config import load
    except ImportError as exc:
        return f"{KEDA_MISSING} ({exc})"
    if not (keda.home(load()) / "bin" / keda.OPERATOR).is_file():
        return f"{KEDA_MISSING} (no {keda.OPERATOR} under {keda.home(load())})"
    return None


class KedaFleet:
    """A Deployment + ScaledObject from bench/keda_contender.py, with KEDA started on the stack if needed."""

    started_keda = False  # set when this process started KEDA: the runner stops it again at the end

    def __init__(self, variant: str, workload: Workload, cfg: Any, api: Any) -> None:
        self.variant, self.workload, self.cfg, self.api = variant, workload, cfg, api

    def manifests(self) -> list[dict[str, Any]]:
        import keda_contender

        from conductor_operator import builders

        w = self.workload
        spec = custom_resource(w)["spec"]
        env = {e["name"]: e["value"] for e in builders.worker_env(spec) if "value" in e}
        make = keda_contender.defaults if self.variant == "default" else keda_contender.tuned
        fleet = make(
            name=w.name,
            namespace=w.namespace,
            image=w.image,
            image_pull_policy="Never",
            task_type=w.task,
            conductor_url=w.server_url,
            keda_conductor_url=self.cfg.conductor_url,
            max_replicas=w.max_replicas,
            command=["conductor-worker"],
            args=builders.worker_args(spec),
            env={k: v for k, v in env.items() if k != "CONDUCTOR_SERVER_URL"},
        )
        docs = fleet.manifests()
        for doc in docs:
            if doc["kind"] == "Deployment":
                doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = builders.grace_seconds(spec)
        return docs

    def start(self) -> None:
        from teststack import keda

        if not keda.healthy(self.cfg):
            keda.start(self.cfg, self.cfg.kubeconfig)
            KedaFleet.started_keda = True
        doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": self.manifests()})
        keda.kubectl(self.cfg, "apply", "-f", "-", stdin=doc)

    def stop(self) -> None:
        """The ScaledObject first, so KEDA lets go of the Deployment before its namespace goes."""
        from teststack import keda

        w = self.workload
        keda.kubectl(self.cfg, "delete", "scaledobject", w.name, "-n", w.namespace, "--ignore-not-found", check=False)


def stop_keda(cfg: Any) -> None:
    """Stop KEDA when this run started it (as bench/keda_smoke.py does)."""
    if KedaFleet.started_keda:
        from teststack import keda

        keda.stop(cfg)
        KedaFleet.started_keda = False


def make(name: str, workload: Workload, cfg: Any, api: Any, log_dir: Path) -> Contender:
    if name == "operator":
        return OperatorContender(workload, cfg, api, log_dir)
    if name in KEDA_VARIANTS:
        missing = keda_available()
        if missing:
            raise RuntimeError(missing)
        return KedaFleet(KEDA_VARIANTS[name], workload, cfg, api)
    raise ValueError(f"unknown contender {name!r} (known: {', '.join(KNOWN)})")
