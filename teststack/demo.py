"""The end-to-end demo: helm install the operator, apply an example ConductorWorker, run a burst of
workflows, and show replicas following the queue until it drains and the workers scale back to zero.

`--worker demo` (the default) runs the demo's two Python task types; `--worker python|go|java|javascript`
runs the get-inventory worker of that SDK (examples/<lang>/), built into an image and loaded into the
node first, with `taskToDomain {"get-inventory": "john"}`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from teststack import conductor, images, kube, node
from teststack.config import REPO_ROOT, StackConfig, load
from worker_runtime.client import ConductorClient

RELEASE, OPERATOR_NS, DEMO_NS = "cwo", "cwo-system", "cwo-demo"
EXAMPLES = REPO_ROOT / "examples"


@dataclass(frozen=True)
class Scenario:
    """One example ConductorWorker and the workflows that give it work."""

    manifest: Path
    taskdefs: Path
    workflow_def: Path
    queues: tuple[str, ...]  # Conductor queue names (domain:task) the demo prints
    inputs: Callable[[int, argparse.Namespace], dict[str, Any]]
    expected: Callable[[dict[str, Any]], dict[str, Any] | None]  # the output a workflow must end with (None: any)
    task_to_domain: dict[str, str] = field(default_factory=dict)
    language: str | None = None  # the SDK example whose image is built and loaded first

    @property
    def cw_name(self) -> str:
        return yaml.safe_load(self.manifest.read_text())["metadata"]["name"]

    @property
    def workflow(self) -> str:
        return json.loads(self.workflow_def.read_text())["name"]


def _demo_inputs(i: int, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "order": {"id": f"o{i}", "quantity": 1 + i % 5, "unit_price": 9.99},
        "discount": 0.1,
        "millis": args.work_ms,
    }


DEMO = Scenario(
    EXAMPLES / "conductorworker-demo.yaml",
    EXAMPLES / "taskdefs-demo.json",
    EXAMPLES / "workflow-demo.json",
    ("cwo_demo_price", "cwo_demo_work"),
    _demo_inputs,
    lambda _inputs: None,
)
CW_NAME, WORKFLOW = DEMO.cw_name, DEMO.workflow


def language(lang: str) -> Scenario:
    """The get-inventory worker written with one SDK: output is the product id and an inventory 0..9."""
    return Scenario(
        EXAMPLES / lang / "conductorworker.yaml",
        EXAMPLES / "taskdefs-get-inventory.json",
        EXAMPLES / "workflow-get-inventory.json",
        ("john:get-inventory",),
        lambda i, _args: {"product_id": f"p-{i}"},
        lambda inputs: {"product_id": inputs["product_id"]},
        {"get-inventory": "john"},
        lang,
    )


def output_ok(scenario: Scenario, inputs: dict[str, Any], output: dict[str, Any]) -> bool:
    """The demo checks only completion; get-inventory must echo the product and give 0 <= inventory <= 9."""
    expected = scenario.expected(inputs)
    if expected is None:
        return True
    inventory = output.get("inventory")
    return all(output.get(k) == v for k, v in expected.items()) and isinstance(inventory, int) and 0 <= inventory <= 9


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
            str(EXAMPLES / "local-values.yaml"),
            *(extra or []),
        ],
        cfg,
    )


def start_stack(cfg: StackConfig) -> None:
    """Conductor's JVM boots while the control plane and the node come up."""
    pid = conductor.launch(cfg)
    node.start(cfg, kube.start(cfg))
    conductor.wait_healthy(cfg, pid)


def load_example(cfg: StackConfig, lang: str) -> str:
    """Build the SDK example's image (when its sources changed) and load it into the node."""
    built = images.Images(cfg)
    image = built.example(lang)
    built.load([image], node.ctr(cfg))
    return image


def register(c: ConductorClient, scenario: Scenario = DEMO) -> None:
    c.register_task_defs(json.loads(scenario.taskdefs.read_text()))
    c.register_workflow(json.loads(scenario.workflow_def.read_text()))


def start_one(c: ConductorClient, scenario: Scenario, args: argparse.Namespace, i: int) -> tuple[str, dict]:
    wf_input = scenario.inputs(i, args)
    return c.start_workflow(scenario.workflow, wf_input, task_to_domain=scenario.task_to_domain), wf_input


@dataclass
class Progress:
    """The burst's workflows: started, still running, and finished with the right output or not."""

    inputs: dict[str, dict] = field(default_factory=dict)
    pending: set[str] = field(default_factory=set)
    all_started: bool = False
    completed: int = 0
    failed: int = 0
    wrong: int = 0

    def collect(self, launches: list[Future]) -> None:
        """Take in the workflows started since the last sample (a failed start raises here)."""
        for launch in launches[len(self.inputs) :]:
            if not launch.done():
                return
            wf_id, wf_input = launch.result()
            self.inputs[wf_id] = wf_input
            self.pending.add(wf_id)
        self.all_started = True

    def check(self, c: ConductorClient, scenario: Scenario) -> None:
        """One request for the ids still running; each workflow that left them is read once."""
        running = set(c.running_workflow_ids(scenario.workflow))
        for wf_id in self.pending - running:
            wf = c.get_workflow(wf_id, include_tasks=False)
            if wf["status"] in ("RUNNING", "PAUSED"):  # missing from the list only for a moment: next sample
                continue
            self.pending.discard(wf_id)
            self.completed += wf["status"] == "COMPLETED"
            self.failed += wf["status"] != "COMPLETED"
            self.wrong += wf["status"] == "COMPLETED" and not output_ok(
                scenario, self.inputs[wf_id], wf.get("output") or {}
            )


def observe(c: ConductorClient, custom: client.CustomObjectsApi, apps: client.AppsV1Api, scenario: Scenario) -> dict:
    sizes = c.queue_sizes()
    queue = sum(sizes.get(q, 0) for q in scenario.queues)
    cw = custom.get_namespaced_custom_object("conductor.io", "v1alpha1", DEMO_NS, "conductorworkers", scenario.cw_name)
    status = cw.get("status") or {}
    try:
        dep = apps.read_namespaced_deployment(scenario.cw_name, DEMO_NS)
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--worker",
        choices=["demo", *images.EXAMPLES],
        default="demo",
        help="the demo's Python workers, or the get-inventory example of one SDK",
    )
    parser.add_argument("--workflows", type=int, default=300)
    parser.add_argument("--work-ms", type=int, default=200, help="milliseconds each cwo_demo_work task takes")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--keep", action="store_true", help="leave the release and the example installed")
    args = parser.parse_args(argv)
    cfg = load()
    scenario = DEMO if args.worker == "demo" else language(args.worker)
    say = lambda msg: print(msg, flush=True)  # noqa: E731

    say("1/5 starting the local stack (Conductor, kube-apiserver, controller-manager, scheduler, kubelet + containerd)")
    start_stack(cfg)
    if scenario.language:
        say(f"    building and loading the {scenario.language} example's image")
        say(f"    {load_example(cfg, scenario.language)}")
    say("2/5 helm install the operator chart")
    helm_install(cfg)
    say(f"3/5 kubectl apply {scenario.manifest.relative_to(REPO_ROOT)}")
    namespace = run([str(cfg.kubectl), "create", "namespace", DEMO_NS, "--dry-run=client", "-o", "yaml"], cfg).stdout
    run([str(cfg.kubectl), "apply", "-f", "-"], cfg, input=namespace)
    run([str(cfg.kubectl), "apply", "-n", DEMO_NS, "-f", str(scenario.manifest)], cfg)

    c = ConductorClient(cfg.conductor_url)
    register(c, scenario)
    api = config.new_client_from_config(config_file=str(cfg.kubeconfig))
    custom, apps = client.CustomObjectsApi(api), client.AppsV1Api(api)

    domains = f" with taskToDomain {json.dumps(scenario.task_to_domain)}" if scenario.task_to_domain else ""
    say(f"4/5 starting {args.workflows} workflows of {scenario.workflow}{domains}")
    started = time.monotonic()
    progress = Progress()
    with ThreadPoolExecutor(8) as starters:  # the table starts at once; the burst lands over its first seconds
        launches = [starters.submit(start_one, c, scenario, args, i) for i in range(args.workflows)]
        timeline = Timeline()
        first_scale_up = None
        say(f"{'t(s)':>6} {'queue':>6} {'desired':>8} {'replicas':>8} {'ready':>6} {'done':>9}  reason")
        while time.monotonic() - started < args.timeout:
            progress.collect(launches)
            progress.check(c, scenario)
            row = observe(c, custom, apps, scenario) | {"t": round(time.monotonic() - started, 1)}
            timeline.rows.append(row)
            if first_scale_up is None and row["replicas"] > 0:
                first_scale_up = row["t"]
            say(
                f"{row['t']:>6} {row['queue']:>6} {row['desired']:>8} {row['replicas']:>8} {row['ready']:>6} "
                f"{progress.completed:>4}/{len(progress.inputs):<4}  {row['reason'][:60]}"
            )
            if progress.all_started and not progress.pending and row["replicas"] == 0 and row["queue"] == 0:
                break
            time.sleep(1)
    inputs, completed, failed, wrong = progress.inputs, progress.completed, progress.failed, progress.wrong
    unfinished = args.workflows - completed - failed
    elapsed = time.monotonic() - started
    say("5/5 summary")
    say(f"  workflows completed: {completed}/{args.workflows} (failed {failed}, unfinished {unfinished})")
    if scenario.expected(next(iter(inputs.values()), {})) is not None:
        say(f"  outputs checked: {completed - wrong} right, {wrong} wrong")
    say(f"  first replica after: {first_scale_up}s; peak replicas: {timeline.peak_replicas}")
    say(f"  final replicas: {timeline.rows[-1]['replicas'] if timeline.rows else '?'}; total time {elapsed:.0f}s")
    if not args.keep:
        run([str(cfg.kubectl), "delete", "-n", DEMO_NS, "-f", str(scenario.manifest), "--wait=true"], cfg)
        run([str(cfg.helm), "uninstall", RELEASE, "--namespace", OPERATOR_NS, "--wait"], cfg)
    ok = completed == args.workflows and not wrong and timeline.rows and timeline.rows[-1]["replicas"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
