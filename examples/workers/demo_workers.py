"""Example workers for the demo and the docs: `conductor-worker run --path examples/workers --module demo_workers`."""

from __future__ import annotations

import time
from dataclasses import dataclass

from worker_runtime import get_task_context, worker_task


@dataclass
class Order:
    id: str
    quantity: int
    unit_price: float


@worker_task(task_definition_name="cwo_demo_price", thread_count=4)
def price(order: Order, discount: float = 0.0) -> dict:
    """Price an order: dataclass input, dict output."""
    total = round(order.quantity * order.unit_price * (1 - discount), 2)
    get_task_context().add_log(f"priced order {order.id}")
    return {"order_id": order.id, "total": total}


@worker_task(task_definition_name="cwo_demo_work", thread_count=4)
def work(millis: int = 200) -> dict:
    """Simulate a task that takes time (the demo's autoscaling load)."""
    time.sleep(millis / 1000)
    return {"slept_ms": millis}
