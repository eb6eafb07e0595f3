"""ConductorConnections on the real API server: a tenant cannot make the operator send a Secret elsewhere.

The tenant is a ServiceAccount that may create ConductorWorkers and read ConductorConnections, but may not
read Secrets nor create connections (as a namespace's users are when the chart's aggregated `edit` role is
not theirs). Its attempts to get the namespace's Orkes key out through the operator: an inline
`authSecretRef` with a URL of its choosing, a connection of its own, a worker pointing the operator at its
listener. The listener records every request the operator sends it: none carries the key.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from kubernetes import client

from helpers import wait_for

pytestmark = pytest.mark.kube

API = "conductor.io/v1alpha1"
CONDUCTOR = "http://127.0.0.1:18080/api"  # the operator runs on the host


class Listener:
    """An HTTP server that answers every request like an empty Conductor and records what it received."""

    def __init__(self) -> None:
        seen: list[dict] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode(errors="replace") if length else ""
                seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body})
                data = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def worker(name: str, conductor: dict) -> str:
    spec = {
        "conductor": conductor,
        "image": "example.invalid/workers:1",  # the pods never run: the operator's own requests are the point
        "tasks": [{"name": f"exfil_{uuid.uuid4().hex[:6]}"}],
        "autoscaling": {"enabled": True, "minReplicas": 0, "maxReplicas": 2, "pollingIntervalSeconds": 2},
    }
    return yaml.safe_dump({"apiVersion": API, "kind": "ConductorWorker", "metadata": {"name": name}, "spec": spec})


def connection(name: str, url: str, secret: str | None = None) -> str:
    spec: dict = {"serverUrl": url, **({"authSecretRef": {"name": secret}} if secret else {})}
    return yaml.safe_dump({"apiVersion": API, "kind": "ConductorConnection", "metadata": {"name": name}, "spec": spec})


def ready(kubectl, namespace: str, name: str) -> dict | None:
    obj = json.loads(kubectl("get", "conductorconnection", name, "-n", namespace, "-o", "json").stdout)
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), None)


def test_a_tenant_cannot_send_the_namespaces_secret_anywhere(operator, kubectl, k8s_api, namespace):
    key_id, key_secret = f"id-{uuid.uuid4().hex}", f"s3cr3t-{uuid.uuid4().hex}"
    core, rbac = client.CoreV1Api(k8s_api), client.RbacAuthorizationV1Api(k8s_api)
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="orkes"), string_data={"keyId": key_id, "keySecret": key_secret}
        ),
    )
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="tenant"))
    )
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="tenant"),
            rules=[
                client.V1PolicyRule(
                    api_groups=["conductor.io"],
                    resources=["conductorworkers"],
                    verbs=["get", "list", "watch", "create", "update", "patch", "delete"],
                ),
                client.V1PolicyRule(
                    api_groups=["conductor.io"], resources=["conductorconnections"], verbs=["get", "list"]
                ),
            ],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="tenant"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="tenant"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="tenant", namespace=namespace)],
        ),
    )
    tenant = ("--as", f"system:serviceaccount:{namespace}:tenant", "-n", namespace)
    assert kubectl("auth", "can-i", "get", "secrets", *tenant, check=False).stdout.strip() == "no"
    assert kubectl("auth", "can-i", "create", "conductorworkers", *tenant, check=False).stdout.strip() == "yes"

    # The namespace's admin: a connection to the real server with the key, one to a closed port.
    kubectl("apply", "-n", namespace, "-f", "-", input=connection("prod", CONDUCTOR, "orkes"))
    kubectl("apply", "-n", namespace, "-f", "-", input=connection("closed", "http://127.0.0.1:9/api"))
    prod = wait_for(lambda: ready(kubectl, namespace, "prod"), 30, "the connection checked")
    assert (prod["status"], prod["reason"]) == ("True", "Reachable"), prod
    closed = wait_for(lambda: ready(kubectl, namespace, "closed"), 30, "the closed connection checked")
    assert (closed["status"], closed["reason"]) == ("False", "Unreachable"), closed
    listing = kubectl("get", "conductorconnections", "-n", namespace).stdout
    assert "Reachable" in listing and "Unreachable" in listing and "orkes" in listing

    listener = Listener()
    try:
        # 1. The old way: the listener's URL and the namespace's Secret in the worker. Refused.
        inline = worker("inline", {"serverUrl": listener.url, "authSecretRef": {"name": "orkes"}})
        refused = kubectl("apply", "-f", "-", *tenant, input=inline, check=False)
        assert refused.returncode != 0 and "authSecretRef is set on a ConductorConnection" in refused.stderr
        # 2. A connection of its own to the listener with the Secret. Forbidden.
        own = kubectl("apply", "-f", "-", *tenant, input=connection("mine", listener.url, "orkes"), check=False)
        assert own.returncode != 0 and "forbidden" in own.stderr.lower(), own.stderr
        # 3. The operator pointed at the listener without a Secret: it asks, with no credentials.
        kubectl("apply", "-f", "-", *tenant, input=worker("thief", {"serverUrl": listener.url}))
        wait_for(lambda: any("/tasks/queue" in r["path"] for r in listener.seen), 30, "the operator asked the listener")
        # 4. The admin's connection: allowed, and its Secret reaches only its own server (and the pods, by reference).
        kubectl("apply", "-f", "-", *tenant, input=worker("legit", {"connectionRef": {"name": "prod"}}))
        dep = wait_for(
            lambda: next((d for d in client.AppsV1Api(k8s_api).list_namespaced_deployment(namespace).items
                          if d.metadata.name == "legit"), None),
            30, "the Deployment of the worker using the connection",
        )  # fmt: skip
        env = {e.name: e for e in dep.spec.template.spec.containers[0].env}
        assert env["CONDUCTOR_SERVER_URL"].value == CONDUCTOR
        assert env["CONDUCTOR_AUTH_SECRET"].value_from.secret_key_ref.name == "orkes"
        wait_for(lambda: len(listener.seen) >= 3, 30, "more requests from the operator to the listener")
    finally:
        listener.close()
    leaked = [r for r in listener.seen if key_id in json.dumps(r) or key_secret in json.dumps(r)]
    assert leaked == [], f"the key reached the listener: {leaked[:1]}"
    encoded = base64.b64encode(f"{key_id}:{key_secret}".encode()).decode()
    assert not any(encoded in json.dumps(r) for r in listener.seen)
    assert not any(r["path"].endswith("/token") for r in listener.seen), "the operator asked the listener for a token"
    assert not any("X-Authorization" in r["headers"] or "Authorization" in r["headers"] for r in listener.seen)
