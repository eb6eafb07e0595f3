"""KEDA works on the local stack: a ScaledObject scales a Deployment 0 -> N while tasks wait in a Conductor
queue and back to 0 once the queue is empty. Not part of the test suite (KEDA is built only for
`scripts/bench.sh autoscalers`); run it by hand with the project's venv against a running stack:

    ~/.cache/conductor-worker-operator/venv/bin/python bench/keda_smoke.py

It needs Conductor and the control plane up (no node: KEDA and the HPA change spec.replicas only, so the
pods may stay Pending) and never starts, restarts or stops them. It starts KEDA unless it runs, and stops
it again only if it started it (--keep-keda leaves it). Its objects live in a namespace of their own,
deleted at the end; the task type is unique per run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import keda_contender  # noqa: E402

from teststack import conductor, keda, kube  # noqa: E402
from teststack.config import StackConfig, load  # noqa: E402
from worker_runtime.client import ConductorClient  # noqa: E402

T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def replicas(cfg: StackConfig, ns: str, name: str) -> tuple[int, str]:
    """spec.replicas of the Deployment and the HPA's desired count (KEDA creates keda-hpa-<name>)."""
    dep = json.loads(keda.kubectl(cfg, "get", "deployment", name, "-n", ns, "-o", "json"))
    hpa = keda.kubectl(
        cfg, "get", "hpa", f"keda-hpa-{name}", "-n", ns, "-o", "jsonpath={.status.desiredReplicas}", check=False
    )
    return int(dep["spec"].get("replicas") or 0), hpa.strip() or "-"


def wait_replicas(
    cfg: StackConfig, c: ConductorClient, ns: str, name: str, task: str, done: Any, timeout: float
) -> float | None:
    """Print queue size and replicas every second until done(replicas); the seconds it took, or None."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        spec, desired = replicas(cfg, ns, name)
        say(f"queue {c.queue_size(task):3d}  deployment spec.replicas {spec}  hpa desired {desired}")
        if done(spec):
            return time.monotonic() - start
        time.sleep(1)
    return None


def external_metric(cfg: StackConfig, ns: str, name: str) -> str:
    """The trigger's value as the HPA reads it: through the API server and the aggregation layer."""
    hpa = json.loads(keda.kubectl(cfg, "get", "hpa", f"keda-hpa-{name}", "-n", ns, "-o", "json"))
    metric = hpa["spec"]["metrics"][0]["external"]["metric"]
    selector = ",".join(f"{k}={v}" for k, v in metric["selector"]["matchLabels"].items())
    path = f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric['name']}?labelSelector={selector}"
    items = json.loads(keda.kubectl(cfg, "get", "--raw", path))["items"]
    return f"{metric['name']} = {items[0]['value'] if items else 'none'} (GET {path})"


def drain(c: ConductorClient, task: str) -> int:
    """Take every waiting task off the queue and complete it, as workers would."""
    done = 0
    while tasks := c.poll_batch(task, "keda-smoke", 100, 200):
        for t in tasks:
            c.update_task({"taskId": t["taskId"], "workflowInstanceId": t["workflowInstanceId"], "status": "COMPLETED"})
        done += len(tasks)
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=25, help="workflows started (one task each)")
    parser.add_argument("--target", type=int, default=10, help="queued tasks per replica")
    parser.add_argument("--max-replicas", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=120, help="seconds for each transition")
    parser.add_argument("--keep-keda", action="store_true", help="leave KEDA running at the end")
    args = parser.parse_args()
    cfg = load()
    if not (kube.healthy(cfg) and conductor.healthy(cfg)):
        print(f"error: start the stack first (API server {cfg.apiserver_url}, Conductor {cfg.conductor_url})")
        return 2
    started_keda = not keda.healthy(cfg)
    say(f"KEDA {keda.version()}: {'starting' if started_keda else 'already running'}")
    keda.start(cfg, cfg.kubeconfig)
    say(f"KEDA up: APIService {keda.APISERVICE} Available, adapter on {keda.adapter_host()}")

    run = uuid.uuid4().hex[:6]
    task, ns, name = f"keda_smoke_{run}", f"keda-smoke-{run}", "smoke-workers"
    c = ConductorClient(cfg.conductor_url)
    c.register_task_defs([{"name": task, "retryCount": 0, "responseTimeoutSeconds": 60, "ownerEmail": "s@example.com"}])
    c.register_workflow(
        {
            "name": task,
            "version": 1,
            "schemaVersion": 2,
            "ownerEmail": "s@example.com",
            "tasks": [{"name": task, "taskReferenceName": "t", "type": "SIMPLE"}],
        }
    )
    contender = keda_contender.defaults(
        name=name,
        namespace=ns,
        image="localhost/keda-smoke-never-pulled:0",
        image_pull_policy="Never",
        task_type=task,
        conductor_url=cfg.pod_conductor_url,
        keda_conductor_url=cfg.conductor_url,
        max_replicas=args.max_replicas,
        target_queue_per_replica=args.target,
        polling_interval=2,
        cooldown_period=5,
    )
    ok = False
    try:
        keda.kubectl(cfg, "create", "namespace", ns)
        doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": contender.manifests()})
        keda.kubectl(cfg, "apply", "-f", "-", stdin=doc)
        say(f"applied Deployment + ScaledObject {ns}/{name} (pollingInterval 2, cooldownPeriod 5)")
        time.sleep(3)
        spec, _ = replicas(cfg, ns, name)
        say(f"idle: queue {c.queue_size(task)}, spec.replicas {spec}")
        for _ in range(args.tasks):
            c.start_workflow(task, {})
        say(f"started {args.tasks} workflows")
        up = wait_replicas(cfg, c, ns, name, task, lambda r: r > 0, args.timeout)
        say(f"0 -> >0 after {up:.1f} s" if up is not None else "FAIL: never scaled up")
        want = min(args.max_replicas, -(-args.tasks // args.target))
        full = wait_replicas(cfg, c, ns, name, task, lambda r: r >= want, args.timeout) if up is not None else None
        say(f"-> {want} (HPA) after {full:.1f} s more" if full is not None else f"FAIL: never reached {want}")
        if full is not None:
            say(f"external metric: {external_metric(cfg, ns, name)}")
        say(f"drained {drain(c, task)} tasks (polled and completed)")
        down = wait_replicas(cfg, c, ns, name, task, lambda r: r == 0, args.timeout)
        say(f"-> 0 after {down:.1f} s" if down is not None else "FAIL: never scaled back to 0")
        ok = up is not None and full is not None and down is not None
    finally:
        drain(c, task)
        # While KEDA runs: its finalizer on the ScaledObject would otherwise hold the namespace forever.
        keda.kubectl(cfg, "delete", "scaledobject", name, "-n", ns, "--ignore-not-found", "--timeout=60s", check=False)
        keda.kubectl(cfg, "delete", "namespace", ns, "--wait=false", check=False)
        if started_keda and not args.keep_keda:
            keda.stop(cfg)
            say("KEDA stopped")
    say("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
