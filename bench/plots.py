"""PNG plots of the results (matplotlib, in the benchmark-only virtualenv)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLORS = {
    "runtime": "tab:blue",
    "sdk": "tab:orange",
    "ceiling": "tab:green",
    "ceiling-v2": "tab:olive",
    "ceiling-go": "tab:gray",
    "sdk-go": "tab:brown",
    "sdk-go+sidecar": "tab:pink",
    "sdk-go+hop-go": "black",
    "sdk-thread": "tab:red",
    "runtime-t100": "tab:purple",
    "runtime-v2": "tab:cyan",
    "runtime-v1": "tab:gray",
}


def _rate(progress: list[list[float]], window: float = 0.5) -> tuple[list[float], list[float]]:
    """Tasks/s between progress samples, smoothed over `window` seconds."""
    ts, rates = [], []
    j = 0
    for i in range(1, len(progress)):
        t, c = progress[i]
        while j < i - 1 and t - progress[j + 1][0] >= window:
            j += 1
        dt = t - progress[j][0]
        if dt >= window * 0.9:  # a full window only (the first sample comes right after the pickup)
            ts.append(t)
            rates.append((c - progress[j][1]) / dt)
    return ts, rates


def throughput(data: dict[str, Any], path: Path) -> None:
    kinds = list(data["summary"])
    fig, axes = plt.subplots(1, len(kinds), figsize=(6.5 * len(kinds), 4.2), sharey=True, squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        seen = set()
        for run in data["runs"]:
            if run["kind"] != kind:
                continue
            c = run["contender"]
            ts, rates = _rate(run["progress"])
            ax.plot(ts, rates, color=COLORS.get(c), alpha=0.85, lw=1.4, label=None if c in seen else c)
            seen.add(c)
        ax.set_title(f"{kind}: {data['config']['n']} tasks, {data['config']['threads']} threads, every round")
        ax.set_xlabel("seconds since the first pickup")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0][0].set_ylabel("tasks completed per second (0.5 s window)")
    fig.suptitle(
        f"Worker throughput over time on Conductor OSS {data['machine']['conductor_server']}"
        f" ({data['machine']['nproc']} cores, shared with the server)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def memory(data: dict[str, Any], path: Path) -> None:
    summ = data["summary"]["contenders"]
    names = list(summ)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    width = 0.27
    for k, (key, label) in enumerate((("rss_mib", "RSS (sum)"), ("pss_mib", "PSS (sum)"), ("uss_mib", "USS (sum)"))):
        vals = [summ[n][key]["median"] or 0 for n in names]
        bars = ax.bar([i + (k - 1) * width for i in range(len(names))], vals, width, label=label)
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.set_xticks(range(len(names)), [f"{n}\n({summ[n]['processes']['median']:.0f} processes)" for n in names])
    ax.set_ylabel("MiB, whole process tree")
    ax.set_title(f"Memory serving {data['config']['types']} task types (median of {data['config']['rounds']} rounds)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
