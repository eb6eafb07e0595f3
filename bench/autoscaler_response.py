"""Autoscaler response (issue 6, item 3) on the real local stack: real Conductor queue depth, real
worker-runtime pods (containers of the sleep-workers test image run by the stack's kubelet), the real
operator process (on the host, watching only the benchmark's namespace).

    ~/.cache/conductor-worker-operator/venv/bin/python bench/autoscaler_response.py              # ~20 min
    ... bench/autoscaler_response.py --intervals 2 --trials 1 --minutes 0.5 --warmup 10 --out /tmp/x  # tiny

Three measurements, for each autoscaling.pollingIntervalSeconds in --intervals (default 5 and 2):

- activation: a ConductorWorker at zero replicas (minReplicas 0), one workflow started; seconds from the
  start call to the Deployment's spec.replicas > 0 (the Deployment is read at 10 Hz). Between trials the
  fleet goes back to zero (cooldownSeconds 10, scale-down window 10 s: only to reset, they do not take part
  in the measured path);
- scale-up: a fleet at 1 replica (minReplicas 1), --backlog workflows started at once (8 client threads);
  seconds from the first start call to spec.replicas > 1;
- steady noisy load: minReplicas 1, maxReplicas 4, every other setting the CRD's default (scale-down
  window 300 s, tolerance 0.1, target utilization 80 %, 10 per replica); Poisson arrivals whose rate is
  redrawn every 10 s within +-30 % of --rate (a worker pod runs 4 slots of 1 s tasks: 4 tasks/s, so the
  default 5/s needs 1.25 to 2 pods). Replica changes of the Deployment are counted after --warmup seconds,
  for --minutes; the runs for all intervals share the same time (one ConductorWorker and task type each).
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import opbench

from teststack import images

GROUP, VERSION, PLURAL = "conductor.io", "v1alpha1", "conductorworkers"
REFERENCE = {
    "KEDA pollingInterval (default)": 30,
    "HPA --horizontal-pod-autoscaler-sync-period (default)": 15,
    "HPA scale-down stabilization window (default)": 300,
}
GOALS = {"scale_up_s": "<= one polling interval", "activation_s": 5, "changes_per_10min": 2}


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        from kubernetes import client

        from worker_runtime.client import ConductorClient

        self.args = args
        self.cfg = opbench.stack()
        opbench.ensure_stack(self.cfg, node=True)
        opbench.apply_crd(self.cfg)
        self.api = opbench.api_client(self.cfg)
        self.apps = client.AppsV1Api(self.api)
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.conductor = ConductorClient(self.cfg.conductor_url)
        self.ns = opbench.new_namespace(self.api, "bench-as")
        self.tag = uuid.uuid4().hex[:6]
        self.tasks: dict[str, str] = {}
        self.workflows: dict[str, str] = {}
        self.op = None
        self.foreign_seen: list[tuple[str, list[str]]] = []
        self._watching = threading.Event()
        threading.Thread(target=self._watch_foreign, daemon=True).start()

    def _watch_foreign(self) -> None:
        """Record any other operator that could act on the benchmark's ConductorWorkers."""
        while not self._watching.wait(5):
            try:
                found = opbench.foreign_operators(self.api)
            except Exception:
                continue
            if found:
                self.foreign_seen.append((time.strftime("%H:%M:%S"), found))

    # -- setup ---------------------------------------------------------------------------------------

    def prepare(self, keys: list[str]) -> None:
        from teststack.operator_process import OperatorProcess

        for key in keys:
            self.tasks[key] = f"bench_as_{key}_{self.tag}"
            self.workflows[key] = f"bench_as_{key}_wf_{self.tag}"
        self.conductor.register_task_defs(
            [opbench.sleep_task_def(t, retry_count=0, response_timeout=60) for t in self.tasks.values()]
        )
        for key in keys:
            self.conductor.register_workflow(opbench.sleep_workflow_def(self.workflows[key], self.tasks[key]))
        out = Path(self.args.out)
        self.op = OperatorProcess(
            self.cfg.kubeconfig, [self.ns], out / "logs" / "autoscaler-operator.log", env={"CWO_RESYNC_SECONDS": "10"}
        ).start(timeout=60)

    def apply_cr(self, name: str, key: str, autoscaling: dict[str, Any]) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ConductorWorker",
            "metadata": {"name": name},
            "spec": {
                "conductor": {"serverUrl": self.cfg.pod_conductor_url},
                "image": images.TEST_WORKERS_IMAGE,
                "imagePullPolicy": "Never",
                "modules": ["sleep_workers"],
                "tasks": [{"name": self.tasks[key], "concurrency": 4, "pollTimeoutMs": 500}],
                "terminationGracePeriodSeconds": 10,
                "template": {"env": [{"name": "CWO_SLEEP_TASKS", "value": self.tasks[key]}]},
                "autoscaling": {"enabled": True, **autoscaling},
            },
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body)

    def delete_cr(self, name: str) -> None:
        from kubernetes import client

        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
        self.wait(lambda: not self._cr_exists(name), 60, f"{name} deleted")

    def _cr_exists(self, name: str) -> bool:
        from kubernetes import client

        try:
            self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)
            return True
        except client.ApiException:
            return False

    def replicas(self, name: str) -> int | None:
        from kubernetes import client

        try:
            return self.apps.read_namespaced_deployment(name, self.ns).spec.replicas
        except client.ApiException:
            return None

    def status(self, name: str) -> dict[str, Any]:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name).get("status") or {}
        except Exception:
            return {}

    def pods(self, name: str) -> int:
        return len(self.core.list_namespaced_pod(self.ns, label_selector=f"app.kubernetes.io/instance={name}").items)

    @staticmethod
    def wait(pred, timeout: float, what: str, interval: float = 0.1) -> Any:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = pred()
            if last:
                return last
            time.sleep(interval)
        raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last {last!r})")

    def start(self, key: str, millis: int) -> str:
        return self.conductor.start_workflow(self.workflows[key], {"millis": millis})

    def wait_workflow(self, wid: str, timeout: float) -> dict[str, Any]:
        return self.wait(
            lambda: (w := self.conductor.get_workflow(wid, include_tasks=False))["status"] != "RUNNING" and w,
            timeout,
            f"workflow {wid}",
            0.2,
        )

    # -- trials --------------------------------------------------------------------------------------

    def activation(self, interval: int) -> dict[str, Any]:
        name, key = f"act-p{interval}", f"act{interval}"
        self.apply_cr(
            name,
            key,
            {
                "minReplicas": 0,
                "maxReplicas": 2,
                "pollingIntervalSeconds": interval,
                "cooldownSeconds": 10,
                "scaleDown": {"stabilizationWindowSeconds": 10},
            },
        )
        seconds, done_s = [], []
        try:
            for _ in range(self.args.trials):
                self.wait(lambda: self.replicas(name) == 0, 120, f"{name} at zero", 0.2)
                self.wait(lambda: self.pods(name) == 0, 60, f"{name} pods gone", 0.5)
                time.sleep(random.uniform(0, interval))  # a random phase against the polling loop
                t0 = time.monotonic()
                wid = self.start(key, 10)
                self.wait(lambda: (self.replicas(name) or 0) > 0, 120, "activation", 0.1)
                seconds.append(round(time.monotonic() - t0, 2))
                wf = self.wait_workflow(wid, 120)
                done_s.append(round(time.monotonic() - t0, 2) if wf["status"] == "COMPLETED" else None)
                print(
                    f"[autoscaler] activation p={interval}: {seconds[-1]} s (workflow done {done_s[-1]} s)", flush=True
                )
        finally:
            self.delete_cr(name)
        return {
            "kind": "activation",
            "interval_s": interval,
            "seconds": seconds,
            "summary": opbench.summary(seconds),
            "workflow_done_s": done_s,
        }

    def scale_up(self, interval: int) -> dict[str, Any]:
        name, key = f"up-p{interval}", f"up{interval}"
        self.apply_cr(
            name,
            key,
            {
                "minReplicas": 1,
                "maxReplicas": 4,
                "targetQueueDepthPerReplica": 10,
                "pollingIntervalSeconds": interval,
                "scaleDown": {"stabilizationWindowSeconds": 10},
            },
        )
        seconds, enqueue = [], []
        try:
            for _ in range(self.args.trials):
                self.wait(lambda: self.replicas(name) == 1, 180, f"{name} at 1", 0.2)
                self.wait(
                    lambda: (s := self.status(name)).get("readyReplicas") == 1 and s.get("totalQueueDepth") == 0,
                    120,
                    f"{name} ready and idle",
                    0.3,
                )
                self.wait(lambda: self.pods(name) == 1, 60, f"{name} one pod", 0.5)
                time.sleep(random.uniform(0, interval))
                t0 = time.monotonic()
                with ThreadPoolExecutor(8) as pool:
                    list(pool.map(lambda _: self.start(key, 300), range(self.args.backlog)))
                enqueue.append(round(time.monotonic() - t0, 2))
                self.wait(lambda: (self.replicas(name) or 0) > 1, 120, "scale-up", 0.1)
                seconds.append(round(time.monotonic() - t0, 2))
                print(
                    f"[autoscaler] scale-up p={interval}: {seconds[-1]} s (backlog of {self.args.backlog} "
                    f"started in {enqueue[-1]} s, now {self.replicas(name)} replicas)",
                    flush=True,
                )
                self.wait(lambda: self.status(name).get("totalQueueDepth") == 0, 180, "drained", 0.5)
        finally:
            self.delete_cr(name)
        return {
            "kind": "scale-up",
            "interval_s": interval,
            "seconds": seconds,
            "summary": opbench.summary(seconds),
            "enqueue_s": enqueue,
            "backlog": self.args.backlog,
        }

    # -- steady noisy load ---------------------------------------------------------------------------

    def steady(self, intervals: list[int]) -> list[dict[str, Any]]:
        names = {p: f"steady-p{p}" for p in intervals}
        for p in intervals:
            self.apply_cr(names[p], f"steady{p}", {"minReplicas": 1, "maxReplicas": 4, "pollingIntervalSeconds": p})
        for p in intervals:
            self.wait(lambda p=p: self.replicas(names[p]) == 1, 60, f"{names[p]} at 1", 0.2)
        total = self.args.warmup + self.args.minutes * 60
        stop = threading.Event()
        t0 = time.monotonic()
        series = {p: [] for p in intervals}
        status_series = {p: [] for p in intervals}
        started = {p: 0 for p in intervals}
        rates = {p: [] for p in intervals}
        pool = ThreadPoolExecutor(6 * len(intervals))

        def arrivals(p: int) -> None:
            rnd = random.Random(p)
            rate, next_change = self.args.rate, 0.0
            now = time.monotonic() - t0
            while not stop.is_set():
                now = time.monotonic() - t0
                if now >= next_change:
                    rate = self.args.rate * rnd.uniform(1 - self.args.noise, 1 + self.args.noise)
                    rates[p].append((round(now, 1), round(rate, 2)))
                    next_change = now + 10
                stop.wait(rnd.expovariate(rate))
                pool.submit(self.start, f"steady{p}", self.args.task_ms)
                started[p] += 1

        def poll_replicas() -> None:
            last = {p: None for p in intervals}
            while not stop.is_set():
                t = round(time.monotonic() - t0, 2)
                for p in intervals:
                    r = self.replicas(names[p])
                    if r != last[p]:
                        series[p].append((t, r))
                        last[p] = r
                stop.wait(0.1)
            for p in intervals:
                series[p].append((round(time.monotonic() - t0, 2), last[p]))

        def poll_status() -> None:
            while not stop.is_set():
                t = round(time.monotonic() - t0, 2)
                for p in intervals:
                    st = self.status(names[p])
                    status_series[p].append(
                        {
                            "t": t,
                            "depth": st.get("totalQueueDepth"),
                            "busy": st.get("busySlots"),
                            "capacity": st.get("slotCapacity"),
                            "ready": st.get("readyReplicas"),
                        }
                    )
                stop.wait(1.0)

        threads = [threading.Thread(target=arrivals, args=(p,), daemon=True) for p in intervals]
        threads += [
            threading.Thread(target=poll_replicas, daemon=True),
            threading.Thread(target=poll_status, daemon=True),
        ]
        for th in threads:
            th.start()
        load = []
        while time.monotonic() - t0 < total:
            time.sleep(min(30, max(0.1, total - (time.monotonic() - t0))))
            load.append((round(time.monotonic() - t0), opbench.loadavg()[0]))
            print(
                f"[autoscaler] steady {time.monotonic() - t0:.0f}/{total:.0f} s: "
                + ", ".join(f"p{p} replicas {self.replicas(names[p])} started {started[p]}" for p in intervals),
                flush=True,
            )
        stop.set()
        for th in threads:
            th.join(10)
        pool.shutdown(wait=True)
        runs = []
        for p in intervals:
            counted = [(t, r) for (t, r), (_, prev) in zip(series[p][1:], series[p][:-1], strict=False) if r != prev]
            after = [(t, r) for t, r in counted if t >= self.args.warmup]
            minutes = (total - self.args.warmup) / 60
            runs.append(
                {
                    "interval_s": p,
                    "window_s": 300,
                    "minutes": round(minutes, 2),
                    "warmup_s": self.args.warmup,
                    "rate_per_s": self.args.rate,
                    "noise": self.args.noise,
                    "task_ms": self.args.task_ms,
                    "workflows_started": started[p],
                    "replicas_series": series[p],
                    "status_series": status_series[p],
                    "rates": rates[p],
                    "changes": counted,
                    "changes_total": len(counted),
                    "changes_counted": len(after),
                    "changes_per_10min": round(len(after) / minutes * 10, 2) if minutes > 0 else None,
                    "loadavg_1m": load,
                }
            )
            print(f"[autoscaler] steady p={p}: {len(after)} changes after warm-up ({counted})", flush=True)
        for p in intervals:
            self.delete_cr(names[p])
        return runs

    def close(self) -> None:
        try:
            if self.op is not None:
                from kubernetes import client

                try:
                    self.custom.delete_collection_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL)
                    self.wait(
                        lambda: not self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL)["items"],
                        90,
                        "CRs deleted",
                        1,
                    )
                except (client.ApiException, TimeoutError) as exc:
                    print(f"[autoscaler] cleanup: {exc}", flush=True)
                self.op.stop()
        finally:
            opbench.delete_namespace(self.api, self.ns)
            self.conductor.close()
            self.api.close()


def table(data: dict[str, Any]) -> str:
    lines = [
        "### Autoscaler response",
        "",
        "| measurement | polling interval | seconds (min / median / max, n) | goal | met | reference a user would otherwise get |",
        "|---|---:|---|---|---|---|",
    ]
    for key in sorted(data["trials"]):
        t = data["trials"][key]
        s = t["summary"]
        if t["kind"] == "activation":
            goal, ok = "<= 5 s", s["max"] is not None and s["max"] <= 5
            ref = "KEDA: up to 30 s polling (activation is KEDA's)"
        else:
            goal, ok = f"<= {t['interval_s']} s (one interval)", s["max"] is not None and s["max"] <= t["interval_s"]
            ref = "KEDA 30 s polling + HPA 15 s sync: up to ~45 s"
        lines.append(
            f"| {t['kind']} | {t['interval_s']} s | {s['min']} / {s['median']} / {s['max']} (n={s['n']}) | {goal} | "
            f"{'yes' if ok else 'NO'} (max) | {ref} |"
        )
    for run in data["steady"]:
        ok = run["changes_per_10min"] is not None and run["changes_per_10min"] <= 2
        lines.append(
            f"| replica changes, steady noisy load ({run['rate_per_s']}/s +-{int(run['noise'] * 100)} %, "
            f"{run['minutes']} min after {run['warmup_s']} s warm-up) | {run['interval_s']} s | "
            f"{run['changes_counted']} changes = {run['changes_per_10min']} per 10 min "
            f"(all: {[r for _, r in run['changes']]}) | <= 2 per 10 min | {'yes' if ok else 'NO'} | "
            "HPA default: scale-down window 300 s |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--intervals", default="5,2", help="pollingIntervalSeconds values, comma separated")
    p.add_argument("--trials", type=int, default=4, help="activation and scale-up trials per interval (0 skips)")
    p.add_argument("--backlog", type=int, default=200, help="workflows started at once for a scale-up trial")
    p.add_argument("--minutes", type=float, default=10, help="steady noisy load: minutes counted (0 skips)")
    p.add_argument("--warmup", type=float, default=60, help="steady load: seconds before counting changes")
    p.add_argument("--rate", type=float, default=5.0, help="steady load: mean workflows per second")
    p.add_argument("--noise", type=float, default=0.3, help="steady load: rate redrawn every 10 s within +-noise")
    p.add_argument("--task-ms", type=int, default=1000, help="steady load: task duration (4 slots per pod)")
    p.add_argument("--out", default=str(opbench.REPO / "bench" / "results"))
    p.add_argument("--name", default="autoscaler_response")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)
    intervals = [int(x) for x in args.intervals.split(",") if x.strip()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "benchmark": "autoscaler_response",
        "machine": opbench.machine(),
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "reference_documented_defaults_s": REFERENCE,
        "goals": GOALS,
        "trials": {},
        "steady": [],
    }
    bench = Bench(args)
    data["foreign_operator_at_start"] = opbench.wait_no_foreign_operator(bench.api)
    try:
        keys = [f"{k}{i}" for i in intervals for k in ("act", "up", "steady")]
        bench.prepare(keys)
        if args.trials > 0:
            for i in intervals:
                data["trials"][f"activation-p{i}"] = bench.activation(i)
                data["trials"][f"scale-up-p{i}"] = bench.scale_up(i)
        if args.minutes > 0:
            data["steady"] = bench.steady(intervals)
    finally:
        bench._watching.set()
        data["foreign_operator_seen"] = bench.foreign_seen
        bench.close()
    data["machine"]["loadavg_end"] = opbench.loadavg()
    opbench.save_results(out, args.name, data, table(data), None if args.no_plot else "autoscaler")
    print(table(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
