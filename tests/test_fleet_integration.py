"""A real Celery worker (in-process, celery.contrib.testing) on a real redis-server, with a scripted
model backend: submit → queue → agent → sandbox → report, deduplication, poison and malformed jobs."""

from __future__ import annotations

import time

import pytest
import redis

from fleet.celeryconf import GENERATE_QUEUE, GENERATE_TASK
from fleet.client import Client
from fleet.errors import JobFailed
from fleet.jobs import Job, Options
from fleet.llm.scripted import ScriptedBackend

pytestmark = pytest.mark.integration

SOURCE = "def sign(x):\n    if x > 0:\n        return 1\n    if x < 0:\n        return -1\n    return 0\n"
REPLY = "sign\n\ndef test_positive():\n    assert sign(5) == 1\n\ndef test_negative():\n    assert sign(-2) == -1\n"


def make_job(**options) -> Job:
    return Job(module="signs", target_path="signs.py", files={"signs.py": SOURCE}, options=Options(**options))


@pytest.fixture
def fleet(scripted_fleet, monkeypatch):
    """One in-process agent with a scripted model, and a client; one prompt per iteration, so one
    scripted reply is one iteration."""
    monkeypatch.setenv("FLEET_ENGINE_PROMPTS_PER_ITERATION", "1")
    backend = ScriptedBackend([REPLY])
    with scripted_fleet(backend) as client:
        yield client, backend


def test_job_runs_through_the_fleet(fleet):
    client, backend = fleet
    job_id, sent = client.submit(make_job(max_iterations=2))
    assert sent and job_id == make_job(max_iterations=2).job_id
    report = client.wait(job_id, timeout=120)
    assert report["tests_kept"] == 2
    assert report["agent"]["id"] == "agent-t1"
    assert report["agent"]["namespace"] == "fleet:agent:agent-t1"
    assert report["coverage_after"]["line"] > report["coverage_before"]["line"]
    assert report["coverage_after"]["branches_covered"] == 3
    assert report["final_runs_passed"] == report["reruns"] == 5
    assert "def test_positive" in report["test_module"]
    assert len(backend.prompts) >= 1


def test_resubmission_attaches_to_the_same_job(fleet):
    client, backend = fleet
    job = make_job(max_iterations=1)
    job_id, sent = client.submit(job)
    again_id, sent_again = client.submit(job)
    assert (again_id, sent, sent_again) == (job_id, True, False)
    client.wait(job_id, timeout=120)
    assert client.submit(job) == (job_id, False)
    assert len(backend.prompts) == 1


def test_a_repeated_job_whose_result_expired_is_answered_from_the_cache(fleet):
    from celery.result import AsyncResult

    client, backend = fleet
    job = make_job(max_iterations=1)
    job_id, _ = client.submit(job)
    first = client.wait(job_id, timeout=120)
    assert first["cached"] is False and first["learning"]["applied"] is True
    prompts = len(backend.prompts)
    AsyncResult(job_id, app=client.app).forget()  # as if celery.result_expires had passed
    client.redis.delete(client.keys.job(job_id, "submitted"))  # and the submission marker's TTL
    assert client.submit(job) == (job_id, True)
    again = client.wait(job_id, timeout=60)
    assert again["cached"] is True and again["learning"]["applied"] is False
    assert len(backend.prompts) == prompts  # the model was not asked again
    assert again["test_module"] == first["test_module"] and again["cached_from"]["id"] == "agent-t1"


def test_status_lists_worker_queue_and_agent(fleet):
    client, _ = fleet
    status = client.status()
    assert any(w.startswith("celery@") or "@" in w for w in status["workers"])
    assert status["queues"][GENERATE_QUEUE] == 0
    assert [a["agent_id"] for a in status["agents"]] == ["agent-t1"]


def redeliver(client: Client, job: Job, url: str, times_before: int) -> str:
    """Put the job's message on the queue as a broker redelivery would, after ``times_before``
    deliveries that killed their worker."""
    redis.Redis.from_url(url).set(f"fleet:job:{job.job_id}:deliveries", times_before)
    client.app.send_task(GENERATE_TASK, args=[job.to_dict()], task_id=job.job_id, queue=GENERATE_QUEUE)
    return job.job_id


def test_poison_job_fails_instead_of_looping(fleet, redis_server):
    client, backend = fleet
    job = make_job(max_iterations=3)
    job_id = redeliver(client, job, redis_server, times_before=3)
    with pytest.raises(JobFailed, match="delivered 4 times"):
        client.wait(job_id, timeout=60)
    assert backend.prompts == []


def test_malformed_job_fails_with_a_clear_error(fleet, redis_server):
    client, backend = fleet
    client.app.send_task(GENERATE_TASK, args=[{"version": 99}], task_id="bad-job-1", queue=GENERATE_QUEUE)
    with pytest.raises(JobFailed, match="unsupported job version"):
        client.wait("bad-job-1", timeout=60)
    assert backend.prompts == []
    # the agent recorded the message on receipt and cleared it on failure: nothing to requeue
    assert not redis.Redis.from_url(redis_server).hexists("fleet:agent:agent-t1:inflight", "bad-job-1")


@pytest.mark.parametrize("times_before", [1, 3], ids=["once", "past-max-deliveries"])
def test_a_redelivery_after_completion_returns_the_first_report(fleet, redis_server, times_before):
    """An agent killed after the job completed but before its message was acknowledged: the broker
    delivers it again. The job is not generated again nor counted twice, and the delivery does not
    fail as a poison job however often it came (celery.max_deliveries is 3; Celery would keep the
    first SUCCESS for the client either way, but the agent would log and count a failed task)."""
    from celery.signals import task_failure, task_success

    client, backend = fleet
    job = make_job(max_iterations=1)
    job_id, _ = client.submit(job)
    first = client.wait(job_id, timeout=120)
    prompts = len(backend.prompts)
    ended: list[str] = []
    on_success = lambda sender=None, **_: ended.append("success")  # noqa: E731
    on_failure = lambda sender=None, exception=None, **_: ended.append(f"failure: {exception!r}")  # noqa: E731
    task_success.connect(on_success, weak=False)
    task_failure.connect(on_failure, weak=False)
    try:
        redeliver(client, job, redis_server, times_before=times_before)
        deadline = time.monotonic() + 60
        while not ended and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        task_success.disconnect(on_success)
        task_failure.disconnect(on_failure)
    assert ended == ["success"]
    assert client.wait(job_id, timeout=60) == first and first["agent"]["deliveries"] == 1
    assert len(backend.prompts) == prompts
    assert int(client.redis.get(client.keys.job(job_id, "deliveries"))) == times_before + 1
    assert client.redis.hget("fleet:agent:agent-t1:info", "jobs_done") in ("1", b"1")


def test_resubmitting_a_failed_job_runs_it_afresh(fleet, redis_server):
    client, backend = fleet
    job = make_job(max_iterations=4)
    job_id = redeliver(client, job, redis_server, times_before=3)
    with pytest.raises(JobFailed):
        client.wait(job_id, timeout=60)
    again_id, sent = client.submit(job)
    assert (again_id, sent) == (job_id, True)
    assert client.wait(job_id, timeout=120)["tests_kept"] == 2


def test_flags_are_read_at_job_start(fleet, monkeypatch):
    """trm off → one generation pass; sona off → frozen policy, no update; cache off → the model
    runs again for a repeated job. Changed while the agent runs, without a restart."""
    from celery.result import AsyncResult

    client, backend = fleet
    monkeypatch.setenv("FLEET_ENGINE_TRM_ENABLED", "0")
    monkeypatch.setenv("FLEET_LEARNING_ENABLED", "0")
    monkeypatch.setenv("FLEET_CACHE_ENABLED", "0")
    job = make_job(max_iterations=3)
    job_id, _ = client.submit(job)
    report = client.wait(job_id, timeout=120)
    assert report["flags"] == {"trm": False, "sona": False, "cache": False, "strategy": "cost-optimized"}
    assert len(report["iterations"]) == 1 and len(report["iterations"][0]["attempts"]) == 1
    assert report["learning"]["applied"] is False and report["learning"]["explored"] is False
    prompts = len(backend.prompts)
    AsyncResult(job_id, app=client.app).forget()
    client.redis.delete(client.keys.job(job_id, "submitted"))
    client.submit(job)
    again = client.wait(job_id, timeout=120)
    assert again["cached"] is False and len(backend.prompts) == prompts + 1
