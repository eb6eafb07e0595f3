"""Thin Kubernetes API helpers (sync, for kopf's thread-pool handlers and daemons).

Why raw requests instead of the typed APIs: server-side apply of arbitrary kinds (a ServiceMonitor has
no typed API) with one code path, and merge patches without the client's model round trips.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from conductor_operator.builders import GROUP, MANAGER, PLURAL, VERSION
from conductor_operator.opmetrics import API_REQUESTS
from conductor_operator.sdk_env import secret_keys

log = logging.getLogger(__name__)

_PLURALS = {
    "Deployment": "deployments",
    "Service": "services",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "ServiceMonitor": "servicemonitors",
    "Pod": "pods",
    "Secret": "secrets",
    "Event": "events",
    "ConductorWorker": PLURAL,
    "ConductorConnection": "conductorconnections",
}


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def resource_of(path: str) -> str:
    """The resource (and subresource) an API path names, e.g. `deployments`, `conductorworkers/status`."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if len(rest) > 2 and rest[0] == "namespaces":
        rest = rest[2:]
    return rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "") if rest else "?"


def object_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{_PLURALS[kind]}"
    return f"{path}/{name}" if name else path


class Kube:
    """One ApiClient shared by all handler threads (urllib3 pools are thread-safe)."""

    def __init__(self, api_client: client.ApiClient, secret_ttl: float = 60.0) -> None:
        self.api = api_client
        self.secret_ttl = secret_ttl
        self._crd_cache: dict[str, tuple[float, bool]] = {}
        self._secrets: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}
        self._secrets_lock = threading.Lock()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str | None = None,
        query: list[tuple[str, str]] | None = None,
    ) -> Any:
        API_REQUESTS.labels(method, resource_of(path)).inc()
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        if body is not None and content_type and "json" not in content_type:
            body = json.dumps(body)  # apply-patch+yaml: JSON is YAML
        m, url, hdrs, data, post = self.api.param_serialize(
            method, path, query_params=query or [], header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        resp = self.api.call_api(m, url, hdrs, data, post, _request_timeout=(10, 30))
        raw = resp.read()
        if resp.status >= 400:
            raise ApiException(status=resp.status, reason=resp.reason, http_resp=resp)
        return json.loads(raw) if raw else None

    # -- objects ---------------------------------------------------------------------------------

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply as the operator's field manager, forcing conflicts: hand edits of the
        fields we manage are taken back; fields we do not set (e.g. by other controllers) are kept."""
        meta = manifest["metadata"]
        path = object_path(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])
        return self.request(
            "PATCH",
            path,
            manifest,
            "application/apply-patch+yaml",
            query=[("fieldManager", MANAGER), ("force", "true")],
        )

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", object_path(api_version, kind, namespace, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        try:
            self.request("DELETE", object_path(api_version, kind, namespace, name))
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def list(self, api_version: str, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        data = self.request("GET", object_path(api_version, kind, namespace), query=[("labelSelector", selector)])
        return list((data or {}).get("items") or [])

    def merge_patch(self, api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> Any:
        path = object_path(api_version, kind, namespace, name)
        return self.request("PATCH", path, patch, "application/merge-patch+json")

    def patch_status(self, namespace: str, name: str, status: dict[str, Any], kind: str = "ConductorWorker") -> Any:
        path = object_path(f"{GROUP}/{VERSION}", kind, namespace, name) + "/status"
        return self.request("PATCH", path, {"status": status}, "application/merge-patch+json")

    def crd_installed(self, name: str, ttl: float = 30.0) -> bool:
        """Whether a CRD (e.g. servicemonitors.monitoring.coreos.com) is served; cached for ttl seconds."""
        cached = self._crd_cache.get(name)
        if cached and time.monotonic() - cached[0] < ttl:
            return cached[1]
        try:
            crd = self.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            ok = any(
                c.get("type") == "Established" and c.get("status") == "True"
                for c in (crd.get("status") or {}).get("conditions") or []
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            ok = False
        self._crd_cache[name] = (time.monotonic(), ok)
        return ok

    def secret_data(self, namespace: str, name: str, keys: tuple[str, ...] = ()) -> dict[str, str] | None:
        """The Secret's data (base64 values, decoded by the caller only when needed), None if absent.

        Kept for secret_ttl seconds once it holds all `keys`, so the ConductorWorkers sharing a Secret read it
        once a minute, not each at every step; a missing or incomplete Secret is read again at every call, so
        fixing it shows at the next step. Why not a watch: list/watch on Secrets would hand the operator every
        Secret of the watched namespaces; it needs get on the referenced ones only."""
        key = (namespace, name)
        with self._secrets_lock:
            cached = self._secrets.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.secret_ttl:
            return dict(cached[1])
        secret = self.get("v1", "Secret", namespace, name)
        data = None if secret is None else dict(secret.get("data") or {})
        with self._secrets_lock:
            if data is not None and all(k in data for k in keys):
                self._secrets[key] = (time.monotonic(), data)
            else:
                self._secrets.pop(key, None)
        return None if data is None else dict(data)

    def event(self, owner: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """A core/v1 Event on the ConductorWorker (best effort: an Event is never worth a failure)."""
        meta = owner["metadata"]
        ts = now_iso()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:12]}", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ConductorWorker",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": type_,
            "reason": reason,
            "message": message[:1000],
            "source": {"component": MANAGER},
            "reportingComponent": MANAGER,
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
        }
        try:
            self.request("POST", object_path("v1", "Event", meta["namespace"]), body, "application/json")
        except Exception as exc:
            log.warning("could not post event %s: %s", reason, exc)


# -- the Conductor credentials Secret ------------------------------------------------------------------


def auth_secret(kube: Kube, spec: dict[str, Any], namespace: str) -> dict[str, str] | None:
    """The data of the Secret spec.conductor.authSecretRef names; None without a reference or a Secret."""
    ref = (spec.get("conductor") or {}).get("authSecretRef")
    return kube.secret_data(namespace, ref["name"], secret_keys(ref)) if ref else None


def conductor_credentials(kube: Kube, spec: dict[str, Any], namespace: str) -> tuple[str | None, str | None]:
    """(key id, key secret) for Conductor from the referenced Secret, (None, None) without a reference.

    Raises KeyError when the Secret or one of its keys is missing (the queue depth is then unavailable,
    and the Degraded condition says which)."""
    ref = (spec.get("conductor") or {}).get("authSecretRef")
    if not ref:
        return None, None
    id_key, secret_key = secret_keys(ref)
    data = kube.secret_data(namespace, ref["name"], (id_key, secret_key))
    if data is None:
        raise KeyError(f"Secret {ref['name']!r} not found")
    return base64.b64decode(data[id_key]).decode(), base64.b64decode(data[secret_key]).decode()
