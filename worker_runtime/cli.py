"""`conductor-worker`: run @worker_task functions from Python modules against a Conductor server."""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from typing import Any

from worker_runtime import env_names
from worker_runtime.client import ConductorClient
from worker_runtime.config import truthy
from worker_runtime.handler import TaskHandler
from worker_runtime.results import MAX_RESULT_BYTES
from worker_runtime.worker import discover

EPILOG = """\
examples:
  conductor-worker run --module my_pkg.workers
  CONDUCTOR_SERVER_URL=http://conductor:8080/api conductor-worker run --module a.workers --module b.workers
  conductor-worker run --path /workers --module tasks --thread-count 10 --metrics-port 8000

configuration (flags override environment, environment overrides the decorator's values):
  CONDUCTOR_SERVER_URL             server API base, ending in /api
  CONDUCTOR_AUTH_KEY / _SECRET     Orkes application key and secret (omit for Conductor OSS)
  CONDUCTOR_WORKER_MODULES         comma-separated modules (same as --module)
  CONDUCTOR_WORKER_PATH            extra import directories, ':'-separated (same as --path)
  CONDUCTOR_WORKER_TASKS           comma-separated task names to run (default: all discovered)
  CONDUCTOR_WORKER_ALL_<PROP>      every worker's PROP: THREAD_COUNT, POLL_INTERVAL (ms),
                                   POLL_TIMEOUT (ms), BATCH_SIZE, DOMAIN, WORKER_ID, PAUSED
                                   (also conductor.worker.all.<prop>, CONDUCTOR_WORKER_<PROP>)
  CONDUCTOR_WORKER_<TASK>_<PROP>   one task's PROP (TASK upper-cased as written, or with non-alphanumerics
                                   as _; also conductor.worker.<task>.<prop>): the Python SDK's names
  CONDUCTOR_WORKER_TASK_SETTINGS   JSON {task: {prop: value}} with exact task names, read first
  CONDUCTOR_WORKER_ALL_EXECUTION_TIMEOUT  seconds a task may run (also capped by its responseTimeoutSeconds)
  CONDUCTOR_WORKER_MAX_RESULT_BYTES       largest encoded result sent (same as --max-result-bytes)
"""


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(value: str) -> str:
    """argparse type: a level name in any case (the environment's default is checked the same way)."""
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
    return level


def _number(kind: type, low: float, high: float | None = None) -> Any:
    """argparse type: a number within [low, high]; string defaults (the environment's) are checked too."""

    def parse(value: str) -> Any:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
        if number < low or (high is not None and number > high):
            limit = f"{low} to {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"{value!r} is out of range ({limit})")
        return number

    return parse


def _env_flag(parser: argparse.ArgumentParser, var: str, default: bool) -> bool:
    """A boolean flag's default from the environment; a value that is no boolean is a usage error."""
    if var not in os.environ:
        return default
    try:
        return truthy(os.environ[var])
    except ValueError as exc:
        parser.error(f"{var}: {exc}")


def _split(value: str | None, sep: str = ",") -> list[str]:
    return [p.strip() for p in (value or "").split(sep) if p.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conductor-worker",
        description="Run Conductor workers written as @worker_task functions.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="import modules, discover @worker_task functions, poll and execute",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--module", "-m", action="append", default=[], help="module to import (repeatable)")
    run.add_argument("--path", action="append", default=[], help="directory to add to the import path")
    run.add_argument("--task", action="append", default=[], help="run only this task type (repeatable)")
    run.add_argument("--server-url", help="Conductor API base URL (env CONDUCTOR_SERVER_URL)")
    run.add_argument("--thread-count", type=int, help="concurrency slots per task type")
    run.add_argument("--poll-interval-ms", type=int, help="wait after an empty poll (grows to 1 s)")
    run.add_argument("--poll-timeout-ms", type=int, help="server-side long-poll wait, at most 5000")
    run.add_argument("--batch-size", type=int, help="max tasks per poll (default: free slots)")
    run.add_argument("--domain", help="poll this domain for every task type")
    run.add_argument("--worker-id", help="worker id reported to the server (default: pod name)")
    run.add_argument(
        "--metrics-port",
        type=_number(int, -1, 65535),
        default=os.environ.get(env_names.METRICS_PORT, "8000"),
        help="port of /metrics, /healthz, /readyz (env CONDUCTOR_WORKER_METRICS_PORT, default 8000; -1 disables)",
    )
    run.add_argument(
        "--metrics-host",
        default=os.environ.get(env_names.METRICS_HOST, "0.0.0.0"),
        help="address /metrics, /healthz and /readyz listen on (env CONDUCTOR_WORKER_METRICS_HOST, default 0.0.0.0)",
    )
    run.add_argument(
        "--drain-timeout",
        type=_number(float, 0),
        default=os.environ.get(env_names.DRAIN_TIMEOUT, "25"),
        help="seconds to finish in-flight tasks after SIGTERM (env CONDUCTOR_WORKER_DRAIN_TIMEOUT, default 25; "
        "keep below the pod's grace period)",
    )
    run.add_argument(
        "--max-result-bytes",
        type=_number(int, 1),
        default=os.environ.get(env_names.MAX_RESULT_BYTES, str(MAX_RESULT_BYTES)),
        help="a larger encoded result fails the task at once (default 20000000: Conductor's JSON parser "
        "refuses a longer string)",
    )
    run.add_argument(
        "--update-v2",
        action=argparse.BooleanOptionalAction,
        default=_env_flag(run, "CONDUCTOR_WORKER_UPDATE_V2", True),
        help="report results with POST /tasks/update-v2 and run the task it hands back: one request per task "
        "(env CONDUCTOR_WORKER_UPDATE_V2, default on as in the Conductor SDKs; --no-update-v2 reports with "
        "POST /tasks; a server without it is detected on its first 404/405)",
    )
    run.add_argument(
        "--json-logs",
        action="store_true",
        default=_env_flag(run, env_names.JSON_LOGS, False),
        help="one JSON object per log line (env CONDUCTOR_WORKER_JSON_LOGS)",
    )
    run.add_argument(
        "--log-level",
        default=os.environ.get(env_names.LOG_LEVEL, "INFO"),
        type=_log_level,
        help="DEBUG, INFO, WARNING or ERROR (env CONDUCTOR_WORKER_LOG_LEVEL, default INFO)",
    )
    _sidecar_parser(sub)
    return parser


SIDECAR_EPILOG = """\
The sidecar of a worker written with any Conductor SDK (the operator adds it as a native sidecar).
Point the worker's server URL at http://127.0.0.1:<port>/api; the sidecar forwards every request to
CONDUCTOR_SERVER_URL (with the Orkes token from CONDUCTOR_AUTH_KEY/_SECRET when set), gives polls their
domain, caps them at each task's concurrency, and serves the pod's busy slots on /metrics. The worker
container's preStop hook calls GET http://<pod>:<metrics-port>/drain.

  CONDUCTOR_SIDECAR_TASKS  JSON list of {"name", "domain", "concurrency"} (a ConductorWorker's spec.tasks)
"""


def _sidecar_parser(sub: Any) -> None:
    side = sub.add_parser(
        "sidecar",
        help="proxy a worker written with any SDK: domains, concurrency, busy slots, drain, crash recovery",
        epilog=SIDECAR_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    side.add_argument("--server-url", help="Conductor API base URL (env CONDUCTOR_SERVER_URL)")
    side.add_argument(
        "--port",
        type=_number(int, 1, 65535),
        default=os.environ.get(env_names.SIDECAR_PORT, "7700"),
        help="loopback port the worker talks to (env CONDUCTOR_SIDECAR_PORT, default 7700)",
    )
    side.add_argument(
        "--metrics-port",
        type=_number(int, 1, 65535),
        default=os.environ.get(env_names.METRICS_PORT, "7701"),
        help="port of /metrics, /healthz, /readyz and /drain (env CONDUCTOR_WORKER_METRICS_PORT, default 7701)",
    )
    side.add_argument(
        "--drain-timeout",
        type=_number(float, 0),
        default=os.environ.get(env_names.DRAIN_TIMEOUT, "25"),
        help="seconds /drain waits for the pod's tasks to finish (env CONDUCTOR_WORKER_DRAIN_TIMEOUT, default 25)",
    )
    side.add_argument("--tasks", default=os.environ.get(env_names.SIDECAR_TASKS, "[]"), help="see below")
    side.add_argument("--worker-id", default=os.environ.get(env_names.POD_NAME) or socket.gethostname())
    side.add_argument("--json-logs", action="store_true", default=_env_flag(side, env_names.JSON_LOGS, False))
    side.add_argument("--log-level", default=os.environ.get(env_names.LOG_LEVEL, "INFO"), type=_log_level)


def run_sidecar(args: argparse.Namespace, log: logging.Logger) -> int:
    from worker_runtime.client import proxy_for
    from worker_runtime.metrics import HealthServer, WorkerMetrics
    from worker_runtime.sidecar.core import Sidecar, TaskSettings
    from worker_runtime.sidecar.http1 import Upstream
    from worker_runtime.sidecar.processes import node_addresses
    from worker_runtime.sidecar.proxy import SidecarProcess, drain_route

    try:
        tasks = TaskSettings.parse_list(json.loads(args.tasks))
    except ValueError as exc:
        log.error("CONDUCTOR_SIDECAR_TASKS / --tasks: %s", exc)
        return 2
    metrics = WorkerMetrics()
    client = ConductorClient(args.server_url)
    # Forwarded requests take the keep-alive fast path, unless an HTTP proxy is configured for the server.
    upstream = None if proxy_for(client.base_url) else Upstream(client.base_url)
    sidecar = Sidecar(client, tasks, args.worker_id, metrics, upstream=upstream)

    def allowed() -> frozenset[str]:
        try:
            with open("/proc/net/route") as fh:
                table = fh.read()
        except OSError:
            table = ""
        return node_addresses(table, _split(os.environ.get("HOST_IPS") or os.environ.get("HOST_IP")))

    health = HealthServer(
        metrics,
        alive=lambda: (True, {}),
        ready=sidecar.ready,
        port=args.metrics_port,
        routes={"/drain": drain_route(sidecar, args.drain_timeout, allowed)},
    )
    if not sidecar.processes.enabled:
        log.warning("the pod's PID namespace is not shared: a crashed worker's tasks wait for their response timeout")
    log.info("sidecar for %s against %s: %s", args.worker_id, sidecar.client.base_url, sorted(tasks))
    return SidecarProcess(sidecar, args.port, health, args.drain_timeout).run_forever()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if args.json_logs else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler], force=True)
    log = logging.getLogger("conductor-worker")
    if args.command == "sidecar":
        return run_sidecar(args, log)

    modules = args.module or _split(os.environ.get(env_names.MODULES))
    paths = args.path or _split(os.environ.get(env_names.PATH), ":")
    if not modules:
        log.error("no worker modules: pass --module or set CONDUCTOR_WORKER_MODULES")
        return 2
    try:
        workers = discover(modules, paths)
    except ImportError as exc:
        log.error("%s", exc)
        return 2
    wanted = args.task or _split(os.environ.get(env_names.TASKS))
    if wanted:
        missing = sorted(set(wanted) - set(workers))
        if missing:
            log.error("no @worker_task for %s in modules %s (found: %s)", missing, modules, sorted(workers))
            return 2
        workers = {name: workers[name] for name in wanted}
    overrides = {
        "thread_count": args.thread_count,
        "poll_interval": args.poll_interval_ms,
        "poll_timeout": args.poll_timeout_ms,
        "batch_size": args.batch_size,
        "domain": args.domain,
        "worker_id": args.worker_id,
    }
    try:
        runtime = TaskHandler(
            workers,
            client=None if not args.server_url else ConductorClient(args.server_url),
            overrides=overrides,
            metrics_port=None if args.metrics_port < 0 else args.metrics_port,
            metrics_host=args.metrics_host,
            drain_timeout=args.drain_timeout,
            max_result_bytes=args.max_result_bytes,
            update_v2=args.update_v2,
        )
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    log.info("running %d worker(s) against %s: %s", len(workers), runtime.client.base_url, sorted(workers))
    code = runtime.run_forever()
    if runtime.drained is False:
        # Threads still inside overrunning worker functions cannot be interrupted and would keep the
        # interpreter alive past the pod's grace period; their tasks are already reported FAILED.
        logging.shutdown()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
