"""Shared fixtures: a real redis-server on a free loopback port, started by the test run."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def open_dir():
    """A root-owned 0755 directory the sandbox user can enter (unlike ``tmp_path``), outside /tmp,
    /var/tmp and /dev/shm, which the sandbox replaces by private mounts where it can."""
    path = Path(tempfile.mkdtemp(prefix=".fleet-hostile-", dir=ROOT))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A throwaway redis-server (Debian's package) on 127.0.0.1; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed; the README's test command installs it")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(workdir), "--save", "",
         "--appendonly", "no", "--maxmemory-policy", "noeviction"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("redis-server did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def fleet_env(redis_server, tmp_path, monkeypatch):
    """FLEET_* settings for a test fleet on the test Redis, with a private data dir and prefix, and
    no input variants (tests/test_variants.py covers them)."""
    redis.Redis.from_url(redis_server).flushdb()
    env = {"FLEET_REDIS_URL": redis_server, "FLEET_DATA_DIR": str(tmp_path / "data"),
           "FLEET_ENGINE_MAX_VARIANTS": "0"}  # scripted scenarios keep what their replies hold
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def scripted_fleet(fleet_env):
    """A factory: ``with scripted_fleet(backend) as client`` runs the project's Celery app on the
    test Redis with one in-process agent (``agent-t1``) on ``backend``, and yields a Client."""
    from contextlib import contextmanager

    from celery.contrib.testing.worker import start_worker

    from fleet import config
    from fleet.celeryconf import GENERATE_QUEUE, MAINTENANCE_QUEUE, celery_config
    from fleet.client import Client
    from workers import agent as agent_mod
    from workers.app import app

    @contextmanager
    def run(backend):
        settings = config.load()
        app.conf.update(**celery_config(settings))
        agent_mod.install(agent_mod.Agent.start("agent-t1@test", backend=backend))
        try:
            with start_worker(app, pool="solo", perform_ping_check=False, queues=[GENERATE_QUEUE, MAINTENANCE_QUEUE],
                              hostname="agent-t1@test",
                              shutdown_timeout=30):
                yield Client(settings)
        finally:
            agent_mod.install(None)

    return run


SANDBOX_TARGET = "def f(x):\n    if x > 0:\n        return 1\n    return -1\n"


@pytest.fixture
def make_sandbox():
    """Sandboxes over the module ``m`` (``SANDBOX_TARGET``), closed after the test."""
    from fleet.sandbox import Limits, Sandbox

    made: list[Sandbox] = []

    def make(limits: Limits = Limits()) -> Sandbox:
        made.append(Sandbox({"m.py": SANDBOX_TARGET}, "m.py", limits))
        return made[-1]

    yield make
    for sb in made:
        sb.close()
