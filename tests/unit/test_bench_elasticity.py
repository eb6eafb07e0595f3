"""bench/elasticity.py: the SPEC elasticity metrics and the task figures, against hand-computed cases."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import elasticity as el


def test_accuracy_is_normalised_by_demand_and_timeshare_counts_time() -> None:
    # t0: demand 2, supply 1 -> under 1/2 for 1 s; t2: demand 1, supply 3 -> over 2/1 for 1 s; T = 4 s
    m = el.elasticity([0, 1, 2, 3], [1, 1, 3, 2], [2, 1, 1, 2], end=4)
    assert m["theta_u"] == pytest.approx(12.5)  # 100/4 * 0.5 (normalising by supply would give 25)
    assert m["theta_o"] == pytest.approx(50.0)  # 100/4 * 2 (by supply: 100/4 * 2/3)
    assert m["tau_u"] == pytest.approx(25.0) and m["tau_o"] == pytest.approx(25.0)
    assert (m["supply_changes"], m["demand_changes"], m["jitter_per_h"]) == (2, 2, 0)


def test_uneven_steps_zero_demand_uses_epsilon_and_jitter_per_hour() -> None:
    # [0,10): d1 s0 -> under 1/1 * 10; [10,40): d0 s2 -> over 2/max(0,1) * 30; [40,100): d4 s2 -> under 2/4 * 60
    m = el.elasticity([0, 10, 40], [0, 2, 2], [1, 0, 4], end=100)
    assert m["theta_u"] == pytest.approx(40.0)
    assert m["theta_o"] == pytest.approx(60.0)
    assert m["tau_u"] == pytest.approx(70.0) and m["tau_o"] == pytest.approx(30.0)
    # one supply change against two demand changes in 100 s: -1 per 100 s = -36 per hour
    assert m["jitter_per_h"] == pytest.approx(-36.0)


def test_perfect_supply_scores_zero() -> None:
    m = el.elasticity([0, 5, 9], [0, 3, 1], [0, 3, 1], end=12)
    assert [m[k] for k in ("theta_u", "theta_o", "tau_u", "tau_o", "jitter_per_h")] == [0, 0, 0, 0, 0]


def test_elasticity_rejects_bad_series() -> None:
    with pytest.raises(ValueError):
        el.elasticity([0, 1], [1], [1, 1], end=2)
    with pytest.raises(ValueError):
        el.elasticity([5], [1], [1], end=5)


def test_demand_counts_ready_and_running_tasks_over_slots_with_cap() -> None:
    tasks = [el.TaskTimes(0, 0.5, 2.0), el.TaskTimes(0.2, 1.0, 3.5), el.TaskTimes(1.0, 1.0, None)]
    grid = [0, 1, 2, 3, 4]
    # open tasks: 1, 3, 2 (the first ended at 2.0), 2, 1 (the second ended at 3.5; the third never ends)
    assert el.demand(tasks, grid, slots=2) == [1, 2, 1, 1, 1]
    assert el.demand(tasks, grid, slots=1) == [1, 3, 2, 2, 1]
    assert el.demand(tasks, grid, slots=1, cap=2) == [1, 2, 2, 2, 1]


def test_integral_of_a_step_series_is_replica_seconds() -> None:
    assert el.integral([0, 5, 10], [0, 2, 1], end=12) == pytest.approx(12.0)  # 0*5 + 2*5 + 1*2
    assert el.integral([0, 5, 10], [4, 2, 1], end=7) == pytest.approx(24.0)  # 4*5 + 2*2, cut at the end


def test_resample_takes_the_last_sample_at_or_before() -> None:
    assert el.resample([1, 3], [5, 7], [0, 1, 2, 3, 4]) == [0, 5, 5, 7, 7]


def test_percentile_interpolates() -> None:
    assert el.percentile([4, 1, 3, 2], 0.5) == pytest.approx(2.5)
    assert el.percentile([1, 2, 3, 4], 0.99) == pytest.approx(3.97)
    assert el.percentile([], 0.5) is None


def test_activations_time_from_first_task_at_zero_to_a_running_pod() -> None:
    times = [0, 1, 2, 3, 4, 5, 6, 7]
    running = [0, 0, 0, 1, 1, 0, 0, 2]
    # 0.5 opens an episode closed by the pod at 3 (2.5 s); 1.5 joins it; 3.5 finds a pod; 5.2 opens the
    # next, closed at 7 (1.8 s); 6.5 joins that one
    assert el.activations([1.5, 0.5, 3.5, 5.2, 6.5], times, running) == [2.5, 1.8]
    assert el.activations([5.2], times[:7], running[:7]) == []  # never served within the run


def test_task_summary_waits_reruns_timeouts() -> None:
    t0 = 1_000_000
    wfs = [
        {
            "status": "COMPLETED",
            "tasks": [{"scheduledTime": t0 + 1000, "startTime": t0 + 1500, "endTime": t0 + 3000, "workerId": "a"}],
        },
        {
            "status": "COMPLETED",
            "tasks": [
                {"scheduledTime": t0 + 2000, "startTime": t0 + 2100, "status": "TIMED_OUT", "workerId": "a"},
                {"scheduledTime": t0 + 50000, "startTime": t0 + 50300, "endTime": t0 + 51000, "retryCount": 1},
            ],
        },
        {"status": "RUNNING", "tasks": [{"scheduledTime": t0 + 3000, "startTime": 0, "pollCount": 0}]},
        {
            "status": "COMPLETED",
            "tasks": [{"scheduledTime": t0, "startTime": t0 + 1, "endTime": t0 + 2, "pollCount": 2}],
        },
    ]
    s = el.task_summary(wfs, t0)
    assert (s["workflows"], s["completed"], s["rerun"], s["timed_out"]) == (4, 3, 2, 1)
    assert s["wait_p50_s"] == pytest.approx(0.2)  # waits 0.5, 0.1, 0.3, 0.001 -> between 0.1 and 0.3
    assert s["wait_max_s"] == pytest.approx(0.5)
    assert el.TaskTimes(1.0, 1.5, 3.0) in s["task_times"] and el.TaskTimes(3.0, None, None) in s["task_times"]
