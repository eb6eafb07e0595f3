"""`scripts/stack.sh load`: a user's own image, built with podman or saved as an archive, runs on the node.

The image is built FROM the runtime image with one module (as README's walkthrough does), loaded by its
reference and, tagged anew, from a docker-archive file; a pod with imagePullPolicy Never runs each.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from kubernetes import client

from helpers import wait_for
from teststack import images
from teststack.config import REPO_ROOT, StackConfig

pytestmark = [pytest.mark.kube]


def stack_sh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "stack.py"), *args], capture_output=True, text=True, check=False
    )


def run_pod(core: client.CoreV1Api, namespace: str, image: str) -> str:
    name = f"mine-{uuid.uuid4().hex[:6]}"
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            restart_policy="Never",
            containers=[
                client.V1Container(
                    name="c",
                    image=image,
                    image_pull_policy="Never",
                    command=["python", "-c", "import hello; print(hello.GREETING)"],
                    env=[client.V1EnvVar(name="PYTHONPATH", value="/workers")],
                )
            ],
        ),
    )
    core.create_namespaced_pod(namespace, pod)
    wait_for(
        lambda: core.read_namespaced_pod(name, namespace).status.phase in ("Succeeded", "Failed"), 60, f"pod {name}"
    )
    return core.read_namespaced_pod_log(name, namespace)


def test_an_image_and_an_archive_load_into_the_node_and_run(
    stack: StackConfig, node, k8s_api, namespace, tmp_path: Path
):
    podman = images.Podman(stack)
    tag = uuid.uuid4().hex[:6]
    (tmp_path / "hello.py").write_text(f'GREETING = "hello from {tag}"\n')
    (tmp_path / "Dockerfile").write_text(f"FROM {images.RUNTIME_IMAGE}\nCOPY hello.py /workers/hello.py\n")
    image = f"localhost/cwo-load-test:{tag}"
    podman.run("build", "--pull=never", "--network", "none", "-t", image, str(tmp_path), what="building the test image")
    core = client.CoreV1Api(k8s_api)
    try:
        loaded = stack_sh("load", image)
        assert loaded.returncode == 0, loaded.stderr
        assert loaded.stdout.split() == [image]
        assert run_pod(core, namespace, image).strip() == f"hello from {tag}"

        archive = tmp_path / "image.tar"
        other = f"localhost/cwo-load-archive:{tag}"
        podman.run("tag", image, other, what="tagging")
        podman.run("save", "--format", "docker-archive", "-o", str(archive), other, what="saving an archive")
        loaded = stack_sh("load", str(archive))
        assert loaded.returncode == 0, loaded.stderr
        assert other in loaded.stdout.split()
        assert run_pod(core, namespace, other).strip() == f"hello from {tag}"

        missing = stack_sh("load", "localhost/no-such-image:0")
        assert missing.returncode == 1 and "no image 'localhost/no-such-image:0' found" in missing.stderr
    finally:
        for ref in (image, f"localhost/cwo-load-archive:{tag}"):
            subprocess.run([podman.binary, "rmi", "-f", ref], env=podman.env, capture_output=True, check=False)
