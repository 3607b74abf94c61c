"""Fault-injection reliability run: real agent processes, SIGKILLs and a Redis restart, then an audit.

What it does (loopback only, bounded in time and count):

1. Starts its own redis-server with the shipped ``config/redis.conf`` (AOF ``appendonly yes``,
   ``appendfsync everysec``, ``noeviction``) on a free port, in a temporary directory.
2. Starts ``--agents`` agents as separate processes with the product's own entry point,
   ``fleet run-agent --id agent-<k>`` (it execs ``fleet.localfleet.exec_agent``'s command line: a prefork
   Celery worker, concurrency 1, queues generate-tests,maintenance), each in its own session. The model
   is the scripted backend; its one reply is a passing pytest module for every target. Short Celery
   timings (``--soft-limit``/``--hard-limit``/``--visibility``) bring an abandoned job back within the run.
3. Submits ``--jobs`` distinct jobs through ``fleet.client.Client.submit``: one generated module per
   job (``classify`` with a branch, a unique ``TAG``), so every job id differs; the result cache is off.
4. While jobs run: every ``--kill-every`` seconds (± ``--kill-jitter``, RNG ``--seed``) SIGKILLs one random
   agent, its whole process tree (Celery main process, pool process, sandbox processes), and restarts it
   at once, as systemd or Kubernetes would. Once (``--redis-restart-at``: a fraction < 1 of jobs
   completed, or seconds ≥ 1 after submission) shuts Redis down gracefully (SHUTDOWN: AOF flushed) and,
   ``--redis-down`` seconds later (3; a real restart is not instant), starts it again on the same port
   and directory.
5. Waits for every job to end (``--timeout``), then until nothing is left queued or unacknowledged
   (a message still unacknowledged would be delivered again later), and audits Redis:

   * completed / failed (with reason) / lost, from the result backend: a job is lost when it has not
     ended by the deadline, or earlier when it has not ended and its message is neither queued nor
     unacknowledged at two checks 15 s apart (nothing would ever run it); the final states are read
     again at the end (a job seen FAILURE can end up RETRY, and the other way round);
   * duplicate completions: the agents' ``jobs_done`` counters (``<prefix>:agent:<id>:info``, one
     HINCRBY per run of ``generate_tests`` that reached its end) summed, minus the jobs completed: exact
     as a count, 0 iff no job completed twice. Candidate job ids: jobs with more than one generation run
     in the agents' usage streams (one record per run that finished generating; a superset);
   * learning updates per job id: the job ids of every agent's experience stream (one entry per applied
     MicroLoRA update, written in the same MULTI as the update, ``SonaStore.apply_once``); each
     completed job must have exactly one;
   * MicroLoRA versions: each agent's ``SonaStore.load_micro(agent).version``, sampled every 2 s,
     must never decrease; at the end the version must equal the number of
     experience entries (each update adds 1 to the version and 1 entry), and the version each completed
     job planned with (its report's ``learning.micro_version``) must equal the position of its entry in
     its agent's stream (entry k was applied on version k);
   * redeliveries: ``<prefix>:job:<id>:deliveries`` minus 1, summed; jobs over the production default
     ``celery.max_deliveries`` (3) are listed (the run sets ``--max-deliveries``, default 10);
   * for context, not as a measure of correctness: the jobs each killed agent was running and those
     running at the Redis restart (Celery ``inspect active`` just before), and the jobs seen in state
     RETRY (cancelled on the broker connection loss and left for redelivery).

The job of a SIGKILLed agent is requeued by the restarted agent as it starts, and a job cancelled on
the broker connection loss of the Redis restart (its agent stays up) by its agent as it reconnects
(fleet/inflight.py, workers/steps.py); the visibility timeout is only the last resort.
Mutation testing is off (``engine.mutation_max_mutants`` 0): it grades tests, it is not under test here.

Prints a table, writes JSON (``--out``); exit code 0 when the target is met (every job completed, none
failed or lost, no duplicate completion, exactly one learning update per job, no version regression or
gap, nothing left queued or unacknowledged), 1 when it is missed, 2 on bad usage. Progress goes to
stderr, the table to stdout.

    .venv/bin/python benchmarks/reliability.py [--jobs 200] [--agents 3] [--kill-every 20] [--seed 1]
        [--redis-restart-at 0.5] [--timeout 1500] [--out benchmarks/results/reliability.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.tmpredis import _wait_ping  # noqa: E402
from fleet import config  # noqa: E402
from fleet.bundle import build_bundle  # noqa: E402
from fleet.celeryconf import GENERATE_QUEUE, MAINTENANCE_QUEUE  # noqa: E402
from fleet.client import Client  # noqa: E402
from fleet.config import CONFIG_DIR, Settings  # noqa: E402
from fleet.jobs import Job, Options, limits_from  # noqa: E402
from fleet.llm.loopback import free_port  # noqa: E402
from fleet.sona.store import SonaStore, binary_client  # noqa: E402
from fleet.store import Keys  # noqa: E402

FLEET = Path(sys.executable).parent / "fleet"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "reliability.json"
TERMINAL = ("SUCCESS", "FAILURE", "REVOKED")
STARTED = ("STARTED", "PROGRESS", "RETRY")  # not ended; includes jobs of a killed agent until redelivered
PRODUCTION_MAX_DELIVERIES = 3
UNACKED_KEY = "unacked"  # kombu's Redis transport: delivered, not yet acknowledged messages
ORPHAN_CHECK_EVERY = 15.0  # seconds between two looks for jobs with no message left
SWEEP_SECONDS = 100  # kombu 5.7: unacked_restore_interval (10 s) × unacked_restore_throttle (10)
REDIS_ERRORS = (redis.RedisError, OSError)

# The scripted model's only reply (after the prefilled "from <module> import "): passes for every target.
REPLY = ("classify, TAG\n\n\ndef test_positive():\n    assert classify(1) == TAG\n\n\n"
         "def test_negative():\n    assert classify(-1) == -TAG\n```\n")
TARGET = '''"""Reliability target {k}."""

TAG = {tag}


def classify(x):
    if x > 0:
        return TAG
    return -TAG
'''

Say = Callable[[str], None]


@dataclass(frozen=True)
class RunConfig:
    """One run's parameters (the command-line options)."""

    jobs: int = 200
    agents: int = 3
    kill_every: float = 20.0  # seconds between SIGKILLs on average; 0 = no kills
    kill_jitter: float = 0.3  # each interval is kill_every × uniform(1 − jitter, 1 + jitter)
    seed: int = 1
    redis_restart_at: float = 0.5  # < 1: fraction of jobs completed; ≥ 1: seconds after submission; ≤ 0: never
    redis_down: float = 3.0  # seconds between Redis's SHUTDOWN and its start (a real restart is not instant)
    timeout: float = 1500.0  # seconds to wait for every job to end
    soft_limit: int = 40
    hard_limit: int = 60
    visibility: int = 90  # must exceed hard_limit (fleet/celeryconf.py)
    max_deliveries: int = 10
    max_iterations: int = 1
    sample_every: float = 2.0
    poll_every: float = 3.0
    progress_every: float = 10.0
    workdir: Path | None = None  # kept when given; a temporary directory otherwise

    def check(self) -> None:
        """ValueError naming the first inconsistent parameter."""
        if self.jobs < 1 or not 1 <= self.agents <= 8 or self.redis_down < 0:
            raise ValueError("need --jobs ≥ 1, 1 ≤ --agents ≤ 8 and --redis-down ≥ 0")
        if not 0 <= self.kill_jitter < 1 or self.kill_every < 0:
            raise ValueError("need --kill-every ≥ 0 and 0 ≤ --kill-jitter < 1")
        if not 0 < self.soft_limit < self.hard_limit < self.visibility:
            raise ValueError("need 0 < --soft-limit < --hard-limit < --visibility")


# --- processes ------------------------------------------------------------------------------------


class PersistentRedis:
    """A redis-server with ``config/redis.conf`` (AOF on) on 127.0.0.1:``port``, state in ``workdir``.

    ``restart()`` is a graceful SHUTDOWN (Redis fsyncs the AOF and exits) followed by a start on the
    same port and directory; queued messages and results must survive it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.port = workdir, free_port()
        self.proc: subprocess.Popen | None = None
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers PING (AOF loaded)."""
        with (self.workdir / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen([self.binary, str(CONFIG_DIR / "redis.conf"), "--bind", "127.0.0.1",
                                          "--port", str(self.port), "--dir", str(self.workdir)],
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_ping(self.url)

    def shutdown(self) -> None:
        """SHUTDOWN (graceful: the AOF is flushed) and wait for the process to exit."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(redis.ConnectionError):
            redis.Redis.from_url(self.url).shutdown()
        self.proc.wait(timeout=30)

    def restart(self, down: float = 0.0) -> float:
        """Graceful shutdown, ``down`` seconds without Redis, then a start on the same port and dir;
        returns the seconds it did not answer."""
        started = time.monotonic()
        self.shutdown()
        time.sleep(down)
        self.start()
        return time.monotonic() - started

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.shutdown()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class AgentProcess:
    """One agent, ``fleet run-agent --id <name>`` (the product's entry point), in its own session."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name, self.env, self.log_dir = name, env, log_dir
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with (self.log_dir / f"{self.name}.{self.starts}.log").open("wb") as log:
            self.proc = subprocess.Popen([str(FLEET), "run-agent", "--id", self.name], env=self.env, cwd=ROOT,
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def kill(self) -> int:
        """SIGKILL the agent's process group and every descendant (pool and sandbox processes, which
        run in sessions of their own), as a container's death would; wait until all are gone.
        Returns how many processes were killed."""
        assert self.proc is not None
        pids = [self.proc.pid, *descendants(self.proc.pid)]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=15)
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(pids)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (a cold shutdown under REMAP_SIGTERM; an idle agent exits at once), then SIGKILL."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, …); None if gone."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` in the process tree (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        stat = _proc_stat(int(entry.name)) if entry.name.isdigit() else None
        if stat is not None:
            children.setdefault(int(stat[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def agent_env(cfg: RunConfig, redis_url: str, workdir: Path, script: Path) -> dict[str, str]:
    """The agents' (and the client's) environment: no inherited FLEET_* setting, and the run's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env.update({
        "FLEET_REDIS_URL": redis_url,
        "FLEET_DATA_DIR": str(workdir / "data"),
        "FLEET_LLM_BACKEND": "scripted",
        "FLEET_LLM_SCRIPT": str(script),
        "FLEET_ENGINE_PROMPTS_PER_ITERATION": "1",
        "FLEET_ENGINE_MAX_ITERATIONS": str(cfg.max_iterations),
        "FLEET_ENGINE_MUTATION_MAX_MUTANTS": "0",  # mutation testing grades tests; it is not under test here
        "FLEET_LEARNING_EMBEDDER": "hash",
        "FLEET_CACHE_ENABLED": "false",  # every job must run (the jobs are distinct anyway)
        "FLEET_METRICS_ENABLED": "false",  # no /metrics ports taken on the host
        "FLEET_CELERY_SOFT_TIME_LIMIT": str(cfg.soft_limit),
        "FLEET_CELERY_HARD_TIME_LIMIT": str(cfg.hard_limit),
        "FLEET_CELERY_VISIBILITY_TIMEOUT": str(cfg.visibility),
        "FLEET_CELERY_MAX_DELIVERIES": str(cfg.max_deliveries),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    return env


# --- jobs -----------------------------------------------------------------------------------------


def write_targets(directory: Path, count: int) -> list[Path]:
    """``count`` plain modules ``rel_<k>.py``, each ``classify`` with a branch and its own ``TAG``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(count):
        path = directory / f"rel_{k:04d}.py"
        path.write_text(TARGET.format(k=k, tag=1000 + k))
        paths.append(path)
    return paths


def make_jobs(paths: list[Path], settings: Settings) -> list[Job]:
    """One job per target, bundled as ``fleet submit`` does; raises if two share an id."""
    jobs = [Job.from_bundle(build_bundle(p, limits_from(settings)), Options()) for p in paths]
    if len({j.job_id for j in jobs}) != len(jobs):
        raise RuntimeError("job ids are not distinct")
    return jobs


@dataclass
class JobTracker:
    """The last state seen of every job, from the result backend (what ``Client.result`` reads)."""

    states: dict[str, str]
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    retried: set[str] = field(default_factory=set)  # seen in RETRY: cancelled on a connection loss, requeued
    orphaned: set[str] = field(default_factory=set)  # not ended, and no message left to run it: lost
    _suspects: set[str] = field(default_factory=set)

    def poll(self, client: Client, *, all_jobs: bool = False) -> bool:
        """Read the state of every job not yet ended (every job with ``all_jobs``); False when Redis
        did not answer (the states keep their last values)."""
        for job_id in [j for j, s in self.states.items() if all_jobs or s not in TERMINAL]:
            try:
                meta = client.app.backend.get_task_meta(job_id, cache=False)
            except REDIS_ERRORS:
                return False
            state, info = meta["status"], meta.get("result")
            self.states[job_id] = state
            if state == "SUCCESS":
                self.reports[job_id] = info
            elif state in ("FAILURE", "REVOKED"):
                self.errors[job_id] = f"{type(info).__name__}: {info}"
            elif state == "RETRY":
                self.retried.add(job_id)
        return True

    def check_orphans(self, in_broker: set[str]) -> set[str]:
        """Jobs not ended whose message is neither queued nor unacknowledged (``in_broker``) at this
        check and at the previous one are lost: nothing will run them again. (Two checks, because
        a message popped by an agent reaches kombu's ``unacked`` hash a moment later, and a state read
        just before a job ended is stale.) Returns the jobs newly found lost."""
        suspects = {j for j, s in self.states.items() if s not in TERMINAL and j not in in_broker}
        lost = suspects & self._suspects - self.orphaned
        self.orphaned |= lost
        self._suspects = suspects
        return lost

    def count(self, *states: str) -> int:
        return sum(s in states for s in self.states.values())

    def done(self) -> bool:
        """Every job ended or was found lost."""
        return all(s in TERMINAL or j in self.orphaned for j, s in self.states.items())


@dataclass
class VersionSampler:
    """Samples each agent's MicroLoRA version; a decrease between two samples is a regression."""

    agents: list[str]
    last: dict[str, int] = field(default_factory=dict)
    samples: int = 0
    regressions: list[dict[str, Any]] = field(default_factory=list)

    def sample(self, store: SonaStore, elapsed: float) -> None:
        for agent in self.agents:
            try:
                micro = store.load_micro(agent)
            except REDIS_ERRORS:
                return
            version = micro.version if micro else 0
            if version < self.last.get(agent, 0):
                self.regressions.append({"agent": agent, "from": self.last[agent], "to": version,
                                         "at_s": round(elapsed, 1)})
            self.last[agent] = version
            self.samples += 1


# --- the run --------------------------------------------------------------------------------------


@dataclass
class Faults:
    """The fault schedule and what was done: kills (seeded RNG) and the one Redis restart."""

    cfg: RunConfig
    rng: random.Random
    next_kill: float = float("inf")
    kills: list[dict[str, Any]] = field(default_factory=list)
    redis_restarts: list[dict[str, Any]] = field(default_factory=list)

    def schedule_kill(self, now: float) -> None:
        if self.cfg.kill_every > 0:
            j = self.cfg.kill_jitter
            self.next_kill = now + self.cfg.kill_every * self.rng.uniform(1 - j, 1 + j)

    def redis_due(self, elapsed: float, completed: int) -> bool:
        at = self.cfg.redis_restart_at
        if at <= 0 or self.redis_restarts:
            return False
        return completed >= at * self.cfg.jobs if at < 1 else elapsed >= at


def active_jobs(client: Client, agents: int) -> dict[str, list[str]]:
    """Agent name → ids of the jobs it says it is running (Celery ``inspect active``, 1 s; an agent
    still starting may not answer and is then missing)."""
    try:
        replies = client.app.control.inspect(timeout=1.0, limit=agents).active() or {}
    except REDIS_ERRORS:
        return {}
    return {node.split("@", 1)[0]: [t["id"] for t in tasks] for node, tasks in replies.items()}


def kill_one(faults: Faults, agents: list[AgentProcess], client: Client, elapsed: float, say: Say) -> None:
    """SIGKILL a random agent's process tree and start it again at once."""
    agent = faults.rng.choice(agents)
    running = active_jobs(client, len(agents)).get(agent.name, [])
    killed = agent.kill()
    agent.start()
    faults.kills.append({"at_s": round(elapsed, 1), "agent": agent.name, "processes": killed, "running": running})
    say(f"[{elapsed:6.0f}s] SIGKILL {agent.name} ({killed} processes, "
        f"{'running ' + running[0][:8] if running else 'idle or starting'}), restarted")


def restart_redis(faults: Faults, server: PersistentRedis, client: Client, agents: int, elapsed: float,
                  say: Say) -> None:
    """Graceful Redis restart; records the jobs the agents were running then."""
    running = sorted(j for jobs in active_jobs(client, agents).values() for j in jobs)
    down = server.restart(faults.cfg.redis_down)
    keys = redis.Redis.from_url(server.url).dbsize()
    faults.redis_restarts.append({"at_s": round(elapsed, 1), "down_s": round(down, 2), "keys_after": keys,
                                  "running": running})
    say(f"[{elapsed:6.0f}s] Redis SHUTDOWN + start (down {down:.1f}s, {keys} keys after AOF load, "
        f"{len(running)} job(s) running)")


def wait_agents_ready(client: Client, names: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(*REDIS_ERRORS):
            online = {w.split("@", 1)[0] for w in client.status(ping_timeout=1.0)["workers"]}
            if set(names) <= online:
                return
        time.sleep(1)
    raise RuntimeError(f"agents {names} did not answer a ping within {timeout:.0f}s")


def progress_line(tracker: JobTracker, faults: Faults, elapsed: float) -> str:
    return (f"[{elapsed:6.0f}s] completed {tracker.count('SUCCESS')}/{len(tracker.states)}, "
            f"failed {tracker.count('FAILURE', 'REVOKED')}, started {tracker.count(*STARTED)}, "
            f"pending {tracker.count('PENDING')}, lost {len(tracker.orphaned)}; kills {len(faults.kills)}, "
            f"Redis restarts {len(faults.redis_restarts)}")


def _message_id(raw: str, *, unacked: bool) -> str | None:
    """The task id of a kombu message as stored in the queue list, or in the ``unacked`` hash
    ([message, exchange, routing key]); None for anything else."""
    try:
        message = json.loads(raw)
        return (message[0] if unacked else message)["headers"]["id"]
    except (ValueError, KeyError, TypeError, IndexError):
        return None


def broker_job_ids(client: Client) -> set[str] | None:
    """Ids of the job messages in the broker, queued or delivered and not acknowledged; None if
    Redis did not answer."""
    try:
        queued = client.redis.lrange(GENERATE_QUEUE, 0, -1)
        delivered = client.redis.hvals(UNACKED_KEY)
    except REDIS_ERRORS:
        return None
    ids = {_message_id(m, unacked=False) for m in queued} | {_message_id(m, unacked=True) for m in delivered}
    return ids - {None}


def drive(cfg: RunConfig, client: Client, server: PersistentRedis, agents: list[AgentProcess],
          tracker: JobTracker, sampler: VersionSampler, store: SonaStore, say: Say) -> tuple[Faults, float]:
    """Inject faults while polling, until every job ended or ``cfg.timeout``; returns the faults done
    and the seconds elapsed."""
    faults = Faults(cfg, random.Random(cfg.seed))
    started = time.monotonic()
    faults.schedule_kill(started)
    next_poll = next_sample = next_progress = next_orphans = started
    while True:
        now = time.monotonic()
        elapsed = now - started
        if now >= next_poll:
            tracker.poll(client)
            next_poll = now + cfg.poll_every
        if now >= next_orphans and (in_broker := broker_job_ids(client)) is not None:
            for job_id in sorted(tracker.check_orphans(in_broker)):
                say(f"[{elapsed:6.0f}s] job {job_id[:8]} is lost: state {tracker.states[job_id]}, no message left")
            next_orphans = now + ORPHAN_CHECK_EVERY
        if tracker.done() or elapsed > cfg.timeout:
            return faults, elapsed
        if now >= next_sample:
            sampler.sample(store, elapsed)
            next_sample = now + cfg.sample_every
        if faults.redis_due(elapsed, tracker.count("SUCCESS")):
            restart_redis(faults, server, client, len(agents), elapsed, say)
        elif now >= faults.next_kill:
            kill_one(faults, agents, client, elapsed, say)
            faults.schedule_kill(time.monotonic())
        if now >= next_progress:
            say(progress_line(tracker, faults, elapsed))
            next_progress = now + cfg.progress_every
        time.sleep(0.5)


def drain(client: Client, seconds: float, say: Say) -> dict[str, int]:
    """Wait (at most ``seconds``) until no message is queued or unacknowledged: a message still
    unacknowledged after its job ended would run the job again later. Returns what is left."""
    deadline = time.monotonic() + seconds
    while True:
        left = {"unacked": client.redis.hlen(UNACKED_KEY),
                **{q: client.redis.llen(q) for q in (GENERATE_QUEUE, MAINTENANCE_QUEUE)}}
        if not any(left.values()) or time.monotonic() >= deadline:
            break
        time.sleep(2)
    if any(left.values()):
        say(f"messages left in the broker after {seconds:.0f}s: {left}")
    return left


# --- the audit ------------------------------------------------------------------------------------


def _stream_job_ids(client: redis.Redis, key: str) -> list[str]:
    """The ``job_id`` field of every entry of stream ``key``, oldest first."""
    out = []
    for _, fields in client.xrange(key):
        value = fields.get(b"job_id", fields.get("job_id", b""))
        out.append(value.decode() if isinstance(value, bytes) else value)
    return out


def audit_learning(store: SonaStore, agents: list[str], tracker: JobTracker) -> dict[str, Any]:
    """Updates per job id across all experience streams, and each agent's version bookkeeping."""
    per_job: Counter[str] = Counter()
    per_agent = {}
    for agent in agents:
        entries = _stream_job_ids(store.client, store.experience_key(agent))
        per_job.update(entries)
        micro = store.load_micro(agent)
        version = micro.version if micro else 0
        order_errors = []
        for position, job_id in enumerate(entries):
            learning = tracker.reports.get(job_id, {}).get("learning", {})
            if tracker.reports.get(job_id, {}).get("agent", {}).get("id") == agent and learning.get("applied"):
                if learning.get("micro_version") != position:
                    order_errors.append({"job_id": job_id, "position": position,
                                         "planned_on_version": learning.get("micro_version")})
        per_agent[agent] = {"version": version, "updates_in_stream": len(entries),
                            "version_gap": version - len(entries), "stream_order_errors": order_errors,
                            "last_job_matches": (micro.job_id if micro else "") == (entries[-1] if entries else "")}
    completed = [j for j, s in tracker.states.items() if s == "SUCCESS"]
    return {
        "per_agent": per_agent,
        "completed_with_0": sorted(j for j in completed if per_job[j] == 0),
        "with_more_than_1": {j: n for j, n in per_job.items() if n > 1},
        "foreign": sorted(j for j in per_job if j not in tracker.states),
        "consolidated": store.current_version() > 0,
    }


def audit_runs(client: Client, agents: list[str], job_ids: list[str]) -> dict[str, Any]:
    """Deliveries per job, generation runs per job (usage streams) and Σ jobs_done of the agents."""
    r, keys = client.redis, client.keys
    deliveries = {j: int(r.get(keys.job(j, "deliveries")) or 0) for j in job_ids}
    runs: Counter[str] = Counter()
    for agent in agents:
        runs.update(_stream_job_ids(r, keys.agent(agent, "usage")))
    jobs_done = {a: int(r.hget(keys.agent(a, "info"), "jobs_done") or 0) for a in agents}
    return {"deliveries": deliveries, "generation_runs": runs, "jobs_done": jobs_done}


def lost_reason(job_id: str, tracker: JobTracker, in_broker: set[str]) -> str:
    """Why a job that has not ended counts as lost: its message is gone (nothing will run it), or it
    was still queued or running at the deadline; an error it showed before is added."""
    why = "no message left" if job_id not in in_broker else "queued or running at the deadline"
    earlier = f"; earlier {tracker.errors[job_id]}" if job_id in tracker.errors else ""
    return f"state {tracker.states[job_id]}, {why}{earlier}"


def summarise(cfg: RunConfig, tracker: JobTracker, faults: Faults, sampler: VersionSampler, learning: dict[str, Any],
              runs: dict[str, Any], left: dict[str, int], in_broker: set[str], wall: float) -> dict[str, Any]:
    """The run's result document (what the table shows, plus the ids behind each number)."""
    ids = list(tracker.states)
    completed = tracker.count("SUCCESS")
    deliveries = runs["deliveries"]
    extra = sum(runs["jobs_done"].values()) - completed
    agents = learning["per_agent"]
    version_problems = (len(sampler.regressions) + sum(a["version_gap"] != 0 for a in agents.values())
                        + sum(len(a["stream_order_errors"]) for a in agents.values()))
    result = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "submitted": len(ids),
        "completed": completed,
        "failed": {j: tracker.errors.get(j, tracker.states[j]) for j in ids if tracker.states[j] in ("FAILURE", "REVOKED")},
        "lost": {j: lost_reason(j, tracker, in_broker) for j in ids if tracker.states[j] not in TERMINAL},
        "duplicate_completions": extra,
        "jobs_done_by_agent": runs["jobs_done"],
        "generated_more_than_once": {j: n for j, n in runs["generation_runs"].items() if n > 1 and j in tracker.states},
        "learning_updates": {"jobs_with_exactly_1": sum(1 for j in ids if tracker.states[j] == "SUCCESS"
                                                        and j not in learning["with_more_than_1"]
                                                        and j not in learning["completed_with_0"]),
                             **learning},
        "versions": {"samples": sampler.samples, "regressions": sampler.regressions, "problems": version_problems,
                     "final": {a: v["version"] for a, v in agents.items()}},
        "kills": faults.kills,
        "requeued_on_connection_loss": sorted(tracker.retried),
        "redis_restarts": faults.redis_restarts,
        "redeliveries": sum(max(0, n - 1) for n in deliveries.values()),
        "jobs_redelivered": sum(n > 1 for n in deliveries.values()),
        "max_deliveries_seen": max(deliveries.values(), default=0),
        "over_production_max_deliveries": sorted(j for j, n in deliveries.items() if n > PRODUCTION_MAX_DELIVERIES),
        "left_in_broker": left,
        "wall_seconds": round(wall, 1),
    }
    result["target_met"] = target_met(result)
    return result


def target_met(result: dict[str, Any]) -> bool:
    """Every job completed, none failed or lost, no duplicate completion, exactly one learning update
    per job, no version regression or gap, nothing left to redeliver."""
    upd = result["learning_updates"]
    return (result["completed"] == result["submitted"] and not result["failed"] and not result["lost"]
            and result["duplicate_completions"] == 0 and upd["jobs_with_exactly_1"] == result["submitted"]
            and not upd["foreign"] and result["versions"]["problems"] == 0 and not any(result["left_in_broker"].values()))


def render_table(result: dict[str, Any]) -> str:
    cfg, upd, ver = result["config"], result["learning_updates"], result["versions"]
    restarts = result["redis_restarts"]
    rows = [
        ("jobs submitted", result["submitted"]),
        ("jobs completed", result["completed"]),
        ("jobs failed", len(result["failed"])),
        ("jobs lost (never finished)", len(result["lost"])),
        ("duplicate completions", f"{result['duplicate_completions']}  (Σ agents' jobs_done "
                                  f"{sum(result['jobs_done_by_agent'].values())} − completed {result['completed']})"),
        ("jobs generated more than once", f"{len(result['generated_more_than_once'])}  (usage records; killed runs included)"),
        ("learning updates = 1 per job", f"{upd['jobs_with_exactly_1']}/{result['submitted']}  "
                                         f"(0: {len(upd['completed_with_0'])}, >1: {len(upd['with_more_than_1'])})"),
        ("MicroLoRA versions monotone", f"{'yes' if ver['problems'] == 0 else 'NO'}  ({ver['samples']} samples, "
                                        f"{len(ver['regressions'])} regressions; final {ver['final']})"),
        ("agent kills (SIGKILL + restart)", f"{len(result['kills'])}  "
                                            f"({sum(bool(k['running']) for k in result['kills'])} in the middle of a job)"),
        ("Redis restarts", f"{len(restarts)}" + (f"  (down {restarts[0]['down_s']}s, "
                                                  f"{len(restarts[0]['running'])} job(s) running, "
                                                  f"{len(result['requeued_on_connection_loss'])} seen in RETRY)"
                                                  if restarts else "")),
        ("redeliveries", f"{result['redeliveries']}  (Σ deliveries − 1; {result['jobs_redelivered']} jobs, max "
                         f"{result['max_deliveries_seen']}, over 3: {len(result['over_production_max_deliveries'])})"),
        ("left queued/unacked", sum(result["left_in_broker"].values())),
        ("wall time", f"{result['wall_seconds']}s"),
    ]
    width = max(len(k) for k, _ in rows)
    head = (f"reliability: {cfg['jobs']} jobs, {cfg['agents']} agents, kill every ~{cfg['kill_every']}s "
            f"(seed {cfg['seed']}), Redis restart at {cfg['redis_restart_at']} (down {cfg['redis_down']}s)")
    lines = [head, "-" * len(head)] + [f"{k:<{width}}  {v}" for k, v in rows]
    lines += [f"{'failed':<{width}}  {j[:12]} {why}" for j, why in list(result["failed"].items())[:10]]
    lines += [f"{'lost':<{width}}  {j[:12]} {why}" for j, why in list(result["lost"].items())[:10]]
    lines.append(f"target (all completed, 0 duplicates, 1 update per job, 0 lost versions): "
                 f"{'MET' if result['target_met'] else 'MISSED'}")
    return "\n".join(lines)


@contextlib.contextmanager
def _workdir(cfg: RunConfig) -> Iterator[Path]:
    if cfg.workdir is not None:
        cfg.workdir.mkdir(parents=True, exist_ok=True)
        yield cfg.workdir
    else:
        with tempfile.TemporaryDirectory(prefix="fleet-reliability-") as tmp:
            yield Path(tmp)


def run(cfg: RunConfig, say: Say = lambda line: print(line, file=sys.stderr, flush=True)) -> dict[str, Any]:
    """Run the whole scenario of the module docstring and return its result document. Every process
    it started is stopped before it returns."""
    cfg.check()
    with _workdir(cfg) as workdir:
        (workdir / "redis").mkdir(exist_ok=True)
        (workdir / "logs").mkdir(exist_ok=True)
        script = workdir / "script.json"
        script.write_text(json.dumps([REPLY]))
        server = PersistentRedis(workdir / "redis")
        env = agent_env(cfg, server.url, workdir, script)
        settings = config.load(env)
        agents = [AgentProcess(f"agent-{k}", env, workdir / "logs") for k in range(1, cfg.agents + 1)]
        try:
            server.start()
            for agent in agents:
                agent.start()
            client = Client(settings)
            wait_agents_ready(client, [a.name for a in agents])
            jobs = make_jobs(write_targets(workdir / "targets", cfg.jobs), settings)
            store = SonaStore(binary_client(server.url, 5.0), Keys(settings.prefix))
            tracker = JobTracker({client.submit(job)[0]: "PENDING" for job in jobs})
            sampler = VersionSampler([a.name for a in agents])
            say(f"{len(jobs)} jobs submitted to {cfg.agents} agents on {server.url} (work dir {workdir})")
            faults, wall = drive(cfg, client, server, agents, tracker, sampler, store, say)
            left = drain(client, cfg.visibility + SWEEP_SECONDS + cfg.hard_limit if tracker.done() else 0, say)
            tracker.poll(client, all_jobs=True)  # final states (a late run could have changed one)
            sampler.sample(store, wall)
            names = [a.name for a in agents]
            return summarise(cfg, tracker, faults, sampler, audit_learning(store, names, tracker),
                             audit_runs(client, names, list(tracker.states)), left, broker_job_ids(client) or set(),
                             wall)
        finally:
            for agent in agents:
                agent.stop()
            server.stop()


def parse_args(argv: list[str] | None) -> tuple[RunConfig, Path]:
    d = RunConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=d.jobs, help=f"distinct jobs to submit (default {d.jobs})")
    p.add_argument("--agents", type=int, default=d.agents, help=f"agent processes (default {d.agents})")
    p.add_argument("--kill-every", type=float, default=d.kill_every,
                   help=f"mean seconds between SIGKILLs of a random agent; 0 = none (default {d.kill_every})")
    p.add_argument("--kill-jitter", type=float, default=d.kill_jitter,
                   help=f"relative jitter of that interval (default {d.kill_jitter})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"RNG seed of the kill schedule (default {d.seed})")
    p.add_argument("--redis-restart-at", type=float, default=d.redis_restart_at,
                   help="restart Redis once: a fraction < 1 of jobs completed, or seconds ≥ 1 after submission; "
                        f"≤ 0 = never (default {d.redis_restart_at})")
    p.add_argument("--redis-down", type=float, default=d.redis_down,
                   help=f"seconds Redis stays down between SHUTDOWN and start (default {d.redis_down})")
    p.add_argument("--timeout", type=float, default=d.timeout, help=f"seconds to wait for all jobs (default {d.timeout:.0f})")
    p.add_argument("--soft-limit", type=int, default=d.soft_limit, help=f"celery.soft_time_limit (default {d.soft_limit})")
    p.add_argument("--hard-limit", type=int, default=d.hard_limit, help=f"celery.hard_time_limit (default {d.hard_limit})")
    p.add_argument("--visibility", type=int, default=d.visibility,
                   help=f"celery.visibility_timeout: when a SIGKILLed job comes back (default {d.visibility})")
    p.add_argument("--max-deliveries", type=int, default=d.max_deliveries,
                   help=f"celery.max_deliveries for the run (default {d.max_deliveries}; jobs over 3 are listed)")
    p.add_argument("--max-iterations", type=int, default=d.max_iterations, help=f"engine iterations (default {d.max_iterations})")
    p.add_argument("--workdir", type=Path, help="keep Redis data, agent logs and targets here (default: a temporary dir)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON result (default {DEFAULT_OUT.relative_to(ROOT)})")
    a = p.parse_args(argv)
    cfg = RunConfig(jobs=a.jobs, agents=a.agents, kill_every=a.kill_every, kill_jitter=a.kill_jitter, seed=a.seed,
                    redis_restart_at=a.redis_restart_at, redis_down=a.redis_down, timeout=a.timeout, soft_limit=a.soft_limit,
                    hard_limit=a.hard_limit, visibility=a.visibility, max_deliveries=a.max_deliveries,
                    max_iterations=a.max_iterations, workdir=a.workdir)
    try:
        cfg.check()
    except ValueError as exc:
        p.error(str(exc))
    return cfg, a.out


def main(argv: list[str] | None = None) -> int:
    cfg, out = parse_args(argv)
    result = run(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(render_table(result))
    print(f"written {out}")
    return 0 if result["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
