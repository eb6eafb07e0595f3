"""Container images without a registry: Debian-made bases, the project's images, loaded into containerd.

No registry is reachable here, so every base is a root filesystem made by mmdebstrap from Debian
packages and imported into podman's storage (kept in the stack's cache); the project's images are
built from the unchanged Dockerfile with `PYTHON_IMAGE` pointing at the Python base. Each image is
keyed by a hash of everything that goes into it, so a change to `worker_runtime/` or `operator/` is
in the next image built and an unchanged tree builds nothing. Images reach the node's containerd by
`podman save` + `ctr import`; the kubelet's image GC thresholds keep them there.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from teststack import procs
from teststack.config import REPO_ROOT, StackConfig

SUITE = "bookworm"
TAG = "0.1.0"  # the chart's appVersion: the tag the chart and the examples name
PAUSE_IMAGE = "localhost/pause:3.10"
RUNTIME_IMAGE = f"localhost/conductor-worker-runtime:{TAG}"
OPERATOR_IMAGE = f"localhost/conductor-worker-operator:{TAG}"
DEMO_WORKERS_IMAGE = f"localhost/cwo-demo-workers:{TAG}"
TEST_WORKERS_IMAGE = f"localhost/cwo-sleep-workers:{TAG}"
# The get-inventory example of each SDK (examples/<lang>/): its image, and the base it is built on
# (None: FROM the runtime image). The others package an artifact built on the host by
# scripts/build-examples.sh, since no toolchain image can be pulled.
EXAMPLES = {"python": None, "go": "static", "java": "java", "javascript": "node"}
# SDK workers written as each SDK's README shows (no operator conventions): the sidecar's tests.
PLAIN = {"plain-go": "static", "plain-java": "java", "plain-javascript": "node"}


def step(what: str) -> None:
    """One line on stderr per build step (setup shows the latest one while it waits)."""
    print(f"[{time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


def example_image(lang: str) -> str:
    return f"localhost/cwo-example-{lang}:{TAG}"


# Files outside the Dockerfile's context that decide a project image's content.
_PROJECT_INPUTS = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "worker_runtime", "operator")
_SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")
# Documentation, man pages and locales are dropped from the bases: nothing in a container reads them.
_DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*")


@dataclass(frozen=True)
class Base:
    """A base image made from Debian packages (the stand-in for an image a registry would serve)."""

    name: str
    packages: tuple[str, ...]
    env: tuple[str, ...] = ()
    hook: str = ""  # a mmdebstrap customize hook, run with the root filesystem as "$1"
    essential_hook: str = ""  # run before the packages are installed


BASES = {
    # Equivalent to python:3.11-slim: Debian's Python 3.11 with pip in a venv at /opt/venv.
    "python": Base(
        f"localhost/cwo-base-python:{SUITE}",
        ("python3", "python3-venv", "ca-certificates"),
        ("PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"),
        'chroot "$1" python3 -m venv /opt/venv',
    ),
    "static": Base(f"localhost/cwo-base-static:{SUITE}", ("ca-certificates", "tzdata")),
    # The JRE's postinst writes a man page link: its directory must exist though man pages are excluded.
    "java": Base(
        f"localhost/cwo-base-java:{SUITE}",
        ("openjdk-17-jre-headless", "ca-certificates", "tzdata"),
        essential_hook='mkdir -p "$1/usr/share/man/man1"',
    ),
    "node": Base(f"localhost/cwo-base-node:{SUITE}", ("nodejs", "ca-certificates", "tzdata")),
}


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if not path:
        raise procs.StackError(f"{name} is missing: run `bash scripts/setup.sh` (apt-get install {package})")
    return path


class Podman:
    """podman with its storage in the stack's cache, and the settings this machine needs."""

    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.binary = _tool("podman", "podman")
        self.home = cfg.cache / "containers"
        self.home.mkdir(parents=True, exist_ok=True)
        conf = self.home / "containers.conf"
        # No CAP_SYS_RESOURCE here: podman's default ulimits fail ("error setting rlimit type 7");
        # these stay within the shell's hard limits.
        conf.write_text('[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n')
        storage = self.home / "storage.conf"
        storage.write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{self.home / "storage"}"\nrunroot = "{self.home / "run"}"\n'
        )
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage)}

    def run(self, *args: str, what: str, input: bytes | None = None) -> str:
        proc = subprocess.run(
            [self.binary, *args], env=self.env, capture_output=True, input=input, timeout=1800, check=False
        )
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.decode(errors="replace").splitlines()[-20:])
            raise procs.StackError(f"{what} failed (podman {args[0]}, exit {proc.returncode}):\n{tail}")
        return proc.stdout.decode()

    def exists(self, image: str) -> bool:
        return subprocess.run([self.binary, "image", "exists", image], env=self.env, check=False).returncode == 0

    def image_id(self, image: str) -> str:
        return self.run("image", "inspect", "--format", "{{.Id}}", image, what=f"inspecting {image}").strip()


def _hash_paths(root: Path, names: Iterable[str], extra: str = "") -> str:
    """A hash of the files under root/names (path and bytes), skipping caches; extra joins the key."""
    digest = hashlib.sha256(extra.encode())
    for name in names:
        path = root / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            if "__pycache__" in f.parts or f.suffix in (".pyc", ".pyo") or ".egg-info" in str(f):
                continue
            digest.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


class Images:
    """Builds what the node runs, each image only when its inputs changed, and loads it into containerd."""

    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.podman = Podman(cfg)
        self.stamps = cfg.cache / "images"
        self.stamps.mkdir(parents=True, exist_ok=True)

    def _stamp(self, image: str) -> Path:
        return self.stamps / (image.replace("/", "_").replace(":", "_") + ".key")

    def _fresh(self, image: str, key: str) -> bool:
        stamp = self._stamp(image)
        return stamp.exists() and stamp.read_text() == key and self.podman.exists(image)

    def _done(self, image: str, key: str) -> None:
        self._stamp(image).write_text(key)

    # -- bases -------------------------------------------------------------------------------------

    def base(self, flavor: str) -> str:
        """The Debian-made base image of a flavor (python, static, java, node); built once per recipe."""
        spec = BASES[flavor]
        key = hashlib.sha256(repr(spec).encode()).hexdigest()[:16]
        if self._fresh(spec.name, key):
            return spec.name
        mmdebstrap = _tool("mmdebstrap", "mmdebstrap")
        step(f"making the {flavor} base image from Debian packages ({spec.name})")
        with tempfile.TemporaryDirectory(prefix="cwo-base-") as tmp:
            rootfs = Path(tmp) / "rootfs.tar"
            argv = [mmdebstrap, "--variant=minbase", "--quiet", f"--include={','.join(spec.packages)}"]
            argv += [f"--dpkgopt=path-exclude={p}" for p in _DPKG_EXCLUDES]
            argv += ["--dpkgopt=path-include=/usr/share/locale/locale.alias"]
            if spec.essential_hook:
                argv.append(f"--essential-hook={spec.essential_hook}")
            if spec.hook:
                argv.append(f"--customize-hook={spec.hook}")
            argv += [SUITE, str(rootfs)]
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=1200, check=False)
            if proc.returncode != 0:
                tail = "\n".join(proc.stderr.splitlines()[-20:])
                raise procs.StackError(f"mmdebstrap of the {flavor} base failed (Debian's mirror reachable?):\n{tail}")
            changes = [arg for env in spec.env for arg in ("--change", f"ENV {env}")]
            self.podman.run("import", *changes, str(rootfs), spec.name, what=f"importing the {flavor} base")
        self._done(spec.name, key)
        return spec.name

    def pause(self) -> str:
        """Kubernetes' own pause program (from the k8s.io/kubernetes module), static, in a scratch image."""
        source = self.cfg.cache / "go" / "mod" / "k8s.io" / f"kubernetes@v{self.cfg.k8s_version}"
        pause_c = source / "build" / "pause" / "linux" / "pause.c"
        if not pause_c.is_file():
            raise procs.StackError(f"{pause_c} is missing: run `bash scripts/setup.sh` (downloads k8s.io/kubernetes)")
        key = _hash_paths(pause_c.parent, ["pause.c"])
        if self._fresh(PAUSE_IMAGE, key):
            return PAUSE_IMAGE
        cc = _tool("gcc", "gcc")
        with tempfile.TemporaryDirectory(prefix="cwo-pause-") as tmp:
            binary = Path(tmp) / "pause"
            subprocess.run(
                [cc, "-Os", "-static", "-Wall", "-DVERSION=v3.10-cwo", "-o", str(binary), str(pause_c)],
                check=True,
                capture_output=True,
            )
            tar = Path(tmp) / "pause.tar"
            subprocess.run(["tar", "-C", tmp, "-cf", str(tar), "pause"], check=True)
            self.podman.run(
                "import",
                "--change",
                'ENTRYPOINT ["/pause"]',
                "--change",
                "USER 65535:65535",
                str(tar),
                PAUSE_IMAGE,
                what="importing the pause image",
            )
        self._done(PAUSE_IMAGE, key)
        return PAUSE_IMAGE

    # -- the project's images ------------------------------------------------------------------------

    def _build(self, image: str, context: Path, key: str, args: list[str], what: str) -> bool:
        if self._fresh(image, key):
            return False
        step(what)
        mounts = ["-v", f"{_SYSTEM_CA}:{_SYSTEM_CA}:ro"] if _SYSTEM_CA.exists() else []
        # --network host: pip in the builder stage reaches the package index as the host does.
        # --layers=false: podman caches layers by default, and the cache key of a RUN step does not cover
        # what it bind-mounts from another stage: the final stages' `RUN --mount=...from=builder` kept the
        # wheels of the first build, and changed code never reached the images. The content key above
        # decides when to build; when it does, every step runs.
        self.podman.run(
            "build", "--pull=never", "--layers=false", "--network", "host", *mounts, *args, "-t", image, str(context),
            what=what,
        )  # fmt: skip
        self.podman.run("image", "prune", "--force", what="removing the build's intermediate images")
        self._done(image, key)
        return True

    def project(self) -> tuple[str, str]:
        """The worker-runtime and operator targets of the project's Dockerfile, on the Python base."""
        base = self.base("python")
        # "no-layer-cache": images built while podman's layer cache kept stale wheels get built again
        key = _hash_paths(REPO_ROOT, _PROJECT_INPUTS, self.podman.image_id(base) + "no-layer-cache")
        for target, image in (("worker-runtime", RUNTIME_IMAGE), ("operator", OPERATOR_IMAGE)):
            self._build(
                image,
                REPO_ROOT,
                key,
                ["--build-arg", f"PYTHON_IMAGE={base}", "--target", target, "-f", str(REPO_ROOT / "Dockerfile")],
                f"building the {target} image",
            )
        return RUNTIME_IMAGE, OPERATOR_IMAGE

    def _from_runtime(self, image: str, context: Path) -> str:
        """Workers shipped as users ship theirs: an image built FROM the runtime image."""
        runtime, _ = self.project()
        key = _hash_paths(context, sorted(p.name for p in context.iterdir()), self.podman.image_id(runtime))
        self._build(image, context, key, ["--build-arg", f"RUNTIME_IMAGE={runtime}"], f"building {image}")
        return image

    def demo_workers(self) -> str:
        return self._from_runtime(DEMO_WORKERS_IMAGE, REPO_ROOT / "examples" / "workers")

    def test_workers(self) -> str:
        """Sleeping workers whose task types come from the environment (tests and benchmarks)."""
        return self._from_runtime(TEST_WORKERS_IMAGE, REPO_ROOT / "tests" / "images" / "sleep-workers")

    def example(self, lang: str) -> str:
        """The get-inventory worker of one SDK, built from examples/<lang>/ when its sources changed (or a
        plain SDK worker from tests/images/<name>/)."""
        plain = lang in PLAIN
        image = example_image(lang)
        source = REPO_ROOT / "tests" / "images" / lang if plain else REPO_ROOT / "examples" / lang
        flavor = PLAIN[lang] if plain else EXAMPLES[lang]
        if flavor is None:
            return self._from_runtime(image, source)
        base = self.base(flavor)
        inputs = sorted(p.name for p in source.iterdir() if p.name not in ("node_modules", "target", ".gitignore"))
        key = _hash_paths(source, inputs, self.podman.image_id(base))
        if self._fresh(image, key):
            return image
        step(f"building the {lang} worker with its toolchain")
        proc = subprocess.run(
            ["bash", str(REPO_ROOT / "scripts" / "build-examples.sh"), lang],
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        if proc.returncode != 0:
            raise procs.StackError(f"building the {lang} example failed:\n{proc.stderr[-3000:]}")
        context = self.cfg.cache / "examples" / lang
        self._build(image, context, key, ["--build-arg", f"BASE_IMAGE={base}"], f"building {image}")
        return image

    def all(self, pause: bool = True) -> list[str]:
        """Every image the node runs (the SDK examples are built when a demo or test asks for them)."""
        return [*([self.pause()] if pause else []), *self.project(), self.demo_workers(), self.test_workers()]

    # -- into containerd -------------------------------------------------------------------------------

    def load(self, images: Iterable[str], ctr: list[str]) -> None:
        """Import images into containerd's k8s.io namespace unless it already has this exact one."""
        have = subprocess.run([*ctr, "images", "ls"], capture_output=True, text=True, check=True).stdout
        for image in images:
            digest = self.podman.image_id(image)
            loaded = self.stamps / (self._stamp(image).name + ".loaded")
            if image in have and loaded.exists() and loaded.read_text() == digest:
                continue
            with tempfile.TemporaryDirectory(prefix="cwo-load-") as tmp:
                archive = Path(tmp) / "image.tar"
                self.podman.run("save", "--format", "oci-archive", "-o", str(archive), image, what=f"saving {image}")
                name = image.rsplit(":", 1)[0]
                proc = subprocess.run(
                    [*ctr, "images", "import", "--base-name", name, "--digests", str(archive)],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if proc.returncode != 0:
                    raise procs.StackError(f"loading {image} into containerd failed: {proc.stderr.strip()}")
            loaded.write_text(digest)
