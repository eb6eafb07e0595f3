"""bench/traces.py: deterministic, well-formed traces with the shapes their docstring states."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import traces


@pytest.mark.parametrize("name", traces.NAMES)
def test_deterministic_sorted_and_within_bounds(name: str) -> None:
    a = traces.generate(name, seed=7)
    assert a.arrivals == traces.generate(name, seed=7).arrivals
    assert a.arrivals != traces.generate(name, seed=8).arrivals
    times = [t for t, _ in a.arrivals]
    assert times == sorted(times) and times[0] >= 0 and times[-1] < a.length_s == traces.LENGTH_S
    assert all(0.05 <= d <= 30.0 for _, d in a.arrivals)
    assert a.tasks > 100


def test_durations_are_the_stated_lognormal() -> None:
    ds = [d for name in ("step", "daily") for _, d in traces.generate(name, seed=3).arrivals]
    assert statistics.median(ds) == pytest.approx(1.0, rel=0.08)  # median e^0 = 1 s
    assert statistics.fmean(ds) == pytest.approx(1.377, rel=0.08)  # mean e^(0.8^2/2)
    assert max(ds) <= 30.0 and min(ds) >= 0.05


def test_time_scale_compresses_time_and_keeps_rates() -> None:
    full = traces.generate("step", seed=1)
    short = traces.generate("step", seed=1, time_scale=0.1)
    assert short.length_s == pytest.approx(120.0)
    assert short.tasks == pytest.approx(full.tasks * 0.1, rel=0.15)
    thirds = traces.per_bin(short, 40.0)  # 2/s, 8/s, 2/s over 40 s each
    assert thirds[1] / 40 == pytest.approx(8.0, rel=0.2) and thirds[0] / 40 == pytest.approx(2.0, rel=0.35)


def test_size_scales_rates() -> None:
    base = traces.generate("daily", seed=2).tasks
    assert traces.generate("daily", seed=2, size=2.0).tasks == pytest.approx(2 * base, rel=0.1)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        traces.generate("nope")
    with pytest.raises(ValueError):
        traces.generate("step", time_scale=2.0)
    with pytest.raises(ValueError):
        traces.generate("step", size=0)


def test_bursts_then_quiet() -> None:
    tr = traces.generate("bursts", seed=1)
    in_bursts = [t for t, _ in tr.arrivals if any(s <= t < s + traces.BURST_LEN_S for s in traces.BURST_STARTS_S)]
    assert len(in_bursts) == tr.tasks  # nothing outside the bursts
    assert tr.tasks == pytest.approx(3 * traces.BURST_SIZE, rel=0.1)


def test_step_up_and_down() -> None:
    low1, high, low2 = traces.per_bin(traces.generate("step", seed=5), 400.0)
    assert high / low1 == pytest.approx(4.0, rel=0.15) and high / low2 == pytest.approx(4.0, rel=0.15)


def test_daily_peaks_in_the_afternoon() -> None:
    bins = traces.per_bin(traces.generate("daily", seed=4), 60.0)
    peak = bins.index(max(bins))
    assert 9 <= peak <= 13  # the raised cosine peaks at 0.58 of the day: minute 11.6 of 20
    assert max(bins) > 8 * min(bins[:3]) and bins[-1] < max(bins) / 3


def test_azure_heavy_tailed_minutes_with_idle_gaps() -> None:
    pooled = []
    for seed in range(1, 6):
        per_min = traces.per_bin(traces.generate("azure", seed=seed), 60.0)
        assert per_min.count(0) >= 3, per_min  # idle minutes in every trace
        pooled += [c for c in per_min if c > 0]
    assert max(pooled) > 10 * statistics.median(pooled)  # a heavy tail over 5 seeds' active minutes
    minutes = traces.azure_minutes(__import__("random").Random(0), 20_000)
    active = sorted(c for c in minutes if c > 0)
    # Pareto alpha 1.3 from 15/min: P(X > 150) = 10^-1.3 = 5 %; an exponential of the same mean gives 10 %
    # above 150 but almost nothing above 500, where the Pareto keeps 1 % (the cap is 840)
    assert sum(c > 150 for c in active) / len(active) == pytest.approx(0.05, abs=0.01)
    assert sum(c > 500 for c in active) / len(active) == pytest.approx(0.0105, abs=0.004)
    assert 0.45 < len(active) / len(minutes) < 0.7  # the on/off chain's stationary share 0.4 / 0.7 = 0.57
