"""Where the runtime's CPU goes per task: cProfile on every runner thread against the real server;
time inside blocking calls (socket reads, lock waits) is set apart, the rest split by library. Run with the project's venv (or any tree of worker_runtime via --code):

    python bench/profile_runtime.py --server-url http://127.0.0.1:8080/api --tasks 3000 [--code DIR] [--update-v2]

It starts N one-task workflows (a noop task, or one that sleeps --sleep-ms), runs a TaskHandler (10 slots) until they are done, and
prints the CPU per 1,000 tasks by library (requests, urllib3, http.client, json, the runtime, ...)
and the top functions. Profiling inflates the figures (a Python-level clock per call); compare the
shares, not the absolute numbers, with the benchmark's.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import threading
import time
import uuid
from collections import defaultdict

CATEGORIES = (
    ("requests/", "requests"),
    ("urllib3/", "urllib3"),
    ("http/client.py", "http.client"),
    ("email/", "http.client"),
    ("json/", "json"),
    ("socket.py", "socket"),
    ("worker_runtime/", "runtime"),
    ("prometheus_client/", "metrics (prometheus_client)"),
    ("threading.py", "threading"),
    ("queue.py", "threading"),
    ("concurrent/", "threading"),
)
BLOCKING = ("recv_into", "acquire", "wait", "sleep", "select", "poll", "readinto", "accept", "sendall", "settimeout")
BLOCKING_METHODS = ("'get' of '_queue.SimpleQueue'", "'__enter__' of '_thread.")  # contended locks
BUILTINS = (
    ("recv", "socket"),
    ("send", "socket"),
    ("sendall", "socket"),
    ("encode", "json"),
    ("scanstring", "json"),
    ("make_encoder", "json"),
    ("acquire", "threading"),
    ("wait", "threading"),
    ("notify", "threading"),
)


def category(filename: str, name: str) -> str:
    for part, label in CATEGORIES:
        if part in filename:
            return label
    if filename == "~":
        if any(b in name for b in BLOCKING) or any(m in name for m in BLOCKING_METHODS):
            return "(blocked: waiting for the network or a lock)"
        for part, label in BUILTINS:
            if part in name:
                return label
        return "builtins (other)"
    return "other"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server-url", required=True)
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=10)
    parser.add_argument("--code", help="directory holding the worker_runtime package to profile")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--update-v2", action="store_true", help="report with update-v2 (runtimes that have it)")
    parser.add_argument("--sleep-ms", type=float, default=0.0, help="the task sleeps this long (10: the sleep10 kind)")
    args = parser.parse_args()
    if args.code:
        sys.path.insert(0, args.code)
    from worker_runtime import ConductorClient, TaskHandler
    from worker_runtime.worker import WorkerSpec

    task, wf = f"prof_{uuid.uuid4().hex[:6]}", f"prof_wf_{uuid.uuid4().hex[:6]}"
    setup = ConductorClient(args.server_url)
    setup.register_task_defs(
        [{"name": task, "retryCount": 0, "responseTimeoutSeconds": 600, "timeoutSeconds": 0, "ownerEmail": "p@x.io"}]
    )
    setup.register_workflow(
        {
            "name": wf,
            "version": 1,
            "schemaVersion": 2,
            "ownerEmail": "p@x.io",
            "tasks": [{"name": task, "taskReferenceName": "t", "type": "SIMPLE"}],
        }
    )
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: setup.start_workflow(wf, {}), range(args.tasks)))

    done = threading.Semaphore(0)

    pause = args.sleep_ms / 1000

    def noop() -> dict:
        if pause:
            time.sleep(pause)
        done.release()
        return {"ok": True}

    profiles: list[cProfile.Profile] = []

    def start_profile(*_: object) -> None:  # the first event in each new thread enables its profiler
        profile = cProfile.Profile()
        profiles.append(profile)
        profile.enable()

    threading.setprofile(start_profile)
    handler_kw = {"update_v2": True} if args.update_v2 else {}
    handler = TaskHandler(
        [WorkerSpec(task, noop)],
        client=ConductorClient(args.server_url),
        overrides={"thread_count": args.threads, "worker_id": "profile"},
        **handler_kw,
    )
    started = time.perf_counter()
    cpu0 = time.process_time()
    handler.start()
    for _ in range(args.tasks):
        done.acquire()
    while setup.request("GET", f"/workflow/running/{wf}", params={"version": 1}).json():
        time.sleep(0.05)
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - started
    threading.setprofile(None)
    handler.stop(grace=5)

    per_cat: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    merged: pstats.Stats | None = None
    for profile in profiles:
        stats = pstats.Stats(profile)
        merged = stats if merged is None else merged.add(stats)
    assert merged is not None
    total = 0.0
    for (filename, _line, name), (_cc, ncalls, tottime, _ct, _callers) in merged.stats.items():  # type: ignore[attr-defined]
        label = category(filename, name)
        per_cat[label] += tottime
        calls[label] += ncalls
        if not label.startswith("(blocked"):
            total += tottime
    k = 1000 / args.tasks
    print(f"{args.tasks} tasks in {wall:.1f}s ({args.tasks / wall:.0f}/s); process CPU {cpu * k:.2f} s / 1000 tasks")
    print(
        f"time in the runner's threads outside blocking calls: {total * k:.2f} s / 1000 tasks (profiled, inflated),"
        f" and function calls per task ({sum(calls.values()) / args.tasks:.0f} in all), by library:"
    )
    for name, secs in sorted(per_cat.items(), key=lambda kv: -kv[1]):
        share = "" if name.startswith("(blocked") else f"{secs / total:6.1%}"
        print(f"  {name:45s} {secs * k:7.3f} s {share:>7s} {calls[name] / args.tasks:7.0f} calls/task")
    print(f"top {args.top} functions by own CPU:")
    merged.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
