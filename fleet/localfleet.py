"""A local fleet on one host: Redis, agents, beat and Flower under supervisord.

``fleet up`` starts supervisord (:mod:`fleet.supervise`) and waits until Redis answers and the
agents answer a ping; ``fleet scale N`` adds or removes agents of the running fleet; ``fleet down``
stops everything (agents first: soft shutdown, their job is requeued). The programs call
``fleet run-redis``, ``fleet run-agent --id agent-<k>``, ``fleet run-beat`` and ``fleet run-flower``,
which build the real command lines from the settings and exec them. The Procfile runs the same
entries under honcho or foreman for those who prefer them (``honcho start -c worker=N``).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import signal
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import redis

from fleet.acl import apply_from_settings, prepare_secrets
from fleet.config import CONFIG_DIR, Settings
from fleet.errors import ConfigError, FleetError, FleetUnreachable
from fleet.store import connect
from fleet.supervise import Supervisor, agent_names

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


def _exec(argv: list[str], env: dict[str, str] | None = None) -> None:
    os.execvpe(argv[0], argv, {**os.environ, **(env or {})})


def redis_conf(settings: Settings) -> Path:
    """Write ``<data_dir>/run/redis.conf`` (mode 0600): the shipped config/redis.conf plus an
    ``aclfile`` beside it, so ACL users applied by `fleet acl apply` survive restarts
    (:func:`fleet.acl.persist`). The aclfile's ``default`` user follows ``redis.url``: with a
    password there, ``user default on #<sha256> ~* &* +@all``; without one, Redis's own
    passwordless default."""
    run = run_dir(settings)
    aclfile = run / "users.acl"
    aclfile.touch(mode=0o600, exist_ok=True)
    url = urlsplit(settings["redis"]["url"])
    users = [line for line in aclfile.read_text().splitlines() if not line.startswith("user default ")]
    if url.password and unquote(url.username or "default") == "default":
        digest = hashlib.sha256(unquote(url.password).encode()).hexdigest()
        users.insert(0, f"user default on #{digest} ~* &* +@all")
    aclfile.write_text("".join(f"{line}\n" for line in users))
    path = run / "redis.conf"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"include {CONFIG_DIR / 'redis.conf'}\naclfile {aclfile}\n")
    return path


def exec_redis(settings: Settings) -> None:
    """Exec redis-server with :func:`redis_conf` on the host/port of ``redis.url``."""
    url = urlsplit(settings["redis"]["url"])
    binary = shutil.which("redis-server")
    if binary is None:
        raise FleetError("redis-server is not installed: `apt-get install redis-server`", )
    _exec([binary, str(redis_conf(settings)), "--bind", url.hostname or "127.0.0.1",
           "--port", str(url.port or 6379), "--dir", str(run_dir(settings))])


def honcho_agent_id() -> str | None:
    """``agent-<k>`` for honcho's k-th worker (honcho gives it PORT = base + 100·entry + k − 1)."""
    port = os.environ.get("PORT")
    return f"agent-{(int(port) - HONCHO_BASE_PORT) % 100 + 1}" if port and port.isdigit() else None


def exec_agent(settings: Settings, agent_id: str | None, threads: int | None = None) -> None:
    """Exec one agent: a prefork Celery worker with one process (one model) on both queues.
    ``threads`` sets llama.cpp's thread count unless ``model.n_threads`` is set (not 0)."""
    name = agent_id or settings["agent"]["id"] or honcho_agent_id() or "agent-1"
    _exec([sys.executable, "-m", "celery", "-A", "workers.app", "worker", "--pool", "prefork",
           "--concurrency", "1", "-Q", "generate-tests,maintenance", "-n", f"{name}@%h", "-E",
           "--loglevel", "INFO"], agent_env(settings, threads))


def agent_env(settings: Settings, threads: int | None) -> dict[str, str]:
    """What an agent's environment adds: soft shutdown on SIGTERM, and FLEET_MODEL_N_THREADS =
    ``threads`` when given and ``model.n_threads`` is 0 (auto; a configured count wins)."""
    env = {"REMAP_SIGTERM": "SIGQUIT"}
    if threads and not settings["model"]["n_threads"]:
        env["FLEET_MODEL_N_THREADS"] = str(threads)
    return env


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


def supervisor(settings: Settings) -> Supervisor:
    return Supervisor(settings, run_dir(settings))


def check_count(settings: Settings, agents: int) -> int:
    """``agents`` if within [local.min_agents, local.max_agents], else a ConfigError."""
    low, high = settings["local"]["min_agents"], settings["local"]["max_agents"]
    if not low <= agents <= high:
        raise ConfigError(f"{agents} agents is outside local.min_agents..local.max_agents ({low}..{high}); "
                          "change them in the config or with FLEET_LOCAL_MIN_AGENTS / FLEET_LOCAL_MAX_AGENTS")
    return agents


def up(settings: Settings, agents: int, say) -> None:
    """Start the local fleet under supervisord unless it runs; wait for Redis and ``agents`` agents."""
    sup = supervisor(settings)
    names = agent_names(check_count(settings, agents))
    acl_on = settings["acl"]["enabled"]
    if sup.running():
        say(f"fleet already running (supervisord pid {sup.pid()}); `fleet scale N` changes its size, "
            "`fleet down` stops it")
        names = sorted(sup.agents())
    else:
        flower_auth(settings, create=True)
        if acl_on:
            prepare_secrets(settings, names)
        sup.start(agents)
        say(f"starting Redis, {agents} agent(s), beat and Flower (logs: {sup.logs})")
    if acl_on:
        users = apply_from_settings(_wait_redis(settings), settings, names)
        say(f"Redis ACL users: {', '.join(users)}")
    wait_ready(settings, names, say)


def scale(settings: Settings, agents: int, say) -> dict[str, list[str]]:
    """Change a running local fleet to ``agents`` agents; removed agents requeue their job."""
    sup = supervisor(settings)
    if not sup.running():
        raise FleetUnreachable("no local fleet is running: start one with `fleet up --agents N`")
    names = agent_names(check_count(settings, agents))
    if settings["acl"]["enabled"]:
        prepare_secrets(settings, names)
        apply_from_settings(_wait_redis(settings), settings, names)
    change = sup.scale(agents)
    if change["removed"]:
        say(f"stopped {', '.join(change['removed'])} (softly: a job they were running is back in the queue)")
    if change["added"]:
        say(f"starting {', '.join(change['added'])}")
        wait_ready(settings, names, say)
    if not change["added"] and not change["removed"]:
        say(f"already {agents} agent(s)")
    return change


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


def wait_ready(settings: Settings, names: list[str], say) -> None:
    """Wait (local.start_timeout) until every agent in ``names`` answers a ping."""
    from fleet.client import Client

    deadline = time.monotonic() + settings["local"]["start_timeout"]
    client, sup = None, supervisor(settings)
    while time.monotonic() < deadline:
        try:
            client = client or Client(settings)
            online = {w.split("@", 1)[0] for w in client.status(ping_timeout=1.0)["workers"]}
            if set(names) <= online:
                say(f"fleet ready: {', '.join(sorted(online))}")
                return
        except FleetUnreachable:
            pass
        if not sup.running():
            raise FleetError(f"the local fleet exited while starting; see {sup.logs}")
        time.sleep(1.0)
    raise FleetUnreachable(f"the fleet did not come up within {settings['local']['start_timeout']}s; "
                           f"see the logs in {sup.logs}")


def down(settings: Settings, say, timeout: float | None = None) -> bool:
    """Stop the local fleet (agents first: they requeue their job); True if one was running."""
    sup = supervisor(settings)
    pid = sup.pid()
    if pid is None or not sup.running():
        say("no local fleet is running")
        return False
    sup.shutdown()
    wait = timeout or settings["celery"]["soft_shutdown_timeout"] + settings["local"]["stop_margin"] + 30
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and sup.pid():
        time.sleep(0.5)
    if sup.pid():
        os.kill(pid, signal.SIGKILL)
    say("fleet stopped")
    return True
