"""The worker runtime against the real Conductor OSS server."""

from __future__ import annotations

import dataclasses
import time

from helpers import linear_workflow, task_def, unique, wait_for, wait_workflow_done
from worker_runtime import NonRetryableError, TaskHandler, TaskInProgress, TaskManager, get_task_context
from worker_runtime.worker import WorkerSpec


@dataclasses.dataclass
class Item:
    sku: str
    qty: int


@dataclasses.dataclass
class Cart:
    owner: str
    items: list[Item]


def _setup(client, tasks: dict[str, int], workflow: dict) -> None:
    client.register_task_defs([task_def(name, retry_count=retries) for name, retries in tasks.items()])
    client.register_workflow(workflow)


def test_several_simple_tasks_complete_with_computed_outputs_and_dataclass_inputs(conductor_client):
    count_t, total_t, async_t, wf = unique("count"), unique("total"), unique("async"), unique("wf")

    def count_items(cart: Cart) -> dict:
        assert isinstance(cart.items[0], Item)
        get_task_context().add_log(f"counting for {cart.owner}")
        return {"n": sum(i.qty for i in cart.items), "owner": cart.owner}

    def total(n: int, price: float) -> float:
        return n * price

    async def shout(owner: str) -> Item:
        return Item(sku=owner.upper(), qty=1)

    _setup(
        conductor_client,
        {count_t: 0, total_t: 0, async_t: 0},
        linear_workflow(
            wf,
            [
                (count_t, "count", {"cart": "${workflow.input.cart}"}),
                (total_t, "total", {"n": "${count.output.n}", "price": "${workflow.input.price}"}),
                (async_t, "shout", {"owner": "${count.output.owner}"}),
            ],
            output={"total": "${total.output.result}", "sku": "${shout.output.sku}"},
        ),
    )
    specs = [WorkerSpec(count_t, count_items), WorkerSpec(total_t, total), WorkerSpec(async_t, shout)]
    cart = {"owner": "ada", "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 3}]}
    with TaskHandler(specs, client=conductor_client):
        wf_id = conductor_client.start_workflow(wf, {"cart": cart, "price": 2.5})
        done = wait_workflow_done(conductor_client, wf_id)
    assert done["status"] == "COMPLETED"
    assert done["output"] == {"total": 12.5, "sku": "ADA"}
    first = done["tasks"][0]
    assert first["outputData"] == {"n": 5, "owner": "ada"}
    # Task logs travel with the result (unit-tested); this server keeps them only with indexing on.


def test_exception_fails_the_task_and_the_server_retry_is_redelivered(conductor_client):
    name, wf = unique("flaky"), unique("wf")

    def flaky(x: int) -> dict:
        if get_task_context().retry_count == 0:
            raise RuntimeError("first attempt breaks")
        return {"x": x}

    _setup(conductor_client, {name: 1}, linear_workflow(wf, [(name, "f", {"x": "${workflow.input.x}"})]))
    with TaskHandler([WorkerSpec(name, flaky)], client=conductor_client):
        done = wait_workflow_done(conductor_client, conductor_client.start_workflow(wf, {"x": 7}))
    assert done["status"] == "COMPLETED"
    attempts = done["tasks"]
    assert [t["status"] for t in attempts] == ["FAILED", "COMPLETED"]
    assert attempts[0]["reasonForIncompletion"] == "RuntimeError: first attempt breaks"
    assert attempts[1]["outputData"] == {"x": 7}


def test_non_retryable_error_fails_the_workflow_without_retry(conductor_client):
    name, wf = unique("terminal"), unique("wf")

    class BadRequest(NonRetryableError):
        pass

    def reject() -> None:
        raise BadRequest("customer does not exist")

    _setup(conductor_client, {name: 3}, linear_workflow(wf, [(name, "r", {})]))
    with TaskHandler([WorkerSpec(name, reject)], client=conductor_client):
        done = wait_workflow_done(conductor_client, conductor_client.start_workflow(wf, {}))
    assert done["status"] == "FAILED"
    assert [t["status"] for t in done["tasks"]] == ["FAILED_WITH_TERMINAL_ERROR"]
    assert "customer does not exist" in done["tasks"][0]["reasonForIncompletion"]


def test_bad_input_fails_with_a_clear_reason_and_the_worker_keeps_running(conductor_client):
    name, wf = unique("typed"), unique("wf")

    def typed(cart: Cart) -> dict:
        return {"owner": cart.owner}

    _setup(conductor_client, {name: 2}, linear_workflow(wf, [(name, "t", {"cart": "${workflow.input.cart}"})]))
    with TaskHandler([WorkerSpec(name, typed)], client=conductor_client):
        bad = wait_workflow_done(
            conductor_client,
            conductor_client.start_workflow(wf, {"cart": {"owner": "x", "items": [{"sku": "a", "qty": "many"}]}}),
        )
        good = wait_workflow_done(
            conductor_client, conductor_client.start_workflow(wf, {"cart": {"owner": "y", "items": []}})
        )
    assert bad["status"] == "FAILED"
    assert bad["tasks"][0]["reasonForIncompletion"] == (
        "InputBindingError: input 'cart'.items[0].qty: expected int, got str ('many')"
    )
    assert good["status"] == "COMPLETED"


def test_in_progress_with_callback_is_redelivered_then_completed(conductor_client):
    name, wf = unique("poller"), unique("wf")
    seen: list[float] = []

    def wait_for_it() -> object:
        seen.append(time.monotonic())
        if get_task_context().poll_count < 2:
            return TaskInProgress(callback_after_seconds=2, output={"stage": "waiting"})
        return {"stage": "done"}

    _setup(conductor_client, {name: 0}, linear_workflow(wf, [(name, "p", {})]))
    with TaskHandler([WorkerSpec(name, wait_for_it)], client=conductor_client):
        done = wait_workflow_done(conductor_client, conductor_client.start_workflow(wf, {}), timeout=30)
    assert done["status"] == "COMPLETED"
    assert done["tasks"][0]["outputData"]["stage"] == "done"
    assert len(seen) == 2
    assert seen[1] - seen[0] >= 1.5  # the server held it back for the callback delay


def test_domain_routing_gives_a_domain_worker_only_its_domain_tasks(conductor_client):
    name, wf = unique("routed"), unique("wf")
    got: dict[str, list[str]] = {"x": [], "none": []}

    def in_x(tag: str) -> dict:
        got["x"].append(tag)
        return {"by": "x"}

    def no_domain(tag: str) -> dict:
        got["none"].append(tag)
        return {"by": "none"}

    _setup(conductor_client, {name: 0}, linear_workflow(wf, [(name, "r", {"tag": "${workflow.input.tag}"})]))
    domain_worker = WorkerSpec(name, in_x, domain="x")
    plain_worker = WorkerSpec(name, no_domain)
    with (
        TaskHandler([domain_worker], client=conductor_client),
        TaskHandler([plain_worker], client=conductor_client),
    ):
        ids = [conductor_client.start_workflow(wf, {"tag": f"x{i}"}, task_to_domain={name: "x"}) for i in range(3)]
        ids += [conductor_client.start_workflow(wf, {"tag": f"n{i}"}) for i in range(3)]
        finished = [wait_workflow_done(conductor_client, i) for i in ids]
    assert all(w["status"] == "COMPLETED" for w in finished)
    assert sorted(got["x"]) == ["x0", "x1", "x2"]
    assert sorted(got["none"]) == ["n0", "n1", "n2"]


def test_task_management_api_updates_by_ref_name_and_by_id(conductor_client):
    name, wf = unique("manual"), unique("wf")
    _setup(conductor_client, {name: 0}, linear_workflow(wf, [(name, "approve", {}), (name, "ship", {})]))
    manager = TaskManager(conductor_client)
    wf_id = conductor_client.start_workflow(wf, {})
    first = wait_for(lambda: conductor_client.get_workflow(wf_id)["tasks"], 10, "the first task")[0]
    assert manager.get_task(first["taskId"]).reference_task_name == "approve"
    manager.update_task_by_ref_name(wf_id, "approve", "COMPLETED", {"approved_by": "ops"})
    second = wait_for(
        lambda: [t for t in conductor_client.get_workflow(wf_id)["tasks"] if t["referenceTaskName"] == "ship"],
        10,
        "the second task",
    )[0]
    manager.add_log(second["taskId"], "shipping by hand")
    manager.update_task(second["taskId"], wf_id, "COMPLETED", {"tracking": "T1"})
    done = wait_workflow_done(conductor_client, wf_id)
    assert done["status"] == "COMPLETED"
    assert [t["outputData"] for t in done["tasks"]] == [{"approved_by": "ops"}, {"tracking": "T1"}]
    assert done["tasks"][0]["pollCount"] == 0  # no worker polled it
