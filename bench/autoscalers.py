"""Autoscalers head to head on replayed traffic, on the real local stack (`bash scripts/bench.sh autoscalers`).

For each trace (bench/traces.py) every contender (bench/autoscaler_contenders.py) gets the same arrivals at
the same moments: each arrival starts one workflow per contender, a one-task workflow whose task (the
sleep-workers test image) sleeps for the drawn duration. Each contender has its own namespace, task type
and workflow, and the same image, slots per pod and maxReplicas, starting from zero replicas. Every second
a sampler per contender reads the Deployment's spec.replicas and ready replicas, its Running pods and the
queue depth; at the end every workflow is read with its tasks. bench/elasticity.py turns those into the
figures; bench/autoscaler_report.py into bench/results/autoscalers_<trace>.json, .md and .png.

The measured window is the same for all contenders: from the first arrival to the later of the trace's end
and the moment the last contender's last workflow finished (plus --tail-s).

    ~/.cache/conductor-worker-operator/venv/bin/python bench/autoscalers.py                  # all traces, ~90 min
    ... bench/autoscalers.py --traces step --time-scale 0.05 --contenders operator --out /tmp/x   # a short run
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import autoscaler_contenders as contenders
import autoscaler_report as report
import elasticity
import opbench
import traces

from teststack import images

MODULE = "sleep_workers"  # tests/images/sleep-workers: a task per name in CWO_SLEEP_TASKS, sleeping input "millis"


class Sampler:
    """Reads one contender's Deployment, pods and queue every `interval` seconds, in a thread."""

    def __init__(self, api: Any, conductor: Any, w: contenders.Workload, t0: float, interval: float = 1.0) -> None:
        from kubernetes import client

        self.apps, self.core = client.AppsV1Api(api), client.CoreV1Api(api)
        self.conductor, self.w, self.t0, self.interval = conductor, w, t0, interval
        self.samples: list[dict[str, Any]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def read(self) -> dict[str, Any]:
        dep = self.apps.read_namespaced_deployment(self.w.name, self.w.namespace)
        labels = dep.spec.selector.match_labels or {}
        pods = self.core.list_namespaced_pod(
            self.w.namespace, label_selector=",".join(f"{k}={v}" for k, v in labels.items())
        ).items
        live = [p for p in pods if not p.metadata.deletion_timestamp]
        return {
            "replicas": dep.spec.replicas or 0,
            "ready": dep.status.ready_replicas or 0,
            "running": sum(1 for p in live if p.status.phase == "Running"),
            "pods": len(pods),
            "queue": self.conductor.queue_size(self.w.task),
        }

    def _run(self) -> None:
        tick = time.time()
        while not self._stop.is_set():
            at = time.time()
            try:
                self.samples.append({"t": round(at - self.t0, 3), **self.read()})
            except Exception:  # a failed read leaves a gap; the step series holds the last value
                self.errors += 1
            tick += self.interval
            self._stop.wait(max(0.0, tick - time.time()))


class Run:
    """One trace replayed to every contender."""

    def __init__(self, args: argparse.Namespace, cfg: Any, api: Any, trace: traces.Trace) -> None:
        from worker_runtime.client import ConductorClient

        self.args, self.cfg, self.api, self.trace = args, cfg, api, trace
        self.conductor = ConductorClient(cfg.conductor_url)
        self.tag = uuid.uuid4().hex[:6]
        self.workloads: dict[str, contenders.Workload] = {}
        self.running: dict[str, contenders.Contender] = {}
        self.ids: dict[str, list[str | None]] = {}
        self.lateness: list[float] = []
        self.start_errors: dict[str, int] = {}

    def workload(self, name: str, namespace: str) -> contenders.Workload:
        task = f"bench_as_{name.replace('-', '_')}_{self.trace.name}_{self.tag}"
        return contenders.Workload(
            namespace=namespace,
            name="workers",
            task=task,
            workflow=f"{task}_wf",
            image=images.TEST_WORKERS_IMAGE,
            module=MODULE,
            slots=self.args.slots,
            max_replicas=self.args.max_replicas,
            server_url=self.cfg.pod_conductor_url,
            env={"CWO_SLEEP_TASKS": task},
        )

    def prepare(self, names: list[str], log_dir: Path) -> None:
        for name in names:
            ns = opbench.new_namespace(self.api, f"bench-as-{name}")
            w = self.workload(name, ns)
            self.workloads[name] = w
            # Retries on, so a task lost with a pod re-runs (and is counted) instead of failing its workflow;
            # the response timeout is above the longest task (30 s).
            self.conductor.register_task_defs([opbench.sleep_task_def(w.task, retry_count=2, response_timeout=40)])
            self.conductor.register_workflow(opbench.sleep_workflow_def(w.workflow, w.task))
        for name, w in self.workloads.items():
            c = contenders.make(name, w, self.cfg, self.api, log_dir)
            self.running[name] = c
            c.start()
        for name, w in self.workloads.items():
            self.wait_at_zero(name, w)

    def wait_at_zero(self, name: str, w: contenders.Workload) -> None:
        """Every contender starts the trace from zero replicas and no pods."""
        probe = Sampler(self.api, self.conductor, w, time.time())
        deadline = time.monotonic() + self.args.setup_timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = probe.read()
                if last["replicas"] == 0 and last["pods"] == 0:
                    return
            except Exception as exc:  # the Deployment is not there yet
                last = repr(exc)[:200]
            time.sleep(1)
        raise TimeoutError(f"{name}: not at zero replicas within {self.args.setup_timeout} s (last {last})")

    def replay(self, t0: float, pool: ThreadPoolExecutor) -> list[tuple[str, int, Future]]:
        """Start one workflow per contender at each arrival; returns the pending starts."""
        pending = []
        for i, (at, dur) in enumerate(self.trace.arrivals):
            delay = t0 + at - time.time()
            if delay > 0:
                time.sleep(delay)
            for name, w in self.workloads.items():
                pending.append((name, i, pool.submit(self.start, w.workflow, dur, t0 + at)))
        return pending

    def start(self, workflow: str, duration_s: float, due: float) -> str:
        """One start call; how late it began (a saturated pool of starters shows here) is kept."""
        self.lateness.append(max(0.0, time.time() - due))
        return self.conductor.start_workflow(workflow, {"millis": int(duration_s * 1000)})

    def drain(self, deadline: float) -> float:
        """Wait until no contender has a running workflow; the time (on the run's clock) it happened."""
        while time.monotonic() < deadline:
            if not any(self.conductor.running_workflow_ids(w.workflow) for w in self.workloads.values()):
                return time.time()
            time.sleep(2)
        log(f"drain timeout: workflows still running after {self.args.drain_timeout} s")
        return time.time()

    def execute(self) -> dict[str, Any]:
        t0 = time.time() + 1.0  # the first arrival's clock; samplers start at it
        samplers = {n: Sampler(self.api, self.conductor, w, t0) for n, w in self.workloads.items()}
        time.sleep(max(0.0, t0 - time.time()))
        for s in samplers.values():
            s.start()
        log(f"{self.trace.name}: replaying {self.trace.tasks} arrivals over {self.trace.length_s:.0f} s")
        with ThreadPoolExecutor(self.args.start_threads) as pool:
            pending = self.replay(t0, pool)
            remaining = t0 + self.trace.length_s - time.time()
            if remaining > 0:
                time.sleep(remaining)
        self.ids = {n: [None] * self.trace.tasks for n in self.workloads}
        for name, i, fut in pending:
            try:
                self.ids[name][i] = fut.result()
            except Exception:
                self.start_errors[name] = self.start_errors.get(name, 0) + 1
        log(f"{self.trace.name}: replay done; waiting for the workflows to finish")
        done = self.drain(time.monotonic() + self.args.drain_timeout)
        end_at = max(t0 + self.trace.length_s, done) + self.args.tail_s
        time.sleep(max(0.0, end_at - time.time()))
        for s in samplers.values():
            s.stop()
        end = end_at - t0
        out = {}
        for name, w in self.workloads.items():
            ids = [i for i in self.ids[name] if i]
            wfs = self.read_workflows(ids)
            out[name] = figures(samplers[name], wfs, t0, end, w, self.start_errors.get(name, 0))
        return {"end_s": round(end, 3), "t0_epoch": t0, "contenders": out, "replay": self.replay_summary()}

    def read_workflows(self, ids: list[str]) -> list[dict[str, Any]]:
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(self.conductor.get_workflow, ids))

    def replay_summary(self) -> dict[str, Any]:
        return {
            "lateness_p50_s": elasticity.percentile(self.lateness, 0.5),
            "lateness_p99_s": elasticity.percentile(self.lateness, 0.99),
            "lateness_max_s": max(self.lateness, default=None),
            "start_errors": self.start_errors,
        }

    def close(self) -> None:
        for name, c in self.running.items():
            try:
                c.stop()
            except Exception as exc:
                log(f"{name}: stop failed: {exc!r}")
        for w in self.workloads.values():
            opbench.delete_namespace(self.api, w.namespace)
        if not self.args.keep_workflows:
            self.remove_workflows()
        self.conductor.close()

    def remove_workflows(self) -> None:
        def rm(wid: str) -> None:
            with contextlib.suppress(Exception):  # best effort: the run's figures are already read
                self.conductor.request("DELETE", f"/workflow/{wid}/remove", params={"archiveWorkflow": "false"})

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(rm, [i for ids in self.ids.values() for i in ids if i]))


def figures(
    sampler: Sampler, wfs: list[dict[str, Any]], t0: float, end: float, w: contenders.Workload, start_errors: int
) -> dict[str, Any]:
    """One contender's figures over [0, end] of the run's clock."""
    samples = [s for s in sampler.samples if s["t"] <= end]
    times = [s["t"] for s in samples]
    supply = [s["replicas"] for s in samples]
    tasks = elasticity.task_summary(wfs, t0 * 1000)
    task_times = tasks.pop("task_times")
    demand = elasticity.demand(task_times, times, w.slots, cap=w.max_replicas)
    metrics = elasticity.elasticity(times, supply, demand, end) if samples else {}
    acts = elasticity.activations([t.scheduled for t in task_times], times, [s["running"] for s in samples])
    return {
        "namespace": w.namespace,
        "task": w.task,
        "replica_seconds": round(elasticity.integral(times, supply, end), 1),
        "ready_pod_seconds": round(elasticity.integral(times, [s["ready"] for s in samples], end), 1),
        "peak_replicas": max(supply, default=0),
        **{k: round(v, 3) for k, v in metrics.items()},
        **tasks,
        "start_errors": start_errors,
        "first_pod_s": acts[0] if acts else None,
        "activations_s": acts,
        "sample_errors": sampler.errors,
        "samples": samples,
        "demand": demand,
    }


def log(msg: str) -> None:
    print(f"[autoscalers {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_trace(args: argparse.Namespace, cfg: Any, api: Any, name: str, info: dict[str, Any]) -> dict[str, Any]:
    trace = traces.generate(name, seed=args.seed, time_scale=args.time_scale, size=args.size)
    run = Run(args, cfg, api, trace)
    data: dict[str, Any] = {
        "benchmark": "autoscalers",
        "machine": info,
        "config": {
            "trace": name,
            "seed": args.seed,
            "time_scale": args.time_scale,
            "size": args.size,
            "slots_per_pod": args.slots,
            "max_replicas": args.max_replicas,
            "contenders": args.contenders,
            "tail_s": args.tail_s,
            "image": images.TEST_WORKERS_IMAGE,
            "demand": "ceil((ready + running tasks) / slots), capped at max_replicas",
            "supply": "Deployment spec.replicas",
        },
        "trace": {
            "tasks": trace.tasks,
            "length_s": trace.length_s,
            "arrivals_per_bin": traces.per_bin(trace, trace.length_s / 60),
            "bin_s": trace.length_s / 60,
        },
    }
    try:
        run.prepare(args.contenders, Path(args.out) / "logs")
        data["foreign_operators"] = opbench.foreign_operators(api)
        data.update(run.execute())
    finally:
        run.close()
    data["machine"] = {**info, "loadavg_end": opbench.loadavg()}
    return data


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="scripts/bench.sh autoscalers", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--traces", default=",".join(traces.NAMES), help=f"comma-separated of {', '.join(traces.NAMES)}")
    p.add_argument(
        "--contenders", default=",".join(contenders.KNOWN), help=f"comma-separated of {', '.join(contenders.KNOWN)}"
    )
    p.add_argument(
        "--time-scale", type=float, default=1.0, help="shrink every trace's time axis (0.05: 20 min -> 1 min)"
    )
    p.add_argument("--size", type=float, default=1.0, help="multiply every trace's arrival rates")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--slots", type=int, default=4, help="concurrent tasks per pod, every contender")
    p.add_argument("--max-replicas", type=int, default=6, help="every contender's maxReplicas")
    p.add_argument("--tail-s", type=float, default=0.0, help="seconds measured after the last workflow finished")
    p.add_argument(
        "--drain-timeout", type=float, default=900.0, help="seconds to wait for the workflows after the trace"
    )
    p.add_argument("--setup-timeout", type=float, default=180.0, help="seconds for a contender to stand at zero")
    p.add_argument("--start-threads", type=int, default=16, help="threads starting workflows")
    p.add_argument(
        "--foreign-wait", type=float, default=600.0, help="seconds to wait for a cluster-wide operator to go"
    )
    p.add_argument("--keep-workflows", action="store_true", help="do not remove the run's workflows from Conductor")
    p.add_argument("--out", default=str(opbench.REPO / "bench" / "results"))
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)
    args.traces = [t for t in args.traces.split(",") if t]
    args.contenders = [c for c in args.contenders.split(",") if c]
    for t in args.traces:
        if t not in traces.NAMES:
            p.error(f"unknown trace {t!r}")
    for c in args.contenders:
        if c not in contenders.KNOWN:
            p.error(f"unknown contender {c!r}")
    if not 0 < args.time_scale <= 1:
        p.error("--time-scale must be in (0, 1]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if any(c in contenders.KEDA_VARIANTS for c in args.contenders) and (missing := contenders.keda_available()):
        print(missing, file=sys.stderr)
        return 2
    cfg = opbench.stack()
    opbench.ensure_stack(cfg, node=True)
    opbench.apply_crd(cfg)
    api = opbench.api_client(cfg)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        if found := opbench.wait_no_foreign_operator(api, args.foreign_wait):
            log(f"a cluster-wide operator still runs and may act on the benchmark: {found}")
        info = opbench.machine()
        for name in args.traces:
            data = run_trace(args, cfg, api, name, info)
            report.save(out, f"autoscalers_{name}", data, plot=not args.no_plots)
            print(report.markdown(data), flush=True)
    finally:
        contenders.stop_keda(cfg)
        api.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
