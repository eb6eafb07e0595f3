"""The demo's progress bookkeeping: workflows join as their starts return, and each finished one is
read once, from one `running` list per sample."""

from __future__ import annotations

from concurrent.futures import Future

import pytest

from teststack import demo


def _done(value: object) -> Future:
    f: Future = Future()
    f.set_result(value)
    return f


class FakeConductor:
    def __init__(self, workflow: str, running: list[str], workflows: dict[str, dict]) -> None:
        self.workflow, self.running, self.workflows, self.reads = workflow, running, workflows, []

    def running_workflow_ids(self, name: str) -> list[str]:
        assert name == self.workflow
        return list(self.running)

    def get_workflow(self, wf_id: str, include_tasks: bool = True) -> dict:
        self.reads.append(wf_id)
        return self.workflows[wf_id]


def test_collect_takes_started_workflows_in_order_and_stops_at_the_first_still_starting() -> None:
    progress = demo.Progress()
    launches = [_done(("w1", {"i": 1})), _done(("w2", {"i": 2})), Future(), _done(("w4", {"i": 4}))]
    progress.collect(launches)
    assert list(progress.inputs) == ["w1", "w2"] and progress.pending == {"w1", "w2"}
    assert not progress.all_started
    launches[2].set_result(("w3", {"i": 3}))
    progress.collect(launches)
    assert list(progress.inputs) == ["w1", "w2", "w3", "w4"] and progress.all_started


def test_collect_raises_the_error_of_a_failed_start() -> None:
    failed: Future = Future()
    failed.set_exception(RuntimeError("server said 500"))
    with pytest.raises(RuntimeError, match="500"):
        demo.Progress().collect([failed])


def test_check_reads_each_finished_workflow_once_and_counts_wrong_outputs() -> None:
    scenario = demo.language("go")
    wf_input = {"product_id": "p-1"}
    progress = demo.Progress(inputs=dict.fromkeys("abcd", wf_input), pending=set("abcd"))
    conductor = FakeConductor(
        scenario.workflow,
        running=["a"],
        workflows={
            "b": {"status": "COMPLETED", "output": {"product_id": "p-1", "inventory": 3}},
            "c": {"status": "COMPLETED", "output": {"product_id": "p-2", "inventory": 3}},
            "d": {"status": "FAILED"},
        },
    )
    progress.check(conductor, scenario)
    assert (progress.completed, progress.wrong, progress.failed) == (2, 1, 1)
    assert progress.pending == {"a"} and sorted(conductor.reads) == ["b", "c", "d"]
    progress.check(conductor, scenario)  # nothing new finished: nothing read again
    assert sorted(conductor.reads) == ["b", "c", "d"]
