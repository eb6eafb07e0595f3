"""The Conductor Python SDK (conductor-python 2.0.0) contender, run with the SDK's own virtualenv.

The task functions and types of task_kinds.py (BENCH_TASKS="name:kind,..."), registered with
the SDK's @worker_task and run by its TaskHandler (one spawned process per worker, plus a logger
process). Configuration, chosen to match the runtime's:
  thread_count   = --threads (the SDK's concurrency per worker; the runtime's slots)
  poll_interval  = --poll-interval-ms (both default to 100 ms; the SDK backs off 1, 2, 4 .. ms up to it
                   after empty polls, the runtime 100 ms doubling to 1 s)
  batch polling  = always on in the SDK 2.0 TaskRunner (count = free threads), as in the runtime
  poll_timeout   = fixed at 100 ms inside TaskRunner.__batch_poll_tasks (the decorator's value is unused)
  update         = POST /tasks/update-v2, which returns the next task (the SDK's tight loop)
  metrics        = off (no MetricsSettings: the SDK's default); register_task_def = False
Stops on SIGTERM/SIGINT (TaskHandler.stop_processes).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from conductor.client.automator.task_handler import TaskHandler
from conductor.client.configuration.configuration import Configuration
from conductor.client.worker.worker_task import worker_task
from task_kinds import bench_tasks


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server-url", required=True)
    parser.add_argument("--threads", type=int, default=10)
    parser.add_argument("--poll-interval-ms", type=int, default=100)
    parser.add_argument("--worker-id", default="bench-sdk")
    args = parser.parse_args()
    for name, func in bench_tasks():
        worker_task(
            task_definition_name=name,
            thread_count=args.threads,
            poll_interval_millis=args.poll_interval_ms,
            worker_id=args.worker_id,
            register_task_def=False,
        )(func)  # module-level functions: the spawned processes unpickle them
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    handler = TaskHandler(configuration=Configuration(server_api_url=args.server_url), scan_for_annotated_workers=True)
    handler.start_processes()
    stop.wait()
    handler.stop_processes()
    return 0


if __name__ == "__main__":
    sys.exit(main())
