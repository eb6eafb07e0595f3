"""The ceiling: the least a client can do per task, no SDK (requests only).

One poll thread long-polls `GET /tasks/poll/batch/{type}?count=<free slots>` and hands the tasks to
`--threads` worker threads over a queue; each worker runs the task function and reports it with
`POST /tasks` on its own keep-alive session. With `--update-v2` the workers report with
`POST /tasks/update-v2` instead and run the next task the server hands back (the SDK's tight loop).
BENCH_TASKS="name:kind" (one task type). Stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import queue
import signal
import sys
import threading
import time

import requests
from task_kinds import bench_tasks


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server-url", required=True)
    parser.add_argument("--threads", type=int, default=10)
    parser.add_argument("--poll-timeout-ms", type=int, default=1000)
    parser.add_argument("--update-v2", action="store_true")
    args = parser.parse_args()
    name, func = bench_tasks()[0]
    base = args.server_url.rstrip("/")
    free = threading.Semaphore(args.threads)
    work: queue.Queue[dict] = queue.Queue()
    stop = threading.Event()

    def result(task: dict) -> dict:
        return {
            "taskId": task["taskId"],
            "workflowInstanceId": task["workflowInstanceId"],
            "workerId": "bench-ceiling",
            "status": "COMPLETED",
            "outputData": func(),
        }

    def worker() -> None:
        session = requests.Session()
        while True:
            task = work.get()
            while task:
                if args.update_v2:
                    resp = session.post(f"{base}/tasks/update-v2", json=result(task), timeout=30)
                    task = resp.json() if resp.status_code == 200 and resp.content else None
                else:
                    session.post(f"{base}/tasks", json=result(task), timeout=30)
                    task = None
            free.release()

    for _ in range(args.threads):
        threading.Thread(target=worker, daemon=True).start()

    def poller() -> None:
        session = requests.Session()
        url = f"{base}/tasks/poll/batch/{name}"
        while not stop.is_set():
            free.acquire()
            count = 1
            while count < args.threads and free.acquire(blocking=False):
                count += 1
            params = {"workerid": "bench-ceiling", "count": count, "timeout": args.poll_timeout_ms}
            try:
                tasks = session.get(url, params=params, timeout=30).json() or []
            except (requests.RequestException, ValueError):
                tasks = []
                time.sleep(0.1)
            for task in tasks:
                work.put(task)
            for _ in range(count - len(tasks)):
                free.release()

    threading.Thread(target=poller, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
