"""The get-inventory worker of Conductor's "Using Workers" guide, on this project's runtime.

Run: `conductor-worker run --path examples/python --module get_inventory`. The domain is the guide's
(`john`); the operator may override it and the slots with CONDUCTOR_WORKER_GET_INVENTORY_* variables.
"""

from __future__ import annotations

import random

from worker_runtime import worker_task


@worker_task(task_definition_name="get-inventory", domain="john")
def get_inventory(product_id: str) -> dict:
    """Report a made-up stock level (0..9) for the product, as the guide's example does."""
    return {"product_id": product_id, "inventory": random.randint(0, 9)}
