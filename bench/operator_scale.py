"""Operator scale (issue 6, item 4): reconcile time and operator RSS with many ConductorWorkers, and the
scraper's time for many pod /metrics endpoints.

    ~/.cache/conductor-worker-operator/venv/bin/python bench/operator_scale.py            # 100,500,1000 + 1,000 scrapes
    ... bench/operator_scale.py --sizes 10 --endpoints 20 --scrape-rounds 2 --out /tmp/x    # tiny (CI smoke)

Reconcile: for each size N, a fresh namespace and a fresh operator process (the real one,
`teststack.operator_process.OperatorProcess`, resync every 10 s as deployed); N ConductorWorkers are
created (8 client threads) with an image no node has and no registry serves (example.invalid/w:1) and
autoscaling off. Measured from the first create until every CR has status.observedGeneration ==
metadata.generation and its Deployment exists (one list of each every 0.5 s). The operator's RSS, thread
count and CPU time are sampled from /proc every 0.5 s, and for --settle seconds of steady state after.
The CRs are then deleted (with the operator running, it owns the finalizers), the operator stopped and
the namespace deleted.

Scrape: one child process serves N endpoints (asyncio, one listening socket per 127.2.x.y address, the
port a pod would use) with the text a real runtime serves (the runtime's own WorkerMetrics registry, two
task types, filled histograms); the operator's `Scraper.scrape()` is called directly on all of them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import opbench

GROUP, VERSION, PLURAL = "conductor.io", "v1alpha1", "conductorworkers"
IMAGE = "example.invalid/w:1"  # no node has it (private plane: no node at all): nothing is started


# -- reconcile --------------------------------------------------------------------------------------------


class Sampler(threading.Thread):
    def __init__(self, pid: int, t0: float, period: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.t0, self.period = pid, t0, period
        self.rss: list[tuple[float, float]] = []
        self.threads: list[tuple[float, int]] = []
        self.cpu: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t = round(time.monotonic() - self.t0, 2)
            rss, thr, cpu = opbench.rss_mib(self.pid), opbench.threads(self.pid), opbench.cpu_seconds(self.pid)
            if rss is not None:
                self.rss.append((t, round(rss, 1)))
            if thr is not None:
                self.threads.append((t, thr))
            if cpu is not None:
                self.cpu.append((t, cpu))
            self.stop.wait(self.period)


def operator_process(kubeconfig, namespace: str, log_path: Path, env: dict[str, str], verbose: bool):
    """The real operator (teststack.operator_process.OperatorProcess); without --verbose unless asked, as
    the Helm chart deploys it (operator.verbose: false): DEBUG logging of every API request costs CPU."""
    from teststack.operator_process import OperatorProcess

    class Quiet(OperatorProcess):
        def start(self, timeout: float = 30.0):
            if verbose:
                return super().start(timeout)
            real = subprocess.Popen

            def popen(argv, *a, **kw):
                return real([x for x in argv if x != "--verbose"], *a, **kw)

            subprocess.Popen = popen
            try:
                return super().start(timeout)
            finally:
                subprocess.Popen = real

    return Quiet(kubeconfig, [namespace], log_path, env=env)


def apiserver_requests(api) -> dict[str, float]:
    """The API server's own count of the requests it answered (all clients), by `VERB resource[/sub]`."""
    method, url, headers, body, post = api.param_serialize("GET", "/metrics", auth_settings=["BearerToken"])
    return _requests_by_resource(
        api.call_api(method, url, headers, body, post).read().decode(), "apiserver_request_total"
    )


def operator_requests(metrics_url: str) -> dict[str, float]:
    """The operator's count of its steps' API requests (conductor_operator_api_requests_total)."""
    import requests

    return _requests_by_resource(requests.get(metrics_url, timeout=10).text, "conductor_operator_api_requests_total")


def _requests_by_resource(text: str, name: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name != name:
                continue
            labels = sample.labels
            resource = labels.get("resource", "?") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
            key = f"{labels.get('verb', '?')} {resource}"
            out[key] = out.get(key, 0.0) + sample.value
    return out


def _per_cr(before: dict[str, float], after: dict[str, float], divisor: float, digits: int) -> dict[str, float]:
    """The requests counted between two readings over divisor, by `VERB resource`, the busiest first."""
    values = {k: (after.get(k, 0.0) - before.get(k, 0.0)) / divisor for k in after}
    return dict(sorted(((k, round(v, digits)) for k, v in values.items() if v > 0), key=lambda kv: -kv[1]))


def per_cr(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """Requests per ConductorWorker over a phase (all clients)."""
    return _per_cr(before, after, n, 2)


def per_cr_minute(before: dict[str, float], after: dict[str, float], n: int, seconds: float) -> dict[str, float]:
    """Requests per ConductorWorker per minute over a window."""
    return _per_cr(before, after, n * seconds / 60, 3)


def cr_manifest(i: int, server_url: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ConductorWorker",
        "metadata": {"name": f"w{i:05d}"},
        "spec": {
            "conductor": {"serverUrl": server_url},
            "image": IMAGE,
            "modules": ["bench_workers"],
            "tasks": [{"name": f"bench_scale_t{i}", "concurrency": 2}],
            "replicas": replicas,
        },
    }


def reconciled(api, namespace: str) -> tuple[int, int]:
    """(CRs whose status caught up with their generation and whose Deployment exists, CRs listed)."""
    from kubernetes import client

    crs = client.CustomObjectsApi(api).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
    # Names only (metadata-only list): the probe must not load the API server it measures.
    deps = client.AppsV1Api(api).list_namespaced_deployment(
        namespace,
        _preload_content=False,
        _headers={"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"},
    )
    names = {d["metadata"]["name"] for d in json.loads(deps.data).get("items") or []}
    done = sum(
        1
        for cr in crs
        if (cr.get("status") or {}).get("observedGeneration") == cr["metadata"].get("generation")
        and cr["metadata"]["name"] in names
    )
    return done, len(crs)


def rolled_out(api, namespace: str) -> tuple[int, int]:
    """(Deployments whose pods kube-controller-manager has created, Deployments): its client is limited to
    20 requests/s, so 1,000 new Deployments keep it busy for minutes after the operator is done."""
    from kubernetes import client

    deps = client.AppsV1Api(api).list_namespaced_deployment(namespace).items
    done = sum(1 for d in deps if (d.status.replicas or 0) == d.spec.replicas and d.status.observed_generation)
    return done, len(deps)


def reconcile_run(cfg, api, n: int, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    foreign_start = opbench.wait_no_foreign_operator(api)
    ns = opbench.new_namespace(api, "bench-ops")
    env = {"CWO_RESYNC_SECONDS": str(args.resync)}
    if args.max_workers:
        env["CWO_MAX_WORKERS"] = str(args.max_workers)
    if args.operator_path:  # a patched copy of the operator package (a directory holding conductor_operator/)
        env["PYTHONPATH"] = args.operator_path
    op = operator_process(
        cfg.kubeconfig, ns, log_dir / f"operator-{n}-{args.label or 'default'}.log", env, args.verbose
    )
    result: dict[str, Any] = {"n": n, "namespace": ns, "label": args.label, "resync_s": args.resync}
    result["foreign_operator_at_start"] = foreign_start
    try:
        op.start(timeout=60)
        pid = op.proc.pid
        time.sleep(2)
        result["rss_idle_mib"] = round(opbench.rss_mib(pid) or 0, 1)
        result["loadavg_before"] = opbench.loadavg()
        t0 = time.monotonic()
        sampler = Sampler(pid, t0)
        sampler.start()
        cpu0 = opbench.cpu_seconds(pid) or 0.0
        r0 = apiserver_requests(api)

        def create(i: int) -> None:
            for attempt in range(5):
                try:
                    custom.create_namespaced_custom_object(
                        GROUP, VERSION, ns, PLURAL, cr_manifest(i, cfg.conductor_url, args.replicas)
                    )
                    return
                except client.ApiException as exc:
                    if exc.status == 409:
                        return
                    time.sleep(0.5 * (attempt + 1))
            raise RuntimeError(f"could not create CR {i}")

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(n)))
        created = time.monotonic() - t0
        progress: list[tuple[float, int]] = [(0.0, 0)]
        deadline = t0 + args.timeout
        done = 0
        while time.monotonic() < deadline:
            try:
                done, listed = reconciled(api, ns)
            except client.ApiException as exc:  # a loaded API server answers 504 now and then: ask again
                print(f"[operator_scale] progress probe: {exc.status}", flush=True)
                time.sleep(1)
                continue
            progress.append((round(time.monotonic() - t0, 2), done))
            if done == n and listed == n:
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - t0
        cpu1 = opbench.cpu_seconds(pid) or 0.0
        result["apiserver_requests_per_cr_reconcile"] = per_cr(r0, apiserver_requests(api), n)
        result.update(
            {
                "created_s": round(created, 2),
                "all_reconciled": done == n,
                "reconciled": done,
                "reconcile_s": round(elapsed, 2) if done == n else None,
                "timeout_s": args.timeout,
                "progress": progress,
                "operator_cpu_s_reconcile": round(cpu1 - cpu0, 2),
            }
        )
        # steady state: nothing changes any more (kube-controller-manager has created every pod), only the
        # per-CR resync loops run (Deployment and pods from the watches, status when changed)
        w0 = time.monotonic()
        while time.monotonic() - w0 < args.rollout_wait:
            with contextlib.suppress(client.ApiException):
                if (counts := rolled_out(api, ns))[0] == counts[1]:
                    break
            time.sleep(2)
        result["rollout_wait_s"] = round(time.monotonic() - w0, 1)
        api0, op0 = apiserver_requests(api), operator_requests(op.metrics_url)
        s0, c0 = time.monotonic(), opbench.cpu_seconds(pid) or 0.0
        time.sleep(args.settle)
        s1, c1 = time.monotonic(), opbench.cpu_seconds(pid) or 0.0
        api1, op1 = apiserver_requests(api), operator_requests(op.metrics_url)
        result["steady_cpu_pct"] = round(100 * (c1 - c0) / (s1 - s0), 1)
        result["steady_s"] = round(s1 - s0, 1)
        result["operator_requests_per_cr_min"] = per_cr_minute(op0, op1, n, s1 - s0)
        result["apiserver_requests_per_cr_min"] = per_cr_minute(api0, api1, n, s1 - s0)
        result["steady_reconciled"] = reconciled(api, ns)[0]
        sampler.stop.set()
        sampler.join()
        result["rss_series"] = sampler.rss
        result["threads_series"] = sampler.threads
        result["rss_peak_mib"] = max((r for _, r in sampler.rss), default=None)
        result["rss_end_mib"] = sampler.rss[-1][1] if sampler.rss else None
        result["threads_peak"] = max((r for _, r in sampler.threads), default=None)
        result["loadavg_after"] = opbench.loadavg()
        result["foreign_operator_after"] = opbench.foreign_operators(api)
        # deletion with the operator running (kopf's finalizers)
        d0 = time.monotonic()
        try:
            custom.delete_collection_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, _request_timeout=300)
        except Exception as exc:  # a loaded API server may drop the long call; the deletions still proceed
            print(f"[operator_scale] delete collection: {exc!r:.200}", flush=True)
        left = n
        while time.monotonic() - d0 < args.delete_timeout:
            with contextlib.suppress(Exception):
                left = len(custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"])
            if left == 0:
                break
            time.sleep(1)
        result["delete_s"] = round(time.monotonic() - d0, 2) if left == 0 else None
        result["left_after_delete_timeout"] = left
    finally:
        op.stop()
        _strip_finalizers(custom, ns)
        opbench.delete_namespace(api, ns)
    return result


def _strip_finalizers(custom, ns: str) -> None:
    """Leftovers after the operator stopped: drop kopf's finalizer so the namespace can go."""
    with contextlib.suppress(Exception):
        items = custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]

        def strip(cr: dict[str, Any]) -> None:
            with contextlib.suppress(Exception):
                custom.patch_namespaced_custom_object(
                    GROUP, VERSION, ns, PLURAL, cr["metadata"]["name"], {"metadata": {"finalizers": None}}
                )

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(strip, items))


# -- scrape -----------------------------------------------------------------------------------------------


def metrics_text(types: int = 2) -> bytes:
    """What a runtime pod serves after some work: the runtime's own registry, histograms filled."""
    from prometheus_client import generate_latest

    from worker_runtime.metrics import WorkerMetrics

    m = WorkerMetrics()
    rnd = random.Random(1)
    for k in range(types):
        t = f"bench_task_{k}"
        m.capacity.labels(t).set(4)
        m.busy_slots.labels(t).set(2)
        m.paused.labels(t).set(0)
        m.poll.labels(t).inc(12345)
        m.poll_empty.labels(t).inc(2345)
        m.polled.labels(t).inc(10000)
        m.execute.labels(t, "COMPLETED").inc(9990)
        m.execute.labels(t, "FAILED").inc(10)
        m.execute_error.labels(t, "ValueError").inc(10)
        for _ in range(200):
            m.poll_time.labels(t, "SUCCESS").observe(rnd.expovariate(20))
            m.execute_time.labels(t, "SUCCESS").observe(rnd.expovariate(5))
            m.result_size.labels(t).observe(rnd.expovariate(1 / 800))
    return generate_latest(m.registry)


SERVER = r"""
import asyncio, sys
body = open(sys.argv[1], "rb").read()
n, port = int(sys.argv[2]), int(sys.argv[3])
head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: %d\r\n\r\n" % len(body)
async def handle(reader, writer):
    try:
        while True:
            req = await reader.readuntil(b"\r\n\r\n")
            if not req:
                break
            writer.write(head + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
def addr(i):
    return f"127.2.{i // 250}.{i % 250 + 1}"
async def main():
    servers = [await asyncio.start_server(handle, addr(i), port, backlog=128) for i in range(n)]
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def endpoint(i: int, port: int) -> str:
    return f"http://127.2.{i // 250}.{i % 250 + 1}:{port}/metrics"


def scrape_run(n: int, rounds: int, port: int, label: str) -> dict[str, Any]:
    from conductor_operator.observe import Scraper, parse_metrics

    body = metrics_text()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "metrics.txt"
        path.write_bytes(body)
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(path), str(n), str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            line = server.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"metrics server did not start: {line} {server.stderr.read()[-2000:]}")
            targets = {f"pod-{i}": endpoint(i, port) for i in range(n)}
            scraper = Scraper()
            seconds, errors, busy = [], [], []
            load = opbench.loadavg()
            for _ in range(rounds):
                t = time.perf_counter()
                res = scraper.scrape(targets)
                seconds.append(round(time.perf_counter() - t, 3))
                errors.append(len(res.errors))
                busy.append(res.busy_slots)
            scraper.close()
            # attribution: parsing alone, same text, same process
            k = min(n, 200)
            t = time.perf_counter()
            for _ in range(k):
                parse_metrics(body.decode())
            parse_ms = (time.perf_counter() - t) / k * 1000
        finally:
            server.terminate()
            server.wait(10)
    return {
        "endpoints": n,
        "label": label,
        "rounds": rounds,
        "seconds": seconds,
        "summary": opbench.summary(seconds),
        "errors": errors,
        "busy_slots": busy,
        "expected_busy_slots": n * 4,
        "metrics_bytes": len(body),
        "metrics_lines": body.count(b"\n"),
        "parse_ms_per_endpoint": round(parse_ms, 3),
        "loadavg": load,
    }


# -- main -------------------------------------------------------------------------------------------------


WRITE_VERBS = {"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"}  # apiserver_request_total verbs


def cpu_goal(r: dict[str, Any]) -> str:
    if r["n"] < 1000:
        return ""
    return " met" if r["steady_cpu_pct"] < 10 else " MISSED"


def table(data: dict[str, Any]) -> str:
    lines = [
        "### Operator scale",
        "",
        "| ConductorWorkers | reconciled | time to all reconciled | goal | operator RSS idle / peak / end | threads peak | operator CPU during reconcile | steady CPU (resync loops; goal < 10 % at 1,000) | delete all |",
        "|---:|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in data["reconcile"]:
        rec = f"{r['reconcile_s']:.1f} s" if r["reconcile_s"] is not None else f"not within {r['timeout_s']} s"
        goal = "< 30 s" if r["n"] >= 1000 else ""
        if r["n"] >= 1000 and r["reconcile_s"] is not None:
            goal += " met" if r["reconcile_s"] < 30 else " MISSED"
        elif r["n"] >= 1000:
            goal += " MISSED"
        delete = (
            f"{r['delete_s']:.1f} s" if r.get("delete_s") is not None else f"{r.get('left_after_delete_timeout')} left"
        )
        name = f"{r['n']}" + (f" ({r['label']})" if r.get("label") else "")
        lines.append(
            f"| {name} | {r['reconciled']}/{r['n']} | {rec} | {goal} | {r['rss_idle_mib']} / {r['rss_peak_mib']} / "
            f"{r['rss_end_mib']} MiB | {r['threads_peak']} | {r['operator_cpu_s_reconcile']} s | {r['steady_cpu_pct']} %{cpu_goal(r)} | {delete} |"
        )
    lines += [
        "",
        "API requests per ConductorWorker per minute in steady state (operator: its steps' own count; API server:",
        "every client, kopf's watches and kube-controller-manager included), busiest first:",
        "",
        "| ConductorWorkers | operator steps | API server (all clients) |",
        "|---:|---|---|",
    ]
    for r in data["reconcile"]:
        fmt = lambda rates: ", ".join(f"{k} {v}" for k, v in list(rates.items())[:6]) or "none"  # noqa: E731
        lines.append(
            f"| {r['n']} | {fmt(r.get('operator_requests_per_cr_min') or {})} | "
            f"{fmt(r.get('apiserver_requests_per_cr_min') or {})} |"
        )
    lines += [
        "",
        "API requests per ConductorWorker from the first create to all reconciled (every client: the benchmark's",
        "creates and progress probes, the operator, kopf, kube-controller-manager), busiest first:",
        "",
        "| ConductorWorkers | requests per CR | writes per CR |",
        "|---:|---|---:|",
    ]
    for r in data["reconcile"]:
        counts = r.get("apiserver_requests_per_cr_reconcile") or {}
        writes = sum(v for k, v in counts.items() if k.split()[0] in WRITE_VERBS)
        shown = ", ".join(f"{k} {v}" for k, v in list(counts.items())[:10]) or "not recorded"
        lines.append(f"| {r['n']} | {shown} | {writes:.1f} |")
    if data["scrape"]:
        lines += [
            "",
            "| endpoints | scraper | seconds per round (min / median / max) | errors | goal < 2 s | text per pod | parse alone |",
            "|---:|---|---|---:|---|---|---:|",
        ]
        for s in data["scrape"]:
            sm = s["summary"]
            fast = sm["median"] is not None and sm["median"] < 2
            goal = (
                "met"
                if fast and max(s["errors"]) == 0
                else f"MISSED ({max(s['errors'])} of {s['endpoints']} not scraped)"
            )
            if not fast:
                goal = f"MISSED (median {sm['median']} s, {max(s['errors'])} errors)"
            lines.append(
                f"| {s['endpoints']} | {s['label']} | {sm['min']} / {sm['median']} / {sm['max']} | {max(s['errors'])} | "
                f"{goal} | {s['metrics_bytes']} B, {s['metrics_lines']} lines | {s['parse_ms_per_endpoint']} ms |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100,500,1000", help="ConductorWorker counts, comma separated ('' skips)")
    p.add_argument("--replicas", type=int, default=1, help="spec.replicas of each CR (Pods stay Pending)")
    p.add_argument("--timeout", type=float, default=240, help="seconds to wait for all CRs reconciled")
    p.add_argument("--settle", type=float, default=20, help="seconds of steady state measured after")
    p.add_argument(
        "--rollout-wait",
        type=float,
        default=600,
        help="at most this long, wait for kube-controller-manager to create every pod before the steady window",
    )
    p.add_argument("--delete-timeout", type=float, default=120)
    p.add_argument("--resync", type=float, default=60, help="CWO_RESYNC_SECONDS of the operator (deployed: 60)")
    p.add_argument("--max-workers", type=int, default=0, help="CWO_MAX_WORKERS (0: the operator's default, 32)")
    p.add_argument(
        "--shared-plane",
        dest="private_plane",
        action="store_false",
        help="use the shared local API server instead of a private one (started for the run, same binaries)",
    )
    p.add_argument("--operator-path", default="", help="PYTHONPATH holding a patched conductor_operator/ to compare")
    p.add_argument("--verbose", action="store_true", help="run the operator with --verbose (DEBUG logs)")
    p.add_argument("--label", default="", help="a label for this configuration in the results")
    p.add_argument("--endpoints", type=int, default=1000, help="pod /metrics endpoints to scrape (0 skips)")
    p.add_argument("--scrape-rounds", type=int, default=5)
    p.add_argument("--port", type=int, default=18900, help="port of the served endpoints (127.2.x.y:port)")
    p.add_argument("--out", default=str(opbench.REPO / "bench" / "results"))
    p.add_argument("--name", default="operator_scale", help="file name stem of the results")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    cfg = opbench.stack()
    data: dict[str, Any] = {
        "benchmark": "operator_scale",
        "machine": opbench.machine(),
        "config": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "reconcile": [],
        "scrape": [],
    }
    if sizes:
        opbench.ensure_stack(cfg, node=False)
        stop_plane = None
        if args.private_plane:
            cfg, stop_plane = opbench.private_plane(cfg)
        data["config"]["api_server"] = cfg.apiserver_url
        try:  # the private plane stops whatever fails (a failed run left its etcd and API server running)
            opbench.apply_crd(cfg)
            api = opbench.api_client(cfg)
            log_dir = out / "logs"
            for n in sizes:
                print(f"[operator_scale] {n} ConductorWorkers ...", flush=True)
                r = reconcile_run(cfg, api, n, args, log_dir)
                print(
                    f"[operator_scale] {n}: reconciled {r['reconciled']}/{n} in {r['reconcile_s']} s, "
                    f"RSS peak {r['rss_peak_mib']} MiB, threads {r['threads_peak']}",
                    flush=True,
                )
                data["reconcile"].append(r)
            api.close()
        finally:
            if stop_plane is not None:
                stop_plane()
    if args.endpoints:
        print(f"[operator_scale] scraping {args.endpoints} endpoints ...", flush=True)
        s = scrape_run(args.endpoints, args.scrape_rounds, args.port, "Scraper() of this checkout")
        print(f"[operator_scale] scrape: {s['summary']}", flush=True)
        data["scrape"].append(s)
    data["machine"]["loadavg_end"] = opbench.loadavg()
    data["commit"] = subprocess.run(
        ["git", "-C", str(opbench.REPO), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    opbench.save_results(out, args.name, data, table(data), None if args.no_plot else "operator")
    print(table(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
