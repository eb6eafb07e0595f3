"""Busy slots averaged between scrapes from the pods' slot-seconds counter (busy_average.py)."""

from __future__ import annotations

import pytest

from conductor_operator.busy_average import Sample, averaged
from conductor_operator.observe import PodMetrics, ScrapeResult, parse_metrics


def pod(busy: int, seconds: float | None, capacity: int = 4) -> PodMetrics:
    return PodMetrics(busy_slots=busy, slot_capacity=capacity, busy_seconds=seconds)


def test_the_first_scrape_uses_the_sample_and_the_next_the_mean_over_the_interval():
    first, samples = averaged(ScrapeResult({"a": pod(4, 100.0)}, {}), {}, now=10.0)
    assert first.pods["a"].mean_busy is None and first.mean_busy_slots == 4  # nothing to average yet
    # 5 s later the counter grew by 5 slot-seconds: one slot busy on average, whatever the sample says
    second, samples = averaged(ScrapeResult({"a": pod(4, 105.0)}, {}), samples, now=15.0)
    assert second.pods["a"].mean_busy == pytest.approx(1.0)
    assert second.mean_busy_slots == pytest.approx(1.0) and second.busy_slots == 4  # the sample stays for ranking
    assert samples == {"a": Sample(15.0, 105.0)}


def test_a_restarted_counter_a_short_span_and_a_gone_pod():
    samples = {"a": Sample(10.0, 500.0), "b": Sample(14.5, 20.0), "gone": Sample(10.0, 1.0)}
    scrape = ScrapeResult({"a": pod(1, 3.0), "b": pod(2, 20.5)}, {"c": "refused"})
    out, kept = averaged(scrape, samples, now=15.0)
    assert out.pods["a"].mean_busy is None  # went back: the container restarted
    assert kept["a"] == Sample(15.0, 3.0)
    assert out.pods["b"].mean_busy is None and kept["b"] == Sample(14.5, 20.0)  # 0.5 s: keep the older sample
    assert "gone" not in kept and out.errors == {"c": "refused"}
    assert out.mean_busy_slots == 3  # both pods by their samples


def test_the_mean_never_exceeds_the_pods_slots_and_pods_without_the_counter_use_their_sample():
    samples = {"a": Sample(0.0, 0.0)}
    out, kept = averaged(ScrapeResult({"a": pod(4, 50.0), "go": pod(2, None)}, {}), samples, now=5.0)
    assert out.pods["a"].mean_busy == 4.0  # 10 slot-seconds a second reads as the 4 slots it has
    assert out.mean_busy_slots == 6 and "go" not in kept


def test_the_runtime_page_gives_the_counter_summed_over_task_types():
    page = "\n".join(
        [
            'worker_busy_slots{taskType="a"} 1.0',
            'worker_slot_capacity{taskType="a"} 4.0',
            'worker_busy_slot_seconds_total{taskType="a"} 12.5',
            'worker_busy_slots{taskType="b"} 0.0',
            'worker_slot_capacity{taskType="b"} 2.0',
            'worker_busy_slot_seconds_total{taskType="b"} 3.0',
        ]
    )
    assert parse_metrics(page).busy_seconds == 15.5
    assert parse_metrics('active_workers{taskType="a"} 1.0').busy_seconds is None  # an SDK's page: no counter
