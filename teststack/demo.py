"""The end-to-end demo: helm install the operator, apply the example ConductorWorker, run a burst of
workflows, and show replicas following the queue until it drains and the workers scale back to zero."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

from kubernetes import client, config

from teststack import conductor, kube, node
from teststack.config import REPO_ROOT, StackConfig, load
from worker_runtime.client import ConductorClient

RELEASE, OPERATOR_NS, DEMO_NS = "cwo", "cwo-system", "cwo-demo"
CW_NAME = "demo-workers"
WORKFLOW = "cwo_demo_order"


@dataclass
class Timeline:
    rows: list[dict] = field(default_factory=list)

    @property
    def peak_replicas(self) -> int:
        return max((r["replicas"] for r in self.rows), default=0)


def run(cmd: list[str], cfg: StackConfig, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "KUBECONFIG": str(cfg.kubeconfig), "PATH": f"{cfg.tools_bin}:{os.environ.get('PATH', '')}"}
    return subprocess.run(cmd, check=True, text=True, capture_output=True, env=env, timeout=300, **kw)


def helm_install(cfg: StackConfig, extra: list[str] | None = None) -> None:
    run(
        [
            str(cfg.helm),
            "upgrade",
            "--install",
            RELEASE,
            str(REPO_ROOT / "charts" / "conductor-worker-operator"),
            "--namespace",
            OPERATOR_NS,
            "--create-namespace",
            # the CRD may already be there, applied by hand or by tests; the chart adopts it
            "--take-ownership",
            "--wait",
            "--timeout",
            "120s",
            "--values",
            str(REPO_ROOT / "examples" / "local-values.yaml"),
            *(extra or []),
        ],
        cfg,
    )


def start_stack(cfg: StackConfig) -> None:
    conductor.start(cfg)
    node.start(cfg, kube.start(cfg))


def register(c: ConductorClient) -> None:
    c.register_task_defs(json.loads((REPO_ROOT / "examples" / "taskdefs-demo.json").read_text()))
    c.register_workflow(json.loads((REPO_ROOT / "examples" / "workflow-demo.json").read_text()))


def observe(c: ConductorClient, custom: client.CustomObjectsApi, apps: client.AppsV1Api) -> dict:
    sizes = c.queue_sizes()
    queue = sizes.get("cwo_demo_price", 0) + sizes.get("cwo_demo_work", 0)
    cw = custom.get_namespaced_custom_object("conductor.io", "v1alpha1", DEMO_NS, "conductorworkers", CW_NAME)
    status = cw.get("status") or {}
    try:
        dep = apps.read_namespaced_deployment(CW_NAME, DEMO_NS)
        replicas, ready = dep.spec.replicas or 0, dep.status.ready_replicas or 0
    except client.ApiException:
        replicas, ready = 0, 0
    return {
        "queue": queue,
        "desired": status.get("desiredReplicas", 0),
        "replicas": replicas,
        "ready": ready,
        "reason": status.get("lastDecisionReason", ""),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workflows", type=int, default=300)
    parser.add_argument("--work-ms", type=int, default=200, help="milliseconds each cwo_demo_work task takes")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--keep", action="store_true", help="leave the release and the example installed")
    args = parser.parse_args(argv)
    cfg = load()
    say = lambda msg: print(msg, flush=True)  # noqa: E731

    say("1/5 starting the local stack (Conductor, kube-apiserver, controller-manager, scheduler, kubelet + containerd)")
    start_stack(cfg)
    say("2/5 helm install the operator chart")
    helm_install(cfg)
    say("3/5 kubectl apply the example ConductorWorker")
    namespace = run([str(cfg.kubectl), "create", "namespace", DEMO_NS, "--dry-run=client", "-o", "yaml"], cfg).stdout
    run([str(cfg.kubectl), "apply", "-f", "-"], cfg, input=namespace)
    run(
        [str(cfg.kubectl), "apply", "-n", DEMO_NS, "-f", str(REPO_ROOT / "examples" / "conductorworker-demo.yaml")], cfg
    )

    c = ConductorClient(cfg.conductor_url)
    register(c)
    api = config.new_client_from_config(config_file=str(cfg.kubeconfig))
    custom, apps = client.CustomObjectsApi(api), client.AppsV1Api(api)

    say(f"4/5 starting {args.workflows} workflows of {WORKFLOW}")
    started = time.monotonic()
    ids = [
        c.start_workflow(
            WORKFLOW,
            {
                "order": {"id": f"o{i}", "quantity": 1 + i % 5, "unit_price": 9.99},
                "discount": 0.1,
                "millis": args.work_ms,
            },
        )
        for i in range(args.workflows)
    ]
    timeline = Timeline()
    pending = set(ids)
    completed = failed = 0
    first_scale_up = None
    say(f"{'t(s)':>6} {'queue':>6} {'desired':>8} {'replicas':>8} {'ready':>6} {'done':>9}  reason")
    while time.monotonic() - started < args.timeout:
        for wf_id in list(pending)[:200]:
            status = c.get_workflow(wf_id, include_tasks=False)["status"]
            if status != "RUNNING":
                pending.discard(wf_id)
                completed += status == "COMPLETED"
                failed += status != "COMPLETED"
        row = observe(c, custom, apps) | {"t": round(time.monotonic() - started, 1), "done": completed}
        timeline.rows.append(row)
        if first_scale_up is None and row["replicas"] > 0:
            first_scale_up = row["t"]
        say(
            f"{row['t']:>6} {row['queue']:>6} {row['desired']:>8} {row['replicas']:>8} {row['ready']:>6} "
            f"{completed:>4}/{len(ids):<4}  {row['reason'][:60]}"
        )
        if not pending and row["replicas"] == 0 and row["queue"] == 0:
            break
        time.sleep(1)

    elapsed = time.monotonic() - started
    say("5/5 summary")
    say(f"  workflows completed: {completed}/{len(ids)} (failed {failed}, unfinished {len(pending)})")
    say(f"  first replica after: {first_scale_up}s; peak replicas: {timeline.peak_replicas}")
    say(f"  final replicas: {timeline.rows[-1]['replicas'] if timeline.rows else '?'}; total time {elapsed:.0f}s")
    if not args.keep:
        run(
            [
                str(cfg.kubectl),
                "delete",
                "-n",
                DEMO_NS,
                "-f",
                str(REPO_ROOT / "examples" / "conductorworker-demo.yaml"),
                "--wait=true",
            ],
            cfg,
        )
        run([str(cfg.helm), "uninstall", RELEASE, "--namespace", OPERATOR_NS, "--wait"], cfg)
    ok = completed == len(ids) and timeline.rows and timeline.rows[-1]["replicas"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
