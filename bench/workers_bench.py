"""Benchmark 1: worker throughput and cost, the runtime vs the Conductor Python SDK vs the ceiling.

Per run (one contender, one task kind): N one-task workflows are started through the REST API first,
then the contender's process starts. Measured:
- tasks/s: N / (last completion - first pickup). First pickup: the queue size drops below N (polled
  every 50 ms); last completion: the latest task endTime among the workflows still running at the
  previous progress sample (exact, from the server). Startup (launch -> first pickup) is reported apart.
- client CPU s / 1,000 tasks: user+system of the contender's whole process tree between first pickup
  and last completion (psutil, sampled every 100 ms; the pids that exit keep their last value).
- peak RSS: the largest sum of RSS over the tree's live processes, sampled every 100 ms.
- server requests per completed task: the requests the server answered on the worker endpoints (poll,
  batch poll, update, update-v2) from the launch to the last completion, over the tasks completed;
  counted by the server itself (Spring's request metrics), so every contender is counted alike.
- idle requests/s: the same count over `idle_s` seconds (10) while the contender idles (one task type, no work).
- pickup latency (server's startTime - scheduledTime), p50/p99, of `--latency-n` workflows started at
  `--latency-rate`/s once the backlog is gone (an idle worker picking up new work); and, apart, the queue
  wait of 200 sampled backlog tasks (which mostly measures the backlog, not the worker).
Contenders alternate over rounds (rotated order), both kinds inside each round.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from common import (
    FixedSampler,
    Pythons,
    Server,
    TreeSampler,
    fmt,
    launch,
    log,
    now_ms,
    percentile,
    server_processes,
    spread,
    table,
    terminate,
    unique,
)

KINDS = ("noop", "sleep10")


def _pickup_ms(workflows: list[dict[str, Any]]) -> tuple[list[float], int]:
    lat, not_done = [], 0
    for wf in workflows:
        if wf.get("status") != "COMPLETED":
            not_done += 1
        for t in wf.get("tasks", []):
            if t.get("startTime") and t.get("scheduledTime"):
                lat.append(float(t["startTime"] - t["scheduledTime"]))
    return lat, not_done


def _per(before: int | None, after: int | None, per: float, digits: int) -> float | None:
    return None if before is None or after is None else round((after - before) / per, digits)


def one_run(
    server: Server,
    py: Pythons,
    contender: str,
    kind: str,
    n: int,
    threads: int,
    latency_n: int,
    latency_rate: float,
    logs: Path,
    timeout: float,
    stall_s: float = 30.0,
    idle_s: float = 10.0,
) -> dict[str, Any]:
    task = unique(f"bench_{kind}_{contender.replace('-', '_')}")
    wf = f"{task}_wf"
    server.define([task])
    t = time.monotonic()
    ids = server.start_workflows(wf, n)
    start_s = time.monotonic() - t
    deadline = time.monotonic() + 60
    while server.queue_size(task) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    log(f"  {contender}/{kind}: {n} workflows queued in {start_s:.1f}s ({n / start_s:.0f}/s); starting the worker")

    requests_before = server.worker_requests()
    server_procs = server_processes(server.url)
    launched = now_ms()
    proc = launch(contender, py, server.url, threads, {task: kind}, logs / f"{task}.log")
    sampler = TreeSampler(proc.pid, interval=0.1).start()
    server_sampler = FixedSampler(server_procs, interval=0.1).start()
    lat_ids: list[str] = []
    result: dict[str, Any] = {"contender": contender, "kind": kind, "n": n, "threads": threads, "task": task}
    try:
        first_pickup = None
        end = time.monotonic() + timeout
        while first_pickup is None:
            if server.queue_size(task) < n:
                first_pickup = now_ms()
            elif proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"{contender} picked up nothing (exit code {proc.poll()}); see {logs}")
            else:
                time.sleep(0.05)
        progress: list[tuple[float, int]] = [(first_pickup, 0)]
        previous: list[str] = list(ids)
        stalled = 0
        moved = time.monotonic()
        while True:
            running = server.running(wf)
            progress.append((now_ms(), n - len(running)))
            if not running:
                break
            if len(running) < len(previous):
                moved = time.monotonic()
            elif time.monotonic() - moved > stall_s:
                # the server keeps some tasks queued but hands them to no poll (seen with update-v2)
                stalled = len(running)
                log(f"  {contender}/{kind}: STALLED, {stalled} of {n} tasks not handed out for {stall_s:.0f}s")
                break
            previous = running
            if time.monotonic() > end:
                raise RuntimeError(f"{contender}/{kind}: {len(running)} of {n} still running after {timeout}s")
            if proc.poll() is not None:
                raise RuntimeError(f"{contender} exited with {proc.returncode}; see {logs}")
            time.sleep(0.25)
        if stalled:
            while len(progress) > 2 and progress[-2][1] == progress[-1][1]:
                progress.pop()
            last_completion = progress[-1][0]
        else:
            last = server.workflows(previous)
            ends = [t.get("endTime") or 0 for w in last for t in w.get("tasks", [])]
            last_completion = float(max(ends, default=0)) or progress[-1][0]
            # A workflow is listed RUNNING until its decide after the task ended: a probe taken after the
            # last task's end may still count it. Such probes say less than the end itself does.
            while len(progress) > 2 and progress[-2][0] > last_completion:
                del progress[-2]
            progress[-1] = (last_completion, n)
        done = progress[-1][1]
        requests_after = server.worker_requests()
        elapsed_s = (last_completion - first_pickup) / 1000
        cpu_s = sampler.cpu_at(last_completion) - sampler.cpu_at(first_pickup)
        server_cpu_s = server_sampler.cpu_at(last_completion) - server_sampler.cpu_at(first_pickup)

        # an idle worker picking up new work
        lat_ids = server.start_paced(wf, latency_n, latency_rate)
        wait_end = time.monotonic() + (5 if stalled else 60)
        while len(server.running(wf)) > stalled and time.monotonic() < wait_end:
            time.sleep(0.2)
        time.sleep(2.0)  # into idle mode
        idle_before = server.worker_requests()
        time.sleep(idle_s)
        idle_after = server.worker_requests()
        lat, lat_not_done = _pickup_ms(server.workflows(lat_ids))
        backlog, backlog_not_done = _pickup_ms(server.workflows(random.sample(ids, min(200, n))))
        sampler.stop()
        server_sampler.stop()
        result |= {
            "start_workflows_per_s": round(n / start_s, 1),
            "startup_s": round((first_pickup - launched) / 1000, 3),
            "elapsed_s": round(elapsed_s, 3),
            "tasks_per_s": round(done / elapsed_s, 1),
            "completed": done,
            "stalled": stalled,
            "cpu_s": round(cpu_s, 3),
            "cpu_s_per_1000": round(cpu_s / max(done, 1) * 1000, 3),
            "cpu_s_total": round(sampler.samples[-1].cpu_s, 3) if sampler.samples else None,
            "server_cpu_s_per_1000": round(server_cpu_s / max(done, 1) * 1000, 3) if server_procs else None,
            "peak_rss_mib": round(sampler.peak_rss / 2**20, 1),
            "requests_per_task": _per(requests_before, requests_after, max(done, 1), 3),
            "idle_requests_per_s": _per(idle_before, idle_after, idle_s, 2),
            "processes": max((s.procs for s in sampler.samples), default=0),
            "pickup_ms_p50": percentile(lat, 0.5),
            "pickup_ms_p99": percentile(lat, 0.99),
            "pickup_samples": len(lat),
            "backlog_wait_ms_p50": percentile(backlog, 0.5),
            "backlog_wait_ms_p99": percentile(backlog, 0.99),
            "not_completed_sampled": lat_not_done + backlog_not_done,
            "progress": [(round((t - first_pickup) / 1000, 3), c) for t, c in progress],
        }
        log(
            f"  {contender}/{kind}: {result['tasks_per_s']} tasks/s, {result['cpu_s_per_1000']} CPU s/1000,"
            f" server CPU s/1000 {result['server_cpu_s_per_1000']}, peak RSS {result['peak_rss_mib']} MiB, {result['requests_per_task']} requests/task,"
            f" idle {result['idle_requests_per_s']} requests/s, pickup p50/p99"
            f" {fmt(result['pickup_ms_p50'], 0)}/{fmt(result['pickup_ms_p99'], 0)} ms, startup {result['startup_s']} s"
        )
        return result
    finally:
        sampler.stop()
        server_sampler.stop()
        terminate(proc)
        server.remove(ids + lat_ids)
        server.undefine([task])


def run(
    server: Server,
    py: Pythons,
    out: Path,
    n: int,
    rounds: int,
    threads: int,
    contenders: list[str],
    latency_n: int,
    latency_rate: float,
    timeout: float,
    machine_info: dict[str, Any],
    idle_s: float = 10.0,
    warmup: int = 0,
) -> dict[str, Any]:
    """warmup: tasks of one discarded run per kind before the rounds. Why: a fresh Conductor JVM spent
    7.4 s of CPU per 1,000 tasks in the first run and 5.2 s in the next (JIT), which charged its warm-up
    to whichever contender happened to go first."""
    if warmup:
        for kind in KINDS:
            log(f"warm-up: {contenders[-1]} / {kind}, {warmup} tasks (discarded)")
            one_run(
                server, py, contenders[-1], kind, warmup, threads, 0, latency_rate, out / "logs", timeout, idle_s=0.5
            )
    runs = []
    for r in range(rounds):
        order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
        for kind in KINDS:
            for contender in order:
                log(f"round {r + 1}/{rounds}: {contender} / {kind}")
                res = one_run(
                    server,
                    py,
                    contender,
                    kind,
                    n,
                    threads,
                    latency_n,
                    latency_rate,
                    out / "logs",
                    timeout,
                    idle_s=idle_s,
                )
                runs.append(res | {"round": r + 1})
    data = {
        "benchmark": "workers",
        "machine": machine_info,
        "config": {
            "n": n,
            "rounds": rounds,
            "threads": threads,
            "contenders": contenders,
            "latency_n": latency_n,
            "latency_rate_per_s": latency_rate,
            "idle_s": idle_s,
            "warmup": warmup,
        },
        "runs": runs,
        "summary": summarize(runs, contenders),
    }
    return data


METRICS = (
    "tasks_per_s",
    "cpu_s_per_1000",
    "server_cpu_s_per_1000",
    "requests_per_task",
    "idle_requests_per_s",
    "peak_rss_mib",
    "pickup_ms_p50",
    "pickup_ms_p99",
    "startup_s",
)
RATIOS = ("tasks_per_s", "cpu_s_per_1000", "requests_per_task", "idle_requests_per_s", "peak_rss_mib")


def summarize(runs: list[dict[str, Any]], contenders: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for kind in KINDS:
        per: dict[str, Any] = {}
        by_round: dict[int, dict[str, dict[str, Any]]] = {}
        for r in runs:
            if r["kind"] == kind:
                by_round.setdefault(r["round"], {})[r["contender"]] = r
        for c in contenders:
            mine = [r for r in runs if r["kind"] == kind and r["contender"] == c]
            per[c] = {m: spread([r.get(m) for r in mine]) for m in METRICS}
        ratios: dict[str, Any] = {}
        runtimes = [c for c in contenders if c.startswith("runtime")]
        for base in runtimes:
            for other in (c for c in contenders if not c.startswith("runtime")):
                for m in RATIOS:
                    vals = [
                        rr[base][m] / rr[other][m]
                        for rr in by_round.values()
                        if base in rr and other in rr and rr[other].get(m) and rr[base].get(m) is not None
                    ]
                    ratios[f"{base}/{other} {m}"] = spread(vals)
        # What a proxy beside the worker adds (the sidecar, or the bare Go hop): side by side in each round.
        for paired in (c for c in contenders if c.endswith(("+sidecar", "+hop-go"))):
            base = paired.split("+", 1)[0]
            pairs = [rr for rr in by_round.values() if paired in rr and base in rr]
            for m in RATIOS:
                vals = [
                    rr[paired][m] / rr[base][m] for rr in pairs if rr[base].get(m) and rr[paired].get(m) is not None
                ]
                ratios[f"{paired}/{base} {m}"] = spread(vals)
            for m in ("cpu_s_per_1000", "peak_rss_mib"):
                vals = [
                    rr[paired][m] - rr[base][m]
                    for rr in pairs
                    if rr[base].get(m) is not None and rr[paired].get(m) is not None
                ]
                ratios[f"{paired} - {base} {m}"] = spread(vals)
        summary[kind] = {"contenders": per, "ratios": ratios}
    return summary


def markdown(data: dict[str, Any]) -> str:
    cfg = data["config"]
    out = [
        f"### Worker throughput and cost ({cfg['n']} one-task workflows per run, {cfg['threads']} slots/threads,"
        f" {cfg['rounds']} rounds)\n",
        "Median over rounds (min-max in brackets).\n",
    ]
    header = [
        "kind",
        "contender",
        "tasks/s",
        "CPU s / 1000 tasks",
        "server CPU s / 1000 tasks",
        "requests / task",
        "idle requests/s",
        "peak RSS MiB",
        "pickup p50 ms",
        "pickup p99 ms",
        "startup s",
    ]
    rows = []
    for kind, s in data["summary"].items():
        for c, m in s["contenders"].items():
            row = [kind, c]
            for key, digits in (
                ("tasks_per_s", 0),
                ("cpu_s_per_1000", 2),
                ("server_cpu_s_per_1000", 2),
                ("requests_per_task", 2),
                ("idle_requests_per_s", 1),
                ("peak_rss_mib", 0),
                ("pickup_ms_p50", 0),
                ("pickup_ms_p99", 0),
                ("startup_s", 2),
            ):
                v = m[key]
                row.append(f"{fmt(v['median'], digits)} ({fmt(v['min'], digits)}-{fmt(v['max'], digits)})")
            rows.append(row)
    out.append(table(header, rows))
    out.append("\nRatios per round (min / median / max):\n")
    rrows = []
    for kind, s in data["summary"].items():
        for name, v in s["ratios"].items():
            rrows.append([kind, name, fmt(v["min"], 2), fmt(v["median"], 2), fmt(v["max"], 2)])
    out.append(table(["kind", "ratio", "min", "median", "max"], rrows))
    out.append("\nEvery run:\n")
    header2 = [
        "round",
        "kind",
        "contender",
        "tasks/s",
        "CPU s/1000",
        "server CPU s/1000",
        "requests/task",
        "idle req/s",
        "peak RSS MiB",
        "procs",
        "pickup p50/p99 ms",
        "backlog wait p50 ms",
        "startup s",
    ]
    rows2 = [
        [
            r["round"],
            r["kind"],
            r["contender"],
            fmt(r["tasks_per_s"], 0),
            fmt(r["cpu_s_per_1000"], 2),
            fmt(r.get("server_cpu_s_per_1000"), 2),
            fmt(r.get("requests_per_task"), 2),
            fmt(r.get("idle_requests_per_s"), 1),
            fmt(r["peak_rss_mib"], 0),
            r["processes"],
            f"{fmt(r['pickup_ms_p50'], 0)}/{fmt(r['pickup_ms_p99'], 0)}",
            fmt(r["backlog_wait_ms_p50"], 0),
            fmt(r["startup_s"], 2),
        ]
        for r in data["runs"]
    ]
    out.append(table(header2, rows2))
    return "\n".join(out)
