"""Benchmark 2: memory with many task types.

One runtime process serving `--memory-types` (10) no-op task types vs the SDK's TaskHandler serving the
same 10 (it spawns one process per worker, plus a logging process). Also, for information, the SDK with
CONDUCTOR_WORKER_ISOLATION=thread (its opt-in mode that runs the workers as threads of one process).
Each run: start the contender, let it work through 20 workflows per task type (so every pool, session
and code path is warm), then sample the process tree for 5 s while idle (polling). Reported: the peak
of the summed RSS (what the issue asks; it counts pages shared between processes once per process),
and the summed PSS and USS (shared pages split / not counted), all in MiB, median over rounds.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from common import Pythons, Server, TreeSampler, fmt, launch, log, spread, table, terminate, unique

WARM_PER_TYPE = 20
IDLE_SECONDS = 5.0


def one_run(server: Server, py: Pythons, contender: str, types: int, threads: int, logs: Path) -> dict[str, Any]:
    base = unique(f"bench_mem_{contender.replace('-', '_')}")
    tasks = {f"{base}_{i}": "noop" for i in range(types)}
    server.define(list(tasks))
    launched = time.monotonic()
    proc = launch(contender, py, server.url, threads, tasks, logs / f"{base}.log")
    ids: list[str] = []
    try:
        for name in tasks:
            ids += server.start_workflows(f"{name}_wf", WARM_PER_TYPE, threads=4)
        deadline = time.monotonic() + 120
        while any(server.running(f"{name}_wf") for name in tasks):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{contender} did not finish the warm-up workflows; see {logs}")
            time.sleep(0.5)
        warm_s = time.monotonic() - launched
        sampler = TreeSampler(proc.pid, interval=0.5, full=True)
        end = time.monotonic() + IDLE_SECONDS
        while time.monotonic() < end:
            sampler.sample()
            time.sleep(0.5)
        peak = max(sampler.samples, key=lambda s: s.rss)
        res = {
            "contender": contender,
            "types": types,
            "threads": threads,
            "processes": peak.procs,
            "rss_mib": round(peak.rss / 2**20, 1),
            "pss_mib": round(max(sampler.pss) / 2**20, 1),
            "uss_mib": round(max(sampler.uss) / 2**20, 1),
            "warm_s": round(warm_s, 1),
            "idle_cpu_s_per_s": round(
                (sampler.samples[-1].cpu_s - sampler.samples[0].cpu_s)
                / max(1e-9, (sampler.samples[-1].t_ms - sampler.samples[0].t_ms) / 1000),
                3,
            ),
        }
        log(
            f"  {contender}: {res['processes']} processes, RSS {res['rss_mib']} MiB, PSS {res['pss_mib']} MiB,"
            f" USS {res['uss_mib']} MiB, idle CPU {res['idle_cpu_s_per_s']} s/s"
        )
        return res
    finally:
        terminate(proc)
        server.remove(ids)
        server.undefine(list(tasks))


def run(
    server: Server,
    py: Pythons,
    types: int,
    rounds: int,
    threads: int,
    contenders: list[str],
    out: Path,
    machine_info: dict[str, Any],
) -> dict[str, Any]:
    runs = []
    for r in range(rounds):
        order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
        for contender in order:
            log(f"memory round {r + 1}/{rounds}: {contender} serving {types} task types")
            runs.append(one_run(server, py, contender, types, threads, out / "logs") | {"round": r + 1})
    summary: dict[str, Any] = {"contenders": {}, "ratios": {}}
    for c in contenders:
        mine = [x for x in runs if x["contender"] == c]
        summary["contenders"][c] = {
            m: spread([x[m] for x in mine]) for m in ("rss_mib", "pss_mib", "uss_mib", "processes", "idle_cpu_s_per_s")
        }
    for other in (c for c in contenders if c != "runtime"):
        for m in ("rss_mib", "pss_mib", "uss_mib"):
            vals = []
            for r in range(1, rounds + 1):
                a = [x for x in runs if x["round"] == r and x["contender"] == "runtime"]
                b = [x for x in runs if x["round"] == r and x["contender"] == other]
                if a and b and b[0][m]:
                    vals.append(a[0][m] / b[0][m])
            summary["ratios"][f"runtime/{other} {m}"] = spread(vals)
    return {
        "benchmark": "memory",
        "machine": machine_info,
        "config": {
            "types": types,
            "rounds": rounds,
            "threads": threads,
            "contenders": contenders,
            "warm_workflows_per_type": WARM_PER_TYPE,
            "idle_sample_s": IDLE_SECONDS,
        },
        "runs": runs,
        "summary": summary,
    }


def markdown(data: dict[str, Any]) -> str:
    cfg = data["config"]
    out = [
        f"### Memory with {cfg['types']} task types ({cfg['threads']} threads each, {cfg['rounds']} rounds)\n",
        "Whole process tree, idle after a warm-up; median over rounds (min-max).\n",
    ]
    rows = []
    for c, m in data["summary"]["contenders"].items():
        row = [c, fmt(m["processes"]["median"], 0)]
        for key in ("rss_mib", "pss_mib", "uss_mib"):
            v = m[key]
            row.append(f"{fmt(v['median'], 0)} ({fmt(v['min'], 0)}-{fmt(v['max'], 0)})")
        row.append(fmt(m["idle_cpu_s_per_s"]["median"], 3))
        rows.append(row)
    out.append(table(["contender", "processes", "RSS MiB", "PSS MiB", "USS MiB", "idle CPU s/s"], rows))
    out.append("\nRatios per round (min / median / max):\n")
    out.append(
        table(
            ["ratio", "min", "median", "max"],
            [
                [k, fmt(v["min"], 3), fmt(v["median"], 3), fmt(v["max"], 3)]
                for k, v in data["summary"]["ratios"].items()
            ],
        )
    )
    return "\n".join(out)
