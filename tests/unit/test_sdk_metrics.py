"""sdk_metrics: each SDK's real /metrics page (captured fixtures) and the table's edge cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from conductor_operator import sdk_metrics
from conductor_operator.sdk_metrics import RULES, Fact, TaskObservation, parse

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sdk_metrics"
TASK = "get-inventory"


def page(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_every_fixture_names_its_sdk_and_version():
    for path in FIXTURES.glob("*.txt"):
        first = path.read_text().splitlines()[0]
        assert first.startswith("# ") and "30 workflows" in first, path.name


def test_python_runtime_page():
    obs = parse(page("python.txt"))
    assert obs.tasks == {
        TASK: TaskObservation(
            busy=0.0,
            capacity=3.0,
            polls=66.0,
            empty_polls=45.0,
            executions=30.0,
            execute_seconds=pytest.approx(0.003116578),
        )
    }
    assert obs.dialects == {"runtime", "shared"}
    assert obs.has_busy


def test_go_page_gives_polls_only():
    obs = parse(page("go.txt"))
    # conductor-go: a `task_poll` counter; its time metrics are gauges of the last call (no executions)
    assert obs.tasks == {TASK: TaskObservation(polls=76.0)}
    assert obs.dialects == {"go"}
    assert not obs.has_busy


def test_javascript_legacy_page_in_milliseconds():
    obs = parse(page("javascript.txt"))
    t = obs.tasks[TASK]
    assert (t.polls, t.executions, t.busy, t.capacity) == (31.0, 30.0, None, None)
    assert t.execute_seconds == pytest.approx(0.207)  # 207 ms in the summary's _sum
    assert obs.dialects == {"js-legacy"}
    assert not obs.has_busy


def test_javascript_canonical_page():
    obs = parse(page("javascript-canonical.txt"))
    t = obs.tasks[TASK]
    assert (t.busy, t.polls, t.executions) == (0.0, 28.0, 30.0)
    assert t.execute_seconds == pytest.approx(0.007)
    assert obs.dialects == {"shared"}
    assert obs.has_busy


def test_java_page():
    obs = parse(page("java.txt"))
    t = obs.tasks[TASK]
    assert (t.busy, t.polls, t.executions, t.capacity, t.empty_polls) == (0.0, 62.0, 30.0, None, None)
    assert t.execute_seconds == pytest.approx(0.014)


def test_first_rule_wins_over_a_less_precise_one():
    text = (
        'active_workers{taskType="a"} 1\n'
        'worker_busy_slots{taskType="a"} 3\n'  # runtime's own gauge: counted until the result is accepted
        'task_poll_total{taskType="a"} 7\n'
        'task_poll_counter_total{taskType="a"} 9\n'
    )
    t = parse(text).tasks["a"]
    assert (t.busy, t.polls) == (3.0, 9.0)


def test_samples_are_summed_over_other_labels_per_task():
    text = (
        'task_execute_time_seconds_count{taskType="a",status="SUCCESS"} 4\n'
        'task_execute_time_seconds_count{status="FAILURE",taskType="a"} 1\n'
        'task_execute_time_seconds_count{taskType="b",status="SUCCESS"} 2\n'
        'active_workers{taskType="a"} 2\n'
        'active_workers{taskType="b"} 5\n'
    )
    obs = parse(text)
    assert obs.tasks["a"] == TaskObservation(busy=2.0, executions=5.0)
    assert obs.tasks["b"] == TaskObservation(busy=5.0, executions=2.0)


def test_label_name_decides_the_dialect():
    # the Java 4 module's `type` label and the shared set's `taskType` share a metric name
    text = 'task_execution_started_total{type="j"} 3\ntask_execution_started_total{taskType="s"} 4\n'
    obs = parse(text)
    assert obs.tasks["j"].executions == 3.0
    assert obs.tasks["s"].executions == 4.0
    assert obs.dialects == {"java-4", "shared"}


def test_escaped_label_values_openmetrics_timestamps_and_junk():
    text = (
        "# TYPE task_poll counter\n"
        'task_poll{taskType="we\\"ird,name"} 2 1700000000000\n'
        'task_poll{taskType="broken} 5\n'  # unterminated: skipped
        'active_workers{taskType="x"} not-a-number\n'
        "active_workers 4\n"  # no task label: skipped
        'task_poll_empty_total{taskType="x"} +Inf\n'
        "# EOF\n"
    )
    obs = parse(text)
    assert obs.tasks['we"ird,name'].polls == 2.0
    assert obs.tasks["x"] == TaskObservation(empty_polls=float("inf"))


def test_unknown_page_yields_nothing():
    obs = parse("process_cpu_seconds_total 1\ngo_goroutines 9\n")
    assert obs.tasks == {} and obs.dialects == frozenset() and not obs.has_busy


def test_table_is_consistent():
    assert {r.dialect for r in RULES} <= set(sdk_metrics.DIALECTS)
    assert len(set(RULES)) == len(RULES)
    # only time facts are scaled; counts and gauges are taken as they are
    assert all(r.scale == 1.0 for r in RULES if r.fact is not Fact.EXECUTE_SECONDS)
