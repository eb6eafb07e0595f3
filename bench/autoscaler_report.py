"""The autoscalers benchmark's outputs: JSON, a Markdown table and a PNG per trace.

`markdown` and `save` run in the project's venv with the runner; the PNG is drawn by this file run in the
benchmark-only venv (matplotlib is no project dependency): `python autoscaler_report.py plot JSON PNG`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BASELINE = "keda-default"  # the replica-seconds ratio is taken against it when it ran
COLORS = {"operator": "tab:blue", "keda-default": "tab:orange", "keda-tuned": "tab:green"}


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(data: dict[str, Any]) -> str:
    cfg, runs = data["config"], data.get("contenders") or {}
    base = (runs.get(BASELINE) or {}).get("replica_seconds")
    head = [
        "contender",
        "replica-s",
        f"ratio vs {BASELINE}",
        "wait p50 / p99 s",
        "θU %",
        "θO %",
        "τU %",
        "τO %",
        "jitter /h",
        "re-run",
        "timed out",
        "first pod s",
        "completed",
        "peak replicas",
    ]
    lines = [
        f"### Autoscalers on the `{cfg['trace']}` trace",
        "",
        f"{data['trace']['tasks']} workflows per contender over {data['trace']['length_s']:.0f} s (seed "
        f"{cfg['seed']}, time scale {cfg['time_scale']}, size {cfg['size']}); {cfg['slots_per_pod']} slots per "
        f"pod, maxReplicas {cfg['max_replicas']}; measured over {_fmt(data.get('end_s'), 0)} s.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for name, r in runs.items():
        ratio = r["replica_seconds"] / base if base else None
        cells = [
            name,
            _fmt(r["replica_seconds"], 0),
            _fmt(ratio, 2),
            f"{_fmt(r['wait_p50_s'], 2)} / {_fmt(r['wait_p99_s'], 2)}",
            _fmt(r.get("theta_u")),
            _fmt(r.get("theta_o")),
            _fmt(r.get("tau_u")),
            _fmt(r.get("tau_o")),
            _fmt(r.get("jitter_per_h")),
            _fmt(r["rerun"]),
            _fmt(r["timed_out"]),
            _fmt(r["first_pod_s"]),
            f"{r['completed']}/{r['workflows']}",
            _fmt(r["peak_replicas"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    replay = data.get("replay") or {}
    lines += [
        "",
        f"Replay: start calls late by p50 {_fmt(replay.get('lateness_p50_s'), 3)} s, p99 "
        f"{_fmt(replay.get('lateness_p99_s'), 3)} s; failed starts {sum((replay.get('start_errors') or {}).values())}. "
        "θ: how far supply missed demand (% of demand), τ: for how long (% of time), jitter: supply changes "
        "minus demand changes per hour (bench/elasticity.py).",
    ]
    return "\n".join(lines) + "\n"


def save(out: Path, name: str, data: dict[str, Any], plot: bool = True) -> None:
    json_path = out / f"{name}.json"
    json_path.write_text(json.dumps(data, indent=1) + "\n")
    (out / f"{name}.md").write_text(markdown(data))
    if plot:
        draw(json_path, out / f"{name}.png")


def draw(json_path: Path, png: Path) -> None:
    """Draw the PNG in the benchmark venv (created on demand by bench/opbench.py's plot helper)."""
    import opbench

    py = opbench.BENCH_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(opbench.BENCH_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "matplotlib"], check=True)
    proc = subprocess.run(
        [str(py), str(Path(__file__).resolve()), "plot", str(json_path), str(png)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"plotting failed:\n{proc.stdout}\n{proc.stderr}")


def plot(data: dict[str, Any], png: Path) -> None:
    """Replicas (solid) and demand (dotted) per contender over the trace's arrivals; queue depth below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 7), sharex=True, height_ratios=[3, 2])
    bins, bin_s = data["trace"]["arrivals_per_bin"], data["trace"]["bin_s"]
    arr = ax1.twinx()
    arr.bar([i * bin_s for i in range(len(bins))], [b / bin_s for b in bins], width=bin_s, align="edge", color="0.85")
    arr.set_ylabel("arrivals per second", color="0.5")
    ax1.set_zorder(arr.get_zorder() + 1)
    ax1.patch.set_visible(False)
    for i, (name, r) in enumerate((data.get("contenders") or {}).items()):
        color = COLORS.get(name)
        ts = [s["t"] for s in r["samples"]]
        lift = 0.06 * i  # equal counts of two contenders would hide one line under the other
        replicas = [s["replicas"] + lift for s in r["samples"]]
        ax1.step(ts, replicas, where="post", color=color, lw=1.8, label=f"{name} replicas")
        ax1.step(ts, r["demand"], where="post", color=color, lw=1, ls=":", label=f"{name} demand")
        ax2.plot(ts, [s["queue"] for s in r["samples"]], color=color, lw=1.2, label=name)
    ax1.set_ylabel("replicas (spec; lines lifted 0.06 apart) / demanded")
    ax1.legend(fontsize=8, loc="upper right")
    ax1.set_title(
        f"{data['config']['trace']} trace: {data['trace']['tasks']} workflows per contender, "
        f"{data['config']['slots_per_pod']} slots per pod, maxReplicas {data['config']['max_replicas']}"
    )
    ax2.set_ylabel("queue depth")
    ax2.set_xlabel("seconds since the first arrival")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "plot":
    plot(json.loads(Path(sys.argv[2]).read_text()), Path(sys.argv[3]))
