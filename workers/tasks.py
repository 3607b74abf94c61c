"""The fleet's tasks: ``fleet.generate_tests`` (agents) and ``fleet.maintenance`` (beat)."""

from __future__ import annotations

import time
from typing import Any

from celery.utils.log import get_task_logger

from fleet.celeryconf import GENERATE_TASK, MAINTENANCE_TASK
from fleet.errors import BadInput, FleetError
from fleet.jobs import Job, limits_from
from fleet.store import count_delivery, list_agents, touch_agent
from workers import agent as agent_mod
from workers.app import app

log = get_task_logger(__name__)


class PoisonJob(FleetError):
    """The job was delivered more often than ``celery.max_deliveries``: it kills its worker."""


@app.task(bind=True, name=GENERATE_TASK)
def generate_tests(self, job_data: Any) -> dict[str, Any]:
    """Run one generate-tests job on this agent and return its report."""
    agent = agent_mod.current()
    settings = agent.settings
    job = Job.from_dict(job_data, limits_from(settings))  # BadInput fails the task, no retry
    if self.request.id and self.request.id != job.job_id:
        raise BadInput(f"task id {self.request.id} does not match the job's id {job.job_id}")
    deliveries = count_delivery(agent.redis, agent.keys, job.job_id, settings["celery"]["result_expires"])
    if deliveries > settings["celery"]["max_deliveries"]:
        raise PoisonJob(f"job {job.job_id} was delivered {deliveries} times (celery.max_deliveries); giving up")
    touch_agent(agent.redis, agent.keys, agent.agent_id)
    started = time.monotonic()
    report = agent.engine.run(job, progress=lambda p: self.update_state(state="PROGRESS", meta=p))
    report["agent"] = {"id": agent.agent_id, "namespace": agent.keys.agent(agent.agent_id),
                       "node": self.request.hostname, "deliveries": deliveries}
    report["wall_seconds"] = round(time.monotonic() - started, 3)
    touch_agent(agent.redis, agent.keys, agent.agent_id, jobs_done=1)
    log.info("job %s: %d tests kept, quality %.3f", job.job_id, report["tests_kept"], report["quality"])
    return report


@app.task(name=MAINTENANCE_TASK)
def maintenance() -> dict[str, Any]:
    """Beat's sweep: list agents whose heartbeat is older than ``agent.stale_after``."""
    agent = agent_mod.current()
    stale_after = agent.settings["agent"]["stale_after"]
    now = time.time()
    agents = list_agents(agent.redis, agent.keys)
    stale = [a["agent_id"] for a in agents if now - float(a.get("last_seen", 0)) > stale_after]
    agent.redis.hset(agent.keys.shared("maintenance"), mapping={
        "last_run": now, "agents": len(agents), "stale": ",".join(stale)})
    return {"agents": len(agents), "stale": stale}
