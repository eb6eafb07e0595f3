"""Thin Kubernetes API helpers (sync, for kopf's thread-pool handlers and daemons).

Why raw requests instead of the typed APIs: server-side apply of arbitrary kinds (a ServiceMonitor has
no typed API) with one code path, and merge patches without the client's model round trips.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from conductor_operator.builders import GROUP, MANAGER, PLURAL, VERSION

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
}


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def object_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{_PLURALS[kind]}"
    return f"{path}/{name}" if name else path


class Kube:
    """One ApiClient shared by all handler threads (urllib3 pools are thread-safe)."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api = api_client
        self._crd_cache: dict[str, tuple[float, bool]] = {}

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str | None = None,
        query: list[tuple[str, str]] | None = None,
    ) -> Any:
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

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> Any:
        path = object_path(f"{GROUP}/{VERSION}", "ConductorWorker", namespace, name) + "/status"
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

    def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's data (base64 values, decoded by the caller only when needed), None if absent."""
        secret = self.get("v1", "Secret", namespace, name)
        return None if secret is None else dict(secret.get("data") or {})

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
    return kube.secret_data(namespace, ref["name"]) if ref else None


def conductor_credentials(kube: Kube, spec: dict[str, Any], namespace: str) -> tuple[str | None, str | None]:
    """(key id, key secret) for Conductor from the referenced Secret, (None, None) without a reference.

    Raises KeyError when the Secret or one of its keys is missing (the queue depth is then unavailable,
    and the Degraded condition says which)."""
    ref = (spec.get("conductor") or {}).get("authSecretRef")
    if not ref:
        return None, None
    data = kube.secret_data(namespace, ref["name"])
    if data is None:
        raise KeyError(f"Secret {ref['name']!r} not found")
    id_key, secret_key = ref.get("keyIdKey") or "keyId", ref.get("keySecretKey") or "keySecret"
    return base64.b64decode(data[id_key]).decode(), base64.b64decode(data[secret_key]).decode()
