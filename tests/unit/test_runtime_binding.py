"""Input binding and result mapping: pure functions, table-tested."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from worker_runtime.binding import Binder, InputBindingError
from worker_runtime.model import NonRetryableError, Task, TaskInProgress, TaskResult, TaskStatus
from worker_runtime.results import from_exception, from_return


@dataclasses.dataclass
class Line:
    sku: str
    qty: int = 1


@dataclasses.dataclass
class Order:
    id: str
    lines: list[Line]
    note: str | None = None


def _task(inputs: dict[str, Any]) -> Task:
    return Task({"taskId": "t1", "workflowInstanceId": "w1", "inputData": inputs, "retryCount": 2})


def _bind(func, inputs):
    args, kwargs = Binder(func).bind(_task(inputs))
    return func(*args, **kwargs)


def test_primitives_bind_by_name_with_defaults_and_optional():
    def f(a: int, b: float, c: str, d: bool, e: int = 5, g: str | None = None):
        return (a, b, c, d, e, g)

    assert _bind(f, {"a": 1, "b": 2, "c": "x", "d": True, "ignored": 0}) == (1, 2.0, "x", True, 5, None)


def test_nested_dataclasses_and_lists_of_them_bind():
    def f(order: Order) -> Order:
        return order

    order = _bind(f, {"order": {"id": "o", "lines": [{"sku": "a", "qty": 2}, {"sku": "b"}], "extra": 1}})
    assert order == Order("o", [Line("a", 2), Line("b", 1)])


def test_a_parameter_typed_task_gets_the_raw_task_and_kwargs_get_the_rest():
    def f(task: Task, x: int, **rest):
        return task.task_id, x, rest

    assert _bind(f, {"x": 1, "y": 2}) == ("t1", 1, {"y": 2})


def test_untyped_parameters_pass_json_through():
    def f(anything, other: Any = None):
        return anything, other

    assert _bind(f, {"anything": {"k": [1]}}) == ({"k": [1]}, None)


@pytest.mark.parametrize(
    ("func", "inputs", "message"),
    [
        (lambda a: a, {}, "missing required input 'a'"),
        (None, {"n": "3"}, "input 'n': expected int, got str ('3')"),
        (None, {"n": True}, "input 'n': expected int, got bool (True)"),
        (None, {"n": 2.5}, "input 'n': expected int, got float (2.5)"),
        (None, {"n": None}, "input 'n': expected int, got null"),
    ],
)
def test_wrong_types_and_missing_inputs_are_clear_errors(func, inputs, message):
    def typed(n: int):
        return n

    with pytest.raises(InputBindingError) as err:
        _bind(func or typed, inputs)
    assert str(err.value) == message


def test_dataclass_errors_say_which_field():
    def f(order: Order):
        return order

    with pytest.raises(InputBindingError, match=r"input 'order'.lines\[1\]: missing required field 'sku' of Line"):
        _bind(f, {"order": {"id": "o", "lines": [{"sku": "a"}, {"qty": 1}]}})
    with pytest.raises(InputBindingError, match="expected a list, got str"):
        _bind(f, {"order": {"id": "o", "lines": "nope"}})


def test_integral_floats_bind_to_int_since_json_numbers_may_arrive_as_floats():
    def f(n: int):
        return n

    assert _bind(f, {"n": 3.0}) == 3


@pytest.mark.parametrize(
    ("value", "status", "output"),
    [
        ({"a": 1}, TaskStatus.COMPLETED, {"a": 1}),
        (Line("x", 2), TaskStatus.COMPLETED, {"sku": "x", "qty": 2}),
        (42, TaskStatus.COMPLETED, {"result": 42}),
        ([1, 2], TaskStatus.COMPLETED, {"result": [1, 2]}),
        (None, TaskStatus.COMPLETED, {}),
    ],
)
def test_return_values_map_to_results(value, status, output):
    result = from_return(value, _task({}), "w", ["line"])
    assert (result.status, result.output_data) == (status, output)
    assert (result.task_id, result.workflow_instance_id, result.worker_id) == ("t1", "w1", "w")
    assert result.logs[0] == "line"


def test_in_progress_and_task_result_give_full_control():
    result = from_return(TaskInProgress(30, {"stage": 1}), _task({}), "w", [])
    body = result.to_json()
    assert (body["status"], body["callbackAfterSeconds"], body["outputData"]) == (
        "IN_PROGRESS",
        30,
        {"stage": 1},
    )
    custom = from_return(
        TaskResult(status=TaskStatus.FAILED, reason_for_incompletion="nope", logs=["x"]),
        _task({}),
        "w",
        ["ctx"],
    )
    assert custom.to_json()["reasonForIncompletion"] == "nope"
    assert [entry["log"] for entry in custom.to_json()["logs"]] == ["ctx", "x"]


def test_exceptions_fail_with_reason_and_traceback_terminal_when_non_retryable():
    def boom():
        raise ValueError("bad value")

    try:
        boom()
    except ValueError as exc:
        failed = from_exception(exc, _task({}), "w", [])
        terminal = from_exception(exc, _task({}), "w", [], non_retryable=(ValueError,))
    assert failed.status == TaskStatus.FAILED
    assert failed.reason_for_incompletion == "ValueError: bad value"
    assert "Traceback" in failed.logs[0] and "boom" in failed.logs[0]
    assert terminal.status == TaskStatus.FAILED_WITH_TERMINAL_ERROR
    assert from_exception(NonRetryableError("x"), _task({}), "w", []).status == TaskStatus.FAILED_WITH_TERMINAL_ERROR
    assert from_exception(InputBindingError("x"), _task({}), "w", []).status == TaskStatus.FAILED_WITH_TERMINAL_ERROR
