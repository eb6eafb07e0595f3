"""What a worker pod's /metrics says per task type, whichever Conductor SDK wrote it.

Why a table: the SDKs name the same facts differently (`taskType`, `task_type` or `type` labels;
seconds or milliseconds; a `_total` suffix or none) and some do not expose a fact at all. One table maps
every known name onto the few observations the autoscaler uses, so a new SDK version is one row, and a
fact no row provides stays None (the autoscaler then runs on queue depth alone and says so).

Each row was read in the SDK's source and, where a fixture exists, checked against a real worker's page
(tests/fixtures/sdk_metrics/): the runtime of this project, conductor-go v1.6.1,
@io-orkes/conductor-javascript 4.0.0 (legacy and canonical), the Java client 4.0.8 through the
examples' collector. The Java client's own Prometheus module (4.0.x names, label `type`) was never
published for Java 17; its rows come from its source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum


class Fact(StrEnum):
    """What the autoscaler needs from a pod, per task type."""

    BUSY = "busy"  # tasks in flight now (gauge)
    CAPACITY = "capacity"  # slots the pod has for the task type (gauge)
    POLLS = "polls"  # poll requests sent (counter)
    EMPTY_POLLS = "empty_polls"  # polls that brought no task (counter)
    EXECUTIONS = "executions"  # tasks executed or started (counter)
    EXECUTE_SECONDS = "execute_seconds"  # total time spent executing, in seconds (counter)
    BUSY_SECONDS = "busy_seconds"  # slot-seconds spent busy (counter): its rate is the mean busy slots


@dataclass(frozen=True)
class Rule:
    """One metric as a page shows it (the sample name, after any `_total`/`_count`/`_sum` suffix)."""

    name: str
    fact: Fact
    label: str  # the label holding the task type
    dialect: str  # who emits it (see DIALECTS)
    scale: float = 1.0  # multiplier to the fact's unit (ms -> s: 0.001)


# Who emits what, for status messages and the README.
DIALECTS = {
    "runtime": "this project's worker runtime (conductor-worker)",
    "shared": "the shared SDK set: runtime, JavaScript with WORKER_CANONICAL_METRICS=true, Java metrics module 5.1+",
    "js-legacy": "JavaScript SDK 3.x/4.x default collector (prefix conductor_worker_, label task_type, ms)",
    "go": "Go SDK (conductor-go) metrics.ProvideMetrics: counters without _total, time gauges",
    "java-4": "Java client metrics module 4.0.x (label type; source only, never published)",
}

# Order matters: for each fact, the first rule present in a page for a task type wins, so a pod that
# exposes both the runtime's own series and the shared ones is read once, from the more precise one
# (worker_busy_slots counts a slot until the server accepted the result; active_workers until the
# function returned).
RULES: tuple[Rule, ...] = (
    # this project's runtime
    Rule("worker_busy_slots", Fact.BUSY, "taskType", "runtime"),
    Rule("worker_slot_capacity", Fact.CAPACITY, "taskType", "runtime"),
    Rule("worker_busy_slot_seconds_total", Fact.BUSY_SECONDS, "taskType", "runtime"),
    Rule("task_poll_counter_total", Fact.POLLS, "taskType", "runtime"),
    Rule("task_poll_empty_total", Fact.EMPTY_POLLS, "taskType", "runtime"),
    Rule("task_execute_counter_total", Fact.EXECUTIONS, "taskType", "runtime"),
    # the shared set (seconds, label taskType)
    Rule("active_workers", Fact.BUSY, "taskType", "shared"),
    Rule("task_poll_total", Fact.POLLS, "taskType", "shared"),
    Rule("task_execution_started_total", Fact.EXECUTIONS, "taskType", "shared"),
    Rule("task_execute_time_seconds_count", Fact.EXECUTIONS, "taskType", "shared"),
    Rule("task_execute_time_seconds_sum", Fact.EXECUTE_SECONDS, "taskType", "shared"),
    # JavaScript's default (legacy) collector: summaries in milliseconds
    Rule("conductor_worker_task_poll_total", Fact.POLLS, "task_type", "js-legacy"),
    Rule("conductor_worker_task_execute_total", Fact.EXECUTIONS, "task_type", "js-legacy"),
    Rule("conductor_worker_task_execute_time_count", Fact.EXECUTIONS, "task_type", "js-legacy"),
    Rule("conductor_worker_task_execute_time_sum", Fact.EXECUTE_SECONDS, "task_type", "js-legacy", 0.001),
    # Go: `task_poll` is a counter without the suffix; task_execute_time (ms), task_poll_time (s) and
    # task_update_time (ms) are gauges of the last call only, so they give no fact.
    Rule("task_poll", Fact.POLLS, "taskType", "go"),
    # Java metrics module 4.0.x (Micrometer: counters get _total, timers _seconds_count/_sum)
    Rule("poll_started_total", Fact.POLLS, "type", "java-4"),
    Rule("task_execution_started_total", Fact.EXECUTIONS, "type", "java-4"),
    Rule("task_execution_completed_seconds_count", Fact.EXECUTIONS, "type", "java-4"),
    Rule("task_execution_completed_seconds_sum", Fact.EXECUTE_SECONDS, "type", "java-4"),
)

_BY_NAME: dict[str, tuple[Rule, ...]] = {}
for _rule in RULES:
    _BY_NAME[_rule.name] = (*_BY_NAME.get(_rule.name, ()), _rule)
_PRIORITY = {rule: i for i, rule in enumerate(RULES)}
_PREFIXES = tuple(sorted(_BY_NAME))  # a cheap first filter: most lines of a page are other series or buckets
_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


@dataclass(frozen=True)
class TaskObservation:
    """The facts one pod exposes for one task type; None where its SDK has no such metric."""

    busy: float | None = None
    capacity: float | None = None
    polls: float | None = None
    empty_polls: float | None = None
    executions: float | None = None
    execute_seconds: float | None = None
    busy_seconds: float | None = None


@dataclass(frozen=True)
class PageObservation:
    """A /metrics page read through RULES: the facts per task type and the dialects recognised."""

    tasks: dict[str, TaskObservation] = field(default_factory=dict)
    dialects: frozenset[str] = frozenset()

    @property
    def has_busy(self) -> bool:
        """Whether busy-slot protection and utilization can use this pod (else queue depth alone)."""
        return any(t.busy is not None for t in self.tasks.values())


def _labels(text: str) -> dict[str, str] | None:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        m = _LABEL.match(text, pos)
        if m is None:
            return None if text[pos:].strip() else out
        out[m.group(1)] = m.group(2).replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
        pos = m.end()
    return out


def _value(rest: str) -> float | None:
    parts = rest.split()
    if not parts:
        return None
    try:
        return float(parts[0])  # "+Inf", "NaN" parse too; a timestamp may follow
    except ValueError:
        return None


def parse(text: str) -> PageObservation:
    """Read a Prometheus or OpenMetrics text page; lines of unknown series or that cannot be read are skipped.

    Samples of one rule are summed per task type over their other labels (status, exception, ...).
    """
    found: dict[tuple[str, Fact], tuple[int, float]] = {}  # (task, fact) -> (rule priority, value)
    sums: dict[tuple[str, Rule], float] = {}
    for line in text.splitlines():
        if not line.startswith(_PREFIXES):
            continue
        brace, space = line.find("{"), line.find(" ")
        end = brace if brace != -1 and (space == -1 or brace < space) else space
        if end == -1:
            continue
        rules = _BY_NAME.get(line[:end])
        if rules is None:
            continue
        if end == brace:
            close = line.rfind("}")
            if close < end:
                continue
            labels = _labels(line[end + 1 : close])
            rest = line[close + 1 :]
        else:
            labels, rest = {}, line[end:]
        value = _value(rest)
        if labels is None or value is None:
            continue
        for rule in rules:
            task = labels.get(rule.label)
            if task is None:
                continue  # e.g. task_execution_started_total{taskType} is not the Java 4 `type` row
            key = (task, rule)
            sums[key] = sums.get(key, 0.0) + value * rule.scale
    for (task, rule), value in sums.items():
        prio = _PRIORITY[rule]
        best = found.get((task, rule.fact))
        if best is None or prio < best[0]:
            found[(task, rule.fact)] = (prio, value)
    tasks: dict[str, dict[str, float]] = {}
    for (task, fact), (_, value) in found.items():
        tasks.setdefault(task, {})[fact.value] = value
    dialects = frozenset(RULES[prio].dialect for prio, _ in found.values())
    return PageObservation({t: TaskObservation(**facts) for t, facts in sorted(tasks.items())}, dialects)
