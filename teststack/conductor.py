"""The real Conductor OSS server from its boot jar, backed by Debian's redis-server (or in memory).

Redis is the default: the in-memory queue of Conductor OSS 3.21.14 (dyno-queues on a mock Redis)
breaks under concurrent pollers from several processes ("cannot add ... to the unack shard",
tasks left SCHEDULED and never handed out), which is exactly what the operator's pods do.
"""

from __future__ import annotations

import shutil
import signal
import subprocess

import requests

from teststack import procs
from teststack.config import StackConfig

NAME = "conductor"

_COMMON = {
    "conductor.indexing.enabled": "false",
    # The kitchen-sink sample workflows add queues the tests and the demo do not want.
    "loadSample": "false",
    "conductor.app.workflow-execution-lock-enabled": "false",
}


def redis_port(cfg: StackConfig) -> int:
    """Each server has its own redis-server, 1000 ports above it."""
    return cfg.conductor_port + 1000


def properties(cfg: StackConfig, redis: bool) -> dict[str, str]:
    props = {"server.port": str(cfg.conductor_port), "server.address": "127.0.0.1", **_COMMON}
    if redis:
        props |= {
            "conductor.db.type": "redis_standalone",
            "conductor.queue.type": "redis_standalone",
            "conductor.redis.hosts": f"127.0.0.1:{redis_port(cfg)}:us-east-1c",
            # Two decides of one workflow must not interleave: without the lock a task completed
            # through update-v2 races its workflow's first decide and the workflow stays RUNNING
            # with its task COMPLETED. 3.21.14's in-JVM `local_only` lock throws
            # IllegalMonitorStateException on release, so the lock lives in the same redis-server.
            "conductor.app.workflow-execution-lock-enabled": "true",
            "conductor.workflow-execution-lock.type": "redis",
            "conductor.redis-lock.serverAddress": f"redis://127.0.0.1:{redis_port(cfg)}",
        }
    else:
        props |= {"conductor.db.type": "memory", "conductor.queue.type": "memory"}
    return props


def healthy(cfg: StackConfig) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{cfg.conductor_port}/health", timeout=2).ok
    except requests.RequestException:
        return False


def start_redis(cfg: StackConfig, name: str) -> None:
    """A fresh redis-server for this Conductor server; it outlives a server crash (restart tests)."""
    redis_name = f"redis-for-{name}"
    if procs.running_pid(cfg.run_dir, redis_name):
        return
    server = shutil.which("redis-server")
    if not server:
        raise procs.StackError("redis-server is missing: run `bash scripts/setup.sh` (apt-get install redis-server)")
    data = cfg.run_dir / redis_name
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    port = str(redis_port(cfg))
    argv = [server, "--port", port, "--bind", "127.0.0.1", "--dir", str(data), "--save", "", "--appendonly", "no"]
    pid = procs.start(cfg.run_dir, redis_name, argv)
    cli = shutil.which("redis-cli") or "redis-cli"

    def ping() -> bool:
        out = subprocess.run([cli, "-p", port, "ping"], capture_output=True, text=True, timeout=2)
        return out.stdout.strip() == "PONG"

    procs.wait_until(redis_name, ping, 20, cfg.run_dir, pid)


def launch(cfg: StackConfig, redis: bool = True, name: str = NAME) -> int | None:
    """Start the server's JVM without waiting for it; returns its pid (None if one already answers).

    Spring Boot takes most of `stack.sh up`, so `up` launches it first and waits after the
    control plane and the node are up (`wait_healthy`).
    """
    if healthy(cfg):
        return None
    if not cfg.conductor_jar.is_file():
        raise procs.StackError(f"Conductor server jar missing at {cfg.conductor_jar}: run `bash scripts/setup.sh`")
    java = shutil.which("java")
    if not java:
        raise procs.StackError("java (17) is missing: run `bash scripts/setup.sh`")
    if redis:
        start_redis(cfg, name)
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    props_file = cfg.run_dir / f"{name}.properties"
    props_file.write_text("".join(f"{k}={v}\n" for k, v in properties(cfg, redis).items()))
    argv = [java, "-Xms256m", "-Xmx1g", "-XX:+UseSerialGC", "-jar", str(cfg.conductor_jar)]
    return procs.start(cfg.run_dir, name, argv, env={"CONDUCTOR_CONFIG_FILE": str(props_file)})


def wait_healthy(cfg: StackConfig, pid: int | None, timeout: float = 180, name: str = NAME) -> None:
    procs.wait_until(name, lambda: healthy(cfg), timeout, cfg.run_dir, pid)


def start(cfg: StackConfig, redis: bool = True, timeout: float = 180, name: str = NAME) -> None:
    """Start the server (unless one already answers on the port) and wait for /health.

    A second server (e.g. for restart tests) takes another `name` and a cfg whose conductor_port
    differs (dataclasses.replace).
    """
    wait_healthy(cfg, launch(cfg, redis, name), timeout, name)


def kill(cfg: StackConfig, name: str = NAME) -> None:
    """SIGKILL the server, as a crash would (its redis-server keeps the state)."""
    procs.stop(cfg.run_dir, name, grace=5, sig=signal.SIGKILL)


def stop(cfg: StackConfig, name: str = NAME, with_redis: bool = True) -> None:
    procs.stop(cfg.run_dir, name, grace=15)
    if with_redis:
        procs.stop(cfg.run_dir, f"redis-for-{name}")
