"""A local fleet on one host: the Procfile's processes under honcho, started and stopped.

``fleet up`` runs ``honcho start -c worker=N`` detached (own session, log and pid file in
``<data_dir>/run``) and waits until Redis answers and N agents answer a ping. ``fleet down``
sends SIGTERM to that session (honcho forwards it; agents shut down softly and requeue their
job) and waits, then SIGKILLs what is left. The Procfile entries call ``fleet run-redis``,
``fleet run-agent``, ``fleet run-beat`` and ``fleet run-flower``, which build the real command
lines from the settings and exec them.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import redis

from fleet.acl import apply_from_settings, prepare_secrets
from fleet.config import CONFIG_DIR, Settings
from fleet.errors import ConfigError, FleetError, FleetUnreachable
from fleet.store import connect

ROOT = CONFIG_DIR.parent
HONCHO_BASE_PORT = 5000


def run_dir(settings: Settings) -> Path:
    path = settings.data_dir / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def flower_auth(settings: Settings, *, create: bool) -> str:
    """Flower's ``user:password``: configured, else stored in ``<data_dir>/flower.auth`` (made once)."""
    if settings["flower"]["basic_auth"]:
        return settings["flower"]["basic_auth"]
    path = settings.data_dir / "flower.auth"
    if path.exists():
        return path.read_text().strip()
    if settings["flower"]["require_auth"] or not create:
        raise ConfigError("Flower needs basic auth: set FLEET_FLOWER_BASIC_AUTH=user:password")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"fleet:{secrets.token_urlsafe(12)}\n")
    path.chmod(0o600)
    return path.read_text().strip()


def _pid(settings: Settings) -> int | None:
    try:
        pid = int((run_dir(settings) / "honcho.pid").read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _exec(argv: list[str], env: dict[str, str] | None = None) -> None:
    os.execvpe(argv[0], argv, {**os.environ, **(env or {})})


def exec_redis(settings: Settings) -> None:
    """Exec redis-server with config/redis.conf on the host/port of ``redis.url``."""
    url = urlsplit(settings["redis"]["url"])
    binary = shutil.which("redis-server")
    if binary is None:
        raise FleetError("redis-server is not installed: `apt-get install redis-server`", )
    _exec([binary, str(CONFIG_DIR / "redis.conf"), "--bind", url.hostname or "127.0.0.1",
           "--port", str(url.port or 6379), "--dir", str(run_dir(settings))])


def honcho_agent_id() -> str | None:
    """``agent-<k>`` for honcho's k-th worker (honcho gives it PORT = base + 100·entry + k − 1)."""
    port = os.environ.get("PORT")
    return f"agent-{(int(port) - HONCHO_BASE_PORT) % 100 + 1}" if port and port.isdigit() else None


def exec_agent(settings: Settings, agent_id: str | None) -> None:
    """Exec one agent: a prefork Celery worker with one process (one model) on both queues."""
    name = agent_id or settings["agent"]["id"] or honcho_agent_id() or "agent-1"
    _exec([sys.executable, "-m", "celery", "-A", "workers.app", "worker", "--pool", "prefork",
           "--concurrency", "1", "-Q", "generate-tests,maintenance", "-n", f"{name}@%h", "-E",
           "--loglevel", "INFO"], {"REMAP_SIGTERM": "SIGQUIT"})


def exec_beat(settings: Settings) -> None:
    _exec([sys.executable, "-m", "celery", "-A", "workers.app", "beat", "--loglevel", "INFO",
           "-s", str(run_dir(settings) / "celerybeat-schedule")])


def exec_flower(settings: Settings) -> None:
    """Exec Flower behind basic auth (passed in the environment, not on the command line)."""
    fl = settings["flower"]
    argv = [sys.executable, "-m", "celery", "-A", "workers.app", "flower", f"--address={fl['address']}",
            f"--port={fl['port']}", "--purge_offline_workers=300"]
    if fl["persistent"]:
        argv += ["--persistent=True", f"--db={settings.data_dir / 'flower.db'}"]
    _exec(argv, {"FLOWER_BASIC_AUTH": flower_auth(settings, create=True)})


def up(settings: Settings, agents: int, say) -> None:
    """Start the local fleet unless it runs; wait for Redis and ``agents`` agents."""
    names = [f"agent-{k}" for k in range(1, agents + 1)]
    acl_on = settings["acl"]["enabled"]
    if _pid(settings):
        say(f"fleet already running (honcho pid {_pid(settings)}); `fleet down` stops it")
    else:
        flower_auth(settings, create=True)
        if acl_on:
            prepare_secrets(settings, names)
        log = run_dir(settings) / "fleet.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "honcho", "start", "-f", str(ROOT / "Procfile"), "-d", str(ROOT),
                 "-p", str(HONCHO_BASE_PORT), "-c", f"worker={agents}"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
            )
        (run_dir(settings) / "honcho.pid").write_text(str(proc.pid))
        say(f"starting Redis, {agents} agent(s), beat and Flower (log: {log})")
    if acl_on:
        users = apply_from_settings(_wait_redis(settings), settings, names)
        say(f"Redis ACL users: {', '.join(users)}")
    wait_ready(settings, agents, say)


def _wait_redis(settings: Settings) -> redis.Redis:
    """An admin connection to the fleet's Redis once it answers (within local.start_timeout)."""
    deadline = time.monotonic() + settings["local"]["start_timeout"]
    while True:
        try:
            return connect(settings["redis"]["url"], settings["redis"]["connect_timeout"])
        except FleetUnreachable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def wait_ready(settings: Settings, agents: int, say) -> None:
    from fleet.client import Client

    deadline = time.monotonic() + settings["local"]["start_timeout"]
    client = None
    while time.monotonic() < deadline:
        try:
            client = client or Client(settings)
            online = client.status(ping_timeout=1.0)["workers"]
            if len(online) >= agents:
                say(f"fleet ready: {', '.join(online)}")
                return
        except FleetUnreachable:
            pass
        if _pid(settings) is None:
            raise FleetError(f"the local fleet exited while starting; see {run_dir(settings) / 'fleet.log'}")
        time.sleep(1.0)
    raise FleetUnreachable(f"the fleet did not come up within {settings['local']['start_timeout']}s; "
                           f"see {run_dir(settings) / 'fleet.log'}")


def down(settings: Settings, say, timeout: float = 120) -> bool:
    """Stop the local fleet; True if one was running."""
    pid = _pid(settings)
    if pid is None:
        say("no local fleet is running")
        return False
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid(settings):
        time.sleep(0.5)
    if _pid(settings):
        os.killpg(pid, signal.SIGKILL)
    (run_dir(settings) / "honcho.pid").unlink(missing_ok=True)
    say("fleet stopped")
    return True
