"""Run the benchmarks: `python bench/run.py workers|memory|all [--size N] [--rounds R] [--out DIR]`.

Use `bash scripts/bench.sh ...`, which prepares the virtualenvs and the server first. `autoscalers`
(bench/autoscalers.py, its own options: `scripts/bench.sh autoscalers --help`) runs in the project's venv,
which has the Kubernetes client this benchmark-only venv lacks.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from common import BENCH_DIR, CACHE, Pythons, Server, log, machine, write_json


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["autoscalers"]:
        return subprocess.call([str(CACHE / "venv" / "bin" / "python"), str(BENCH_DIR / "autoscalers.py"), *argv[1:]])
    parser = argparse.ArgumentParser(prog="scripts/bench.sh", description=__doc__)
    parser.add_argument("which", choices=["workers", "memory", "all", "autoscalers"])
    parser.add_argument("--size", type=int, default=5000, help="workflows per throughput run (default 5000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=10, help="slots / threads per task type (default 10)")
    parser.add_argument(
        "--contenders",
        default="runtime,sdk,ceiling-go",
        help="comma-separated; also runtime-v1 (update-v2 off), runtime-t100 (poll timeout 100 ms), ceiling"
        " and ceiling-v2 (the bare loop in Python with POST /tasks or update-v2), sdk-go, sdk-go+sidecar"
        " and sdk-go+hop-go (conductor-go direct, through `conductor-worker sidecar`, through a bare Go proxy)",
    )
    parser.add_argument("--latency-n", type=int, default=100, help="paced workflows for the pickup latency")
    parser.add_argument("--latency-rate", type=float, default=25.0, help="their start rate per second")
    parser.add_argument(
        "--warmup", type=int, default=2000, help="tasks of a discarded run per kind first, to warm the server (0: none)"
    )
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="idle requests are counted over this")
    parser.add_argument("--memory-types", type=int, default=10)
    parser.add_argument("--memory-contenders", default="runtime,sdk,sdk-thread")
    parser.add_argument("--timeout", type=float, default=600, help="per run")
    parser.add_argument("--server-url", default="http://127.0.0.1:18080/api")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)

    server = Server(args.server_url)
    py = Pythons()
    info = machine(server)
    log(f"machine: {info}")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.which in ("workers", "all"):
        import workers_bench

        data = workers_bench.run(
            server,
            py,
            args.out,
            args.size,
            args.rounds,
            args.threads,
            args.contenders.split(","),
            args.latency_n,
            args.latency_rate,
            args.timeout,
            info,
            idle_s=args.idle_seconds,
            warmup=args.warmup,
        )
        write_json(args.out / "workers.json", data)
        (args.out / "workers.md").write_text(workers_bench.markdown(data))
        if not args.no_plots:
            import plots

            plots.throughput(data, args.out / "workers_throughput.png")
        log(f"wrote {args.out / 'workers.json'} and workers.md")
    if args.which in ("memory", "all"):
        import memory_bench

        data = memory_bench.run(
            server, py, args.memory_types, args.rounds, args.threads, args.memory_contenders.split(","), args.out, info
        )
        write_json(args.out / "memory.json", data)
        (args.out / "memory.md").write_text(memory_bench.markdown(data))
        if not args.no_plots:
            import plots

            plots.memory(data, args.out / "memory_rss.png")
        log(f"wrote {args.out / 'memory.json'} and memory.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
