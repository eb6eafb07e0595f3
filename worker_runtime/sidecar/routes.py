"""Which worker API call a request is, and how a poll is rewritten (pure; paths relative to `/api`).

Only polls and task updates are read: everything else is forwarded untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode

POLL = "poll"  # GET /tasks/poll/{taskType}: one task or 204
BATCH_POLL = "batch_poll"  # GET /tasks/poll/batch/{taskType}: a list
UPDATE = "update"  # POST /tasks (a TaskResult)
UPDATE_V2 = "update_v2"  # POST /tasks/update-v2: the reply may be the next task for this worker
UPDATE_BY_REF = "update_by_ref"  # POST /tasks/{workflowId}/{taskRefName}/{status}[/sync]
OTHER = "other"

SINGLE_POLL_WAIT_MS = 100  # the server's own wait for a single poll
DEFAULT_BATCH_TIMEOUT_MS = 100  # the server's default `timeout` of a batch poll
TERMINAL = frozenset({"COMPLETED", "FAILED", "FAILED_WITH_TERMINAL_ERROR", "CANCELED", "TIMED_OUT", "SKIPPED"})


@dataclass(frozen=True)
class Route:
    kind: str
    task_type: str = ""
    workflow_id: str = ""
    ref_name: str = ""
    status: str = ""


def classify(method: str, path: str) -> Route:
    """`path` is the request path after the API prefix, still percent-encoded, without the query."""
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if not parts or parts[0] != "tasks":
        return Route(OTHER)
    if method == "GET" and len(parts) == 3 and parts[1] == "poll":
        return Route(POLL, task_type=parts[2])
    if method == "GET" and len(parts) == 4 and parts[1:3] == ["poll", "batch"]:
        return Route(BATCH_POLL, task_type=parts[3])
    if method == "POST" and len(parts) == 1:
        return Route(UPDATE)
    if method == "POST" and parts[1:] == ["update-v2"]:
        return Route(UPDATE_V2)
    if method == "POST" and (len(parts) == 4 or (len(parts) == 5 and parts[4] == "sync")):
        return Route(UPDATE_BY_REF, workflow_id=parts[1], ref_name=parts[2], status=parts[3].upper())
    return Route(OTHER)


@dataclass(frozen=True)
class PollQuery:
    """A poll's parameters as the worker sent them."""

    pairs: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, query: str) -> PollQuery:
        return cls(tuple(parse_qsl(query, keep_blank_values=True)))

    def get(self, name: str) -> str | None:
        for key, value in self.pairs:
            if key == name:
                return value
        return None

    def _int(self, name: str, default: int) -> int:
        try:
            return max(0, int(self.get(name) or default))
        except ValueError:
            return default

    def count(self, batch: bool) -> int:
        return self._int("count", 1) if batch else 1

    def wait_ms(self, batch: bool) -> int:
        return self._int("timeout", DEFAULT_BATCH_TIMEOUT_MS) if batch else SINGLE_POLL_WAIT_MS

    def rewritten(self, original: str, domain: str | None, count: int | None) -> str:
        """The query to forward: the worker's own domain wins; `count` replaces a larger one. Unchanged
        requests keep their bytes."""
        pairs = list(self.pairs)
        changed = False
        if domain and not self.get("domain"):
            pairs = [(k, v) for k, v in pairs if k != "domain"] + [("domain", domain)]
            changed = True
        if count is not None and str(count) != self.get("count"):
            pairs = [(k, v) for k, v in pairs if k != "count"] + [("count", str(count))]
            changed = True
        return urlencode(pairs) if changed else original
