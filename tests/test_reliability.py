"""Reliability under faults, with real agent processes (``fleet run-agent``) on a real redis-server
that runs the shipped config/redis.conf (AOF on):

* a reduced run of benchmarks/reliability.py: agents SIGKILLed and restarted every few seconds and
  one graceful Redis restart while jobs run; every job must complete exactly once, with exactly one
  learning update, and no agent's MicroLoRA version may go backwards or skip;
* one job in the middle of its run while Redis restarts: it must complete (possibly after a
  redelivery) and its result must be fetchable.

A job cancelled by the Redis restart (the agent cancels running jobs when it loses the broker) comes
back when the agent reconnects (workers/steps.py), not after the visibility timeout.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis

from benchmarks.reliability import (REPLY, AgentProcess, PersistentRedis, RunConfig, agent_env, render_table, run,
                                    wait_agents_ready)
from fleet import config
from fleet.bundle import build_bundle
from fleet.client import Client
from fleet.errors import JobFailed, JobTimeout
from fleet.jobs import Job, Options, limits_from
from fleet.sona.store import SonaStore, binary_client
from fleet.store import Keys

pytestmark = pytest.mark.integration

# A target whose import takes a while: every sandbox run of the job (coverage, judging, 5 reruns)
# imports it, so the job is still running seconds after it started.
SLOW_TARGET = '''"""Slow to import."""
import time

time.sleep(0.7)
TAG = 7


def classify(x):
    if x > 0:
        return TAG
    return -TAG
'''


@pytest.mark.timeout(420)
def test_every_job_completes_exactly_once_under_kills_and_a_redis_restart(tmp_path):
    jobs = 30
    cfg = RunConfig(jobs=jobs, agents=2, kill_every=8.0, seed=3, redis_restart_at=0.5, timeout=300,
                    soft_limit=25, hard_limit=35, visibility=45, progress_every=15.0, workdir=tmp_path / "run")
    result = run(cfg, say=print)
    table = render_table(result)
    print(table)
    assert result["kills"] and len(result["redis_restarts"]) == 1, table
    assert result["completed"] == result["submitted"] == jobs, table
    assert not result["failed"] and not result["lost"], table
    assert result["duplicate_completions"] == 0, table
    assert result["learning_updates"]["jobs_with_exactly_1"] == jobs, table
    assert result["versions"]["problems"] == 0 and not result["versions"]["regressions"], table
    assert result["target_met"], json.dumps(result, indent=1, default=str)[:4000]


@pytest.mark.timeout(360)
def test_a_job_running_while_redis_restarts_completes(tmp_path):
    """Graceful Redis restart (SHUTDOWN, AOF flushed; down 3 s; same port and dir) in the middle of a job.

    The agent cancels the job on the connection loss (worker_cancel_long_running_tasks_on_connection_loss)
    and records RETRY (``result_backend_always_retry``: without it the write failed while Redis was down,
    the job was recorded REVOKED and its message acknowledged: lost). When the agent reconnects it
    requeues the job it held (workers/steps.py); the visibility timeout is set to an hour here, so a
    completion within minutes can only come from that requeue.
    """
    cfg = RunConfig(soft_limit=40, hard_limit=50, visibility=3600)
    (tmp_path / "redis").mkdir()
    (tmp_path / "logs").mkdir()
    script = tmp_path / "script.json"
    script.write_text(json.dumps([REPLY]))
    target = tmp_path / "targets" / "slow_target.py"
    target.parent.mkdir()
    target.write_text(SLOW_TARGET)
    server = PersistentRedis(tmp_path / "redis")
    server.start()
    env = agent_env(cfg, server.url, tmp_path, script)
    settings = config.load(env)
    agent = AgentProcess("agent-1", env, tmp_path / "logs")
    try:
        agent.start()
        client = Client(settings)
        wait_agents_ready(client, ["agent-1"])
        job = Job.from_bundle(build_bundle(target, limits_from(settings)), Options())
        job_id, sent = client.submit(job)
        assert sent
        _wait_state(client, job_id, ("STARTED", "PROGRESS"), timeout=60)
        time.sleep(2.0)
        assert client.result(job_id)[0] in ("STARTED", "PROGRESS"), "the job ended before Redis was restarted"

        down = server.restart(cfg.redis_down)

        assert cfg.redis_down <= down < cfg.redis_down + 15
        try:
            report = client.wait(job_id, timeout=cfg.hard_limit + 90)
        except (JobFailed, JobTimeout) as exc:
            broker = {"unacked": client.redis.hlen("unacked"), "queued": client.redis.llen("generate-tests"),
                      "deliveries": client.redis.get(client.keys.job(job_id, "deliveries"))}
            pytest.fail(f"{exc}\nbroker: {broker}\n{_logs(tmp_path / 'logs')}")
        logs = _logs(tmp_path / "logs")
        assert report["tests_kept"] == 2, logs
        state, fetched = Client(settings).result(job_id)
        assert state == "SUCCESS" and fetched["job_id"] == job_id and "def test_positive" in fetched["test_module"]
        deliveries = int(client.redis.get(client.keys.job(job_id, "deliveries")))
        assert 1 <= deliveries <= 2, logs
        store = SonaStore(binary_client(server.url, 5.0), Keys(settings.prefix))
        entries = store.client.xrange(store.experience_key("agent-1"))
        assert [f[b"job_id"].decode() for _, f in entries] == [job_id]  # learned from exactly once
        assert redis.Redis.from_url(server.url).hlen("unacked") == 0  # nothing left to run it again
    finally:
        agent.stop()
        server.stop()


def _wait_state(client: Client, job_id: str, states: tuple[str, ...], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.result(job_id)[0]
        if state in states:
            return state
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not reach {states} within {timeout}s (state {state})")


def _logs(directory: Path) -> str:
    """The tail of every agent log (for assertion messages)."""
    return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(directory.glob("*.log")))
