"""Session fixtures that start the real servers a test needs (and stop what they started).

A missing component fails the test loudly with how to get it; nothing is skipped.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from teststack import conductor, kube, procs
from teststack import node as real_node
from teststack.config import REPO_ROOT, StackConfig, load


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "runs_last: takes the whole stack down; ordered after every other test")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("runs_last") is not None)


@pytest.fixture(scope="session")
def stack() -> StackConfig:
    return load()


def _start_or_fail(start, *args, **kwargs):
    try:
        return start(*args, **kwargs)
    except procs.StackError as exc:
        pytest.fail(f"local stack component unavailable: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def conductor_url(stack: StackConfig) -> Iterator[str]:
    """The real Conductor OSS server (in memory), reused when `python -m teststack up` runs it."""
    started = not conductor.healthy(stack)
    _start_or_fail(conductor.start, stack)
    yield stack.conductor_url
    if started:
        conductor.stop(stack)


@pytest.fixture(scope="session")
def conductor_client(conductor_url: str):
    from worker_runtime.client import ConductorClient

    client = ConductorClient(conductor_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def kubeconfig(stack: StackConfig) -> Iterator[Path]:
    """The real kube-apiserver + kube-controller-manager on loopback (RBAC on)."""
    started = not kube.healthy(stack)
    path = _start_or_fail(kube.start, stack)
    os.environ["KUBECONFIG"] = str(path)
    yield path
    if started:
        kube.stop(stack)


@pytest.fixture(scope="session")
def k8s_api(kubeconfig: Path):
    from kubernetes import config

    api = config.new_client_from_config(config_file=str(kubeconfig))
    yield api
    api.close()


@pytest.fixture(scope="session")
def kubectl(stack: StackConfig, kubeconfig: Path):
    """Run kubectl against the local API server; returns CompletedProcess (check=True unless told)."""
    if not stack.kubectl.is_file():
        pytest.fail(f"kubectl missing at {stack.kubectl}: run `bash scripts/setup.sh`", pytrace=False)

    def run(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(stack.kubectl), f"--kubeconfig={kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=check,
            input=input,
            timeout=120,
        )

    return run


@pytest.fixture
def namespace(k8s_api) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    from kubernetes import client

    core = client.CoreV1Api(k8s_api)
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def node(stack: StackConfig, kubeconfig: Path) -> Iterator[str]:
    """The real node: kubelet, containerd and kube-scheduler, with the project's images loaded.

    Pods of the worker and operator images run as real containers on the stack's bridge; they reach
    Conductor at `stack.pod_conductor_url` and the API server through the `kubernetes` Service.
    """
    started = not real_node.healthy(stack)
    _start_or_fail(real_node.start, stack, kubeconfig)
    yield real_node.NODE_NAME
    if started:
        real_node.stop(stack)


@pytest.fixture(scope="module")
def crd(kubectl) -> None:
    """The ConductorWorker and ConductorConnection CRDs of this checkout, applied and Established."""
    kubectl("apply", "-f", str(REPO_ROOT / "crds" / "conductorworker.yaml"))
    kubectl("apply", "-f", str(REPO_ROOT / "crds" / "conductorconnection.yaml"))
    for name in ("conductorworkers", "conductorconnections"):
        kubectl("wait", "--for=condition=Established", f"crd/{name}.conductor.io", "--timeout=30s")


@pytest.fixture
def operator(kubeconfig: Path, crd, namespace: str, kubectl, tmp_path: Path):
    """The operator as a process of this checkout, watching the test's namespace; at the end the
    ConductorWorkers are deleted while it runs (its finalizer), then it stops and its log is shown."""
    from teststack.operator_process import OperatorProcess

    op = OperatorProcess(kubeconfig, [namespace], tmp_path / "operator.log").start()
    yield op
    kubectl("delete", "conductorworkers", "--all", "-n", namespace, "--timeout=90s", check=False)
    op.stop()
    print(op.log_tail(120))
