"""The real Conductor OSS server from its boot jar, in memory or backed by Debian's redis-server."""

from __future__ import annotations

import shutil
import signal

import requests

from teststack import procs
from teststack.config import StackConfig

NAME = "conductor"
REDIS_NAME = "redis"
REDIS_PORT = 16379

_COMMON = {
    "conductor.indexing.enabled": "false",
    # The kitchen-sink sample workflows add queues the tests and the demo do not want.
    "loadSample": "false",
    "conductor.app.workflow-execution-lock-enabled": "false",
}


def properties(cfg: StackConfig, redis: bool) -> dict[str, str]:
    props = {"server.port": str(cfg.conductor_port), "server.address": "127.0.0.1", **_COMMON}
    if redis:
        props |= {
            "conductor.db.type": "redis_standalone",
            "conductor.queue.type": "redis_standalone",
            "conductor.redis.hosts": f"127.0.0.1:{REDIS_PORT}:us-east-1c",
        }
    else:
        props |= {"conductor.db.type": "memory", "conductor.queue.type": "memory"}
    return props


def healthy(cfg: StackConfig) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{cfg.conductor_port}/health", timeout=2).ok
    except requests.RequestException:
        return False


def start_redis(cfg: StackConfig) -> None:
    if procs.running_pid(cfg.run_dir, REDIS_NAME):
        return
    server = shutil.which("redis-server")
    if not server:
        raise procs.StackError("redis-server is missing: run `bash scripts/setup.sh` (apt-get install redis-server)")
    data = cfg.run_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    argv = [
        server,
        "--port",
        str(REDIS_PORT),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data),
        "--save",
        "",
        "--appendonly",
        "yes",
    ]
    pid = procs.start(cfg.run_dir, REDIS_NAME, argv)
    cli = shutil.which("redis-cli") or "redis-cli"

    def ping() -> bool:
        import subprocess

        out = subprocess.run([cli, "-p", str(REDIS_PORT), "ping"], capture_output=True, text=True, timeout=2)
        return out.stdout.strip() == "PONG"

    procs.wait_until(REDIS_NAME, ping, 20, cfg.run_dir, pid)


def start(cfg: StackConfig, redis: bool = False, timeout: float = 180, name: str = NAME) -> None:
    """Start the server (unless one already answers on the port) and wait for /health.

    A second server (e.g. Redis-backed, for restart tests) takes another `name` and a cfg whose
    conductor_port differs (dataclasses.replace).
    """
    if healthy(cfg):
        return
    if not cfg.conductor_jar.is_file():
        raise procs.StackError(f"Conductor server jar missing at {cfg.conductor_jar}: run `bash scripts/setup.sh`")
    java = shutil.which("java")
    if not java:
        raise procs.StackError("java (17) is missing: run `bash scripts/setup.sh`")
    if redis:
        start_redis(cfg)
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    props_file = cfg.run_dir / f"{name}.properties"
    props_file.write_text("".join(f"{k}={v}\n" for k, v in properties(cfg, redis).items()))
    argv = [java, "-Xms256m", "-Xmx1g", "-XX:+UseSerialGC", "-jar", str(cfg.conductor_jar)]
    pid = procs.start(cfg.run_dir, name, argv, env={"CONDUCTOR_CONFIG_FILE": str(props_file)})
    procs.wait_until(name, lambda: healthy(cfg), timeout, cfg.run_dir, pid)


def kill(cfg: StackConfig, name: str = NAME) -> None:
    """SIGKILL the server, as a crash would (Redis keeps its state)."""
    procs.stop(cfg.run_dir, name, grace=5, sig=signal.SIGKILL)


def stop(cfg: StackConfig, name: str = NAME, with_redis: bool = True) -> None:
    procs.stop(cfg.run_dir, name, grace=15)
    if with_redis:
        procs.stop(cfg.run_dir, REDIS_NAME)
