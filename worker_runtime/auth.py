"""Orkes key/secret auth: a token from POST /token, refreshed before it expires and on 401."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from worker_runtime.errors import ConductorError

log = logging.getLogger(__name__)

DEFAULT_TTL = 45 * 60  # when the token carries no readable expiry
REFRESH_MARGIN = 60


def token_expiry(token: str, now: float) -> float:
    """The JWT's exp claim (seconds), or now + DEFAULT_TTL when it cannot be read."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, KeyError, ValueError, TypeError):
        return now + DEFAULT_TTL


class TokenAuth:
    """Holds the current token; thread-safe; never logs the secret or the token."""

    def __init__(self, base_url: str, key_id: str, key_secret: str, post: Callable[[dict], Any]) -> None:
        self._url = f"{base_url}/token"
        self._key_id = key_id
        self._key_secret = key_secret
        self._post = post  # sends the token request; returns a response with status_code, ok, json()
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0
        self.disabled = False  # the server has no /token (Conductor OSS): send no header

    def headers(self) -> dict[str, str]:
        token = self._current()
        return {"X-Authorization": token} if token else {}

    def invalidate(self) -> None:
        with self._lock:
            self._token = None

    def _current(self) -> str | None:
        with self._lock:
            if self.disabled:
                return None
            if self._token is None or time.time() > self._expires - REFRESH_MARGIN:
                self._refresh()
            return self._token

    def _refresh(self) -> None:
        resp = self._post({"keyId": self._key_id, "keySecret": self._key_secret})
        if resp.status_code in (404, 405):
            log.warning("server has no %s endpoint; continuing without auth (Conductor OSS)", self._url)
            self.disabled = True
            return
        if not resp.ok:
            raise ConductorError(f"token request failed: HTTP {resp.status_code}", resp.status_code)
        try:
            token = resp.json()["token"]
            if not isinstance(token, str) or not token:
                raise KeyError("token")
        except (ValueError, KeyError, TypeError):  # retryable: the result waits for a good reply
            raise ConductorError(
                f"token reply (HTTP {resp.status_code}) holds no token",
                resp.status_code if resp.status_code < 400 else None,
            ) from None
        self._token = token
        self._expires = token_expiry(token, time.time())
        log.info("obtained auth token (expires in %.0fs)", self._expires - time.time())
