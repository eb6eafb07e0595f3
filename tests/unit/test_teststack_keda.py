"""KEDA's registration on the local stack: what the API server needs to reach the adapter, without a
cluster (the real check is bench/keda_smoke.py, run by hand: KEDA is built for benchmarks only)."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import pytest

from teststack import keda, netsetup, procs
from teststack.config import load

IP_OUTPUT = (
    "4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever preferred_lft forever\n"
    "5: cwo0    inet 10.89.0.1/16 scope global cwo0\\       valid_lft forever preferred_lft forever\n"
)


def test_the_adapter_prefers_the_bridge_then_any_global_address() -> None:
    assert keda.pick_address(IP_OUTPUT) == netsetup.BRIDGE_IP
    assert keda.pick_address(IP_OUTPUT.splitlines()[0]) == "192.0.2.2"
    with pytest.raises(procs.StackError, match="non-loopback"):
        keda.pick_address("")


def test_two_stacks_get_distinct_keda_ports() -> None:
    cfg = load()
    mine, other = keda.Ports.of(cfg), keda.Ports.of(dataclasses.replace(cfg, apiserver_port=cfg.apiserver_port + 10000))
    ports = dataclasses.astuple(mine)
    assert len(set(ports)) == 5
    assert not set(ports) & set(dataclasses.astuple(other))
    assert cfg.apiserver_port not in ports and cfg.etcd_port not in ports


def test_registration_routes_the_apiservice_to_the_adapter(tmp_path: Path) -> None:
    cfg = dataclasses.replace(load(), cache=tmp_path)
    (cfg.run_dir / "pki").mkdir(parents=True)
    (cfg.run_dir / "pki" / "ca.crt").write_bytes(b"CA PEM")
    ports = keda.Ports.of(cfg)
    ns, svc, eps, api = keda._registration(cfg, "10.89.0.1", ports)
    assert ns == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "keda"}}
    assert (svc["kind"], svc["metadata"]["namespace"], svc["metadata"]["name"]) == ("Service", "keda", keda.SERVICE)
    assert "selector" not in svc["spec"]  # no controller may rewrite the hand-written EndpointSlice
    (port,) = svc["spec"]["ports"]
    assert port["port"] == 443
    # The aggregator finds the endpoint port by the Service port's name and connects to the address.
    assert eps["apiVersion"] == "discovery.k8s.io/v1"
    assert eps["metadata"]["labels"]["kubernetes.io/service-name"] == keda.SERVICE
    assert eps["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] != "endpointslice-controller.k8s.io"
    assert eps["ports"] == [{"name": port["name"], "port": ports.adapter, "protocol": "TCP"}]
    assert eps["endpoints"] == [{"addresses": ["10.89.0.1"], "conditions": {"ready": True}}]
    assert api["metadata"]["name"] == "v1beta1.external.metrics.k8s.io"
    assert api["spec"]["service"] == {"name": keda.SERVICE, "namespace": "keda", "port": 443}
    assert (api["spec"]["group"], api["spec"]["version"]) == ("external.metrics.k8s.io", "v1beta1")
    assert base64.b64decode(api["spec"]["caBundle"]) == b"CA PEM"
    assert "insecureSkipTLSVerify" not in api["spec"]


def test_both_processes_share_the_grpc_port_and_the_certificates(tmp_path: Path) -> None:
    ports = keda.Ports.of(load())
    operator = keda._operator_argv(tmp_path / "keda-operator", tmp_path, ports)
    adapter = keda._adapter_argv(tmp_path / "keda-adapter", tmp_path, ports, "10.89.0.1", tmp_path / "kubeconfig")
    assert f"--metrics-service-bind-address=127.0.0.1:{ports.grpc}" in operator
    assert f"--metrics-service-address=127.0.0.1:{ports.grpc}" in adapter
    assert f"--cert-dir={tmp_path}" in operator and f"--cert-dir={tmp_path}" in adapter
    assert "--bind-address=10.89.0.1" in adapter and f"--secure-port={ports.adapter}" in adapter
    for flag in ("--lister-kubeconfig", "--authentication-kubeconfig", "--authorization-kubeconfig"):
        assert f"{flag}={tmp_path / 'kubeconfig'}" in adapter
    assert not any(a.startswith("--enable-cert-rotation") for a in operator)  # the stack's CA signs instead
