"""The local fleet under supervisord, for real: `fleet up` starts Redis, agents (separate Celery
worker processes with a scripted model), beat and Flower; `fleet scale` adds and removes agents
without touching the others; a SIGKILLed agent is restarted; scale-down requeues the running job
and it completes elsewhere; `fleet down` leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import redis

from conftest import free_port
from fleet import config, localfleet
from fleet.client import Client
from fleet.errors import FleetError
from fleet.jobs import Job, Options

pytestmark = pytest.mark.integration

SOURCE = "def sign(x):\n    if x > 0:\n        return 1\n    if x < 0:\n        return -1\n    return 0\n"
REPLY = "sign\n\ndef test_positive():\n    assert sign(5) == 1\n"


def make_job(name: str, iterations: int) -> Job:
    return Job(module=name, target_path=f"{name}.py", files={f"{name}.py": SOURCE},
               options=Options(max_iterations=iterations))


@pytest.fixture
def local(tmp_path, monkeypatch):
    """Settings of a private local fleet (own ports and data dir, scripted model); stopped at the end."""
    script = tmp_path / "script.json"
    script.write_text(json.dumps([REPLY]))
    env = {"FLEET_DATA_DIR": str(tmp_path / "data"), "FLEET_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
           "FLEET_FLOWER_PORT": str(free_port()), "FLEET_METRICS_PORT": str(free_port()),
           "FLEET_LLM_BACKEND": "scripted", "FLEET_LLM_SCRIPT": str(script), "FLEET_LLM_SCRIPT_DELAY": "2",
           "FLEET_LEARNING_EMBEDDER": "hash", "FLEET_ENGINE_PROMPTS_PER_ITERATION": "1", "FLEET_ENGINE_MAX_VARIANTS": "0",
           "FLEET_CELERY_SOFT_SHUTDOWN_TIMEOUT": "1", "FLEET_LOCAL_START_TIMEOUT": "90"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = config.load()
    yield settings
    localfleet.down(settings, lambda _: None, timeout=60)


def online(settings) -> set[str]:
    """Agents answering a ping (none while Redis is unreachable)."""
    try:
        return {w.split("@", 1)[0] for w in Client(settings).status(ping_timeout=1.0)["workers"]}
    except (redis.RedisError, FleetError):
        return set()


def agent_pid(settings, name: str) -> int:
    return localfleet.supervisor(settings).rpc().getProcessInfo(name)["pid"]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_up_scale_restart_and_down(local):
    said: list[str] = []
    localfleet.up(local, 2, said.append)
    assert online(local) == {"agent-1", "agent-2"}
    pid_1 = agent_pid(local, "agent-1")

    localfleet.scale(local, 3, said.append)
    assert online(local) == {"agent-1", "agent-2", "agent-3"}
    assert agent_pid(local, "agent-1") == pid_1, "scaling up restarted a running agent"

    os.kill(pid_1, signal.SIGKILL)
    wait_for(lambda: agent_pid(local, "agent-1") not in (0, pid_1) and "agent-1" in online(local), 60,
             "supervisord to restart the killed agent")

    change = localfleet.scale(local, 1, said.append)
    assert change == {"added": [], "removed": ["agent-2", "agent-3"]}
    wait_for(lambda: online(local) == {"agent-1"}, 30, "the removed agents to leave")

    sup = localfleet.supervisor(local)
    assert localfleet.down(local, said.append)
    assert sup.pid() is None and not sup.running()
    assert not localfleet.down(local, said.append)


def test_scale_bounds_are_enforced(local, monkeypatch):
    monkeypatch.setenv("FLEET_LOCAL_MAX_AGENTS", "2")
    with pytest.raises(Exception, match="outside local.min_agents..local.max_agents"):
        localfleet.up(config.load(), 3, lambda _: None)


def test_scale_down_requeues_the_running_job(local):
    """Both agents busy; scaling to one stops agent-2 softly (1 s window here), its job goes back to
    the queue and agent-1 completes it after its own."""
    localfleet.up(local, 2, lambda _: None)
    client = Client(local)
    jobs = [make_job(f"signs{k}", iterations=4) for k in (1, 2)]  # ≥ 4 replies × 2 s each
    ids = [client.submit(job)[0] for job in jobs]
    wait_for(lambda: all(client.result(i)[0] not in ("PENDING",) for i in ids), 60, "both jobs to start")
    localfleet.scale(local, 1, lambda _: None)
    reports = [client.wait(i, timeout=180) for i in ids]
    assert {r["agent"]["id"] for r in reports} == {"agent-1"}
    moved = [r for r in reports if r["agent"]["deliveries"] == 2]
    assert len(moved) == 1, [r["agent"] for r in reports]
    assert all(r["tests_kept"] == 1 for r in reports)


def test_a_killed_agent_requeues_its_job_when_it_comes_back(local):
    """SIGKILL of the whole agent (main and pool process) mid-job: supervisord restarts it, and the
    restarted agent puts the unacknowledged job back at once instead of after the visibility
    timeout (over an hour with the default limits)."""
    localfleet.up(local, 1, lambda _: None)
    client = Client(local)
    job_id = client.submit(make_job("signs3", iterations=4))[0]
    wait_for(lambda: client.result(job_id)[0] not in ("PENDING", "STARTED"), 60, "the job's first iteration")
    pid = agent_pid(local, "agent-1")
    os.killpg(pid, signal.SIGKILL)
    report = client.wait(job_id, timeout=120)
    assert report["agent"]["deliveries"] == 2
    assert agent_pid(local, "agent-1") != pid


def test_acl_users_and_the_password_survive_a_redis_restart(local, monkeypatch):
    """With ACLs on and a password in redis.url, `fleet up` runs Redis with requirepass and an
    aclfile: the agents' users are saved, and after a Redis restart they are still there."""
    port = local["redis"]["url"].rsplit(":", 1)[1]
    monkeypatch.setenv("FLEET_REDIS_URL", f"redis://:s3cret-pw@127.0.0.1:{port}")
    monkeypatch.setenv("FLEET_ACL_ENABLED", "true")
    settings = config.load()
    localfleet.up(settings, 1, lambda _: None)
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=int(port.split("/")[0])).ping()
    admin = redis.Redis.from_url(settings["redis"]["url"])
    before = sorted(admin.acl_users())
    assert "agent-1" in " ".join(before)
    rpc = localfleet.supervisor(settings).rpc()
    rpc.stopProcess("redis")
    rpc.startProcess("redis")
    wait_for(lambda: _answers(settings["redis"]["url"]), 30, "Redis to come back")
    assert sorted(redis.Redis.from_url(settings["redis"]["url"]).acl_users()) == before
    wait_for(lambda: "agent-1" in online(settings), 60, "the agent to reconnect")
    localfleet.down(settings, lambda _: None, timeout=60)


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def test_agents_share_the_cores_and_keep_their_program_when_the_count_changes(tmp_path, monkeypatch):
    """No processes: the generated supervisord.conf. Each agent added for N agents gets
    cores // N llama.cpp threads; scaling rewrites only the programs it adds or removes."""
    monkeypatch.setenv("FLEET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    sup = localfleet.supervisor(config.load())
    sup.write(1)
    first = sup.conf.read_text()
    assert "run-agent --id agent-1 --threads 8" in first
    sup.write(4, fresh=False)
    scaled = sup.conf.read_text()
    assert "run-agent --id agent-1 --threads 8" in scaled  # unchanged: supervisord does not restart it
    assert all(f"run-agent --id agent-{k} --threads 2" in scaled for k in (2, 3, 4))
    sup.write(2, fresh=False)
    assert "agent-3" not in sup.conf.read_text() and "--id agent-2 --threads 2" in sup.conf.read_text()
    sup.write(2)  # `fleet up` starts from scratch
    assert "run-agent --id agent-1 --threads 4" in sup.conf.read_text()


def test_a_configured_thread_count_wins_over_the_agents_share(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEET_DATA_DIR", str(tmp_path / "data"))
    assert localfleet.agent_env(config.load(), 3)["FLEET_MODEL_N_THREADS"] == "3"
    monkeypatch.setenv("FLEET_MODEL_N_THREADS", "6")
    assert "FLEET_MODEL_N_THREADS" not in localfleet.agent_env(config.load(), 3)
    assert localfleet.agent_env(config.load(), None) == {"REMAP_SIGTERM": "SIGQUIT"}
