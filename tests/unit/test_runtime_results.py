"""Encoding a result for the server: what cannot be sent is named, never sent."""

from __future__ import annotations

import datetime
import math

import pytest

from worker_runtime.model import Task, TaskInProgress, TaskResult
from worker_runtime.results import UnsendableResult, encode, find_unencodable, from_return


def _task() -> Task:
    return Task({"taskId": "t1", "workflowInstanceId": "w1"})


def _encode(value: object, max_bytes: int = 1_000_000) -> bytes:
    return encode(from_return(value, _task(), "w", []).to_json(), max_bytes)


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (math.nan, "output.result is NaN"),
        ({"score": math.inf}, "output.score is Infinity"),
        ({"rows": [1, {"x": -math.inf}]}, "output.rows[1].x is -Infinity"),
        ({"when": datetime.date(2026, 1, 1)}, "output.when is a date, which JSON cannot hold"),
        ({"ids": {1, 2}}, "output.ids is a set"),
        ({(1, 2): "tuple key"}, "output has a key of type tuple"),
        (TaskResult(output_data={"ratio": math.nan}), "output.ratio is NaN"),
        (TaskInProgress(30, {"blob": object()}), "output.blob is a object"),
    ],
)
def test_a_result_json_cannot_hold_is_refused_with_a_reason_naming_the_value(value, named):
    with pytest.raises(UnsendableResult) as caught:
        _encode(value)
    assert named in str(caught.value)


def test_a_self_referencing_output_is_named():
    loop: dict = {"a": 1}
    loop["self"] = loop
    assert find_unencodable(loop, "output") == "output.self refers to itself"


def test_a_non_finite_callback_delay_is_refused():
    with pytest.raises(UnsendableResult, match="callback_after_seconds is nan"):
        from_return(TaskInProgress(math.nan), _task(), "w", [])


def test_a_result_over_the_size_limit_is_refused_with_its_size():
    with pytest.raises(UnsendableResult, match=r"payload size 1,\d{3} bytes exceeds the worker's limit of 1,000 bytes"):
        _encode({"blob": "x" * 1000}, max_bytes=1000)


def test_an_encodable_result_is_compact_json():
    assert _encode({"a": [1, 2.5, None, True]}).startswith(b'{"taskId":"t1"')
    assert b'"outputData":{"a":[1,2.5,null,true]}' in _encode({"a": [1, 2.5, None, True]})
