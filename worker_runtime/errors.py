"""The client's error type, apart so the auth module can raise it without importing the client."""

from __future__ import annotations


class ConductorError(Exception):
    """A request failed. `retryable` says whether trying again can help; `kind` names the failure
    for metrics: `ConnectionError` (network), `HTTP<status>`, `MalformedReply`, or, for an error
    of the client itself (a body it cannot encode, a bad URL), the exception's class name."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        body: str = "",
        client_error: str | None = None,
        summary: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.client_error = client_error
        self._summary = summary

    @property
    def summary(self) -> str:
        """The message without anything the server's reply said: what may go into a resource's status or
        an Event, which whoever can read the resource sees (a reply body could be anything the URL
        answers, e.g. from an internal service)."""
        return self._summary if self._summary is not None else str(self)

    @property
    def retryable(self) -> bool:
        """By status only: Conductor 3.21 answers `retryable: false` on HTTP 500 for any error that is
        not its own TransientException (a Redis outage included), so the body's verdict is not trusted.
        A 5xx, 408, 429, a network failure or a malformed reply is retried; so are 401 and 403 (the client
        already renewed its token once: credentials being rotated or a token service that is down must
        not cost a task's result); another 4xx refusal or an error of the client itself is not."""
        if self.client_error:
            return False
        if self.status is None or self.status < 400:
            return True
        return self.status >= 500 or self.status in (401, 403, 408, 429)

    @property
    def kind(self) -> str:
        if self.client_error:
            return self.client_error
        if self.status is None:
            return "ConnectionError"
        return f"HTTP{self.status}" if self.status >= 400 else "MalformedReply"
