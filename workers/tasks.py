"""The fleet's tasks: ``fleet.generate_tests`` (agents), ``fleet.maintenance`` and
``fleet.consolidate`` (beat, on the maintenance queue)."""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from typing import Any

from celery.utils.log import get_task_logger

import redis

from fleet.cache import cache_key
from fleet.celeryconf import CONSOLIDATE_TASK, GENERATE_TASK, MAINTENANCE_TASK
from fleet.sona.codec import CorruptState
from fleet.sona.publisher import consolidate_fleet
from fleet.sona.settings import LearningSettings
from fleet.sona.wiring import learning_store
from fleet import config
from fleet.inflight import Inflight
from fleet import metrics
from fleet.costs import PriceTable
from fleet.errors import BadInput, FleetError
from fleet.flags import Flags
from fleet.llm.router import RoutedBackend, RouterSettings, route
from fleet.jobs import Job, limits_from
from fleet.store import complete_job, completed_report, count_delivery, list_agents, record_usage, touch_agent
from workers import agent as agent_mod
from workers.app import app

log = get_task_logger(__name__)


class PoisonJob(FleetError):
    """The job was delivered more often than ``celery.max_deliveries``: it kills its worker."""


@app.task(bind=True, name=GENERATE_TASK)
def generate_tests(self, job_data: Any) -> dict[str, Any]:
    """Run one generate-tests job on this agent and return its report."""
    agent = agent_mod.current()
    try:
        return _checked_run(self, agent, job_data)
    finally:  # the message is acknowledged next: nothing to requeue if this agent dies now
        if self.request.id:
            _forget_inflight(agent, self.request.id)


def _checked_run(task: Any, agent: agent_mod.Agent, job_data: Any) -> dict[str, Any]:
    """Validate the job (BadInput and PoisonJob fail the task, no retry), then run it. A
    redelivery of a job that completed already (killed before its message was acknowledged)
    returns the first completion's report and does nothing else, however often it was delivered."""
    settings = agent.settings
    job = Job.from_dict(job_data, limits_from(settings))
    if task.request.id and task.request.id != job.job_id:
        raise BadInput(f"task id {task.request.id} does not match the job's id {job.job_id}")
    deliveries = count_delivery(agent.redis, agent.keys, job.job_id, settings["celery"]["result_expires"])
    done = completed_report(agent.redis, agent.keys, job.job_id)
    if done is not None:
        log.warning("job %s completed before (delivery %d): returning its report", job.job_id, deliveries)
        return done
    if deliveries > settings["celery"]["max_deliveries"]:
        raise PoisonJob(f"job {job.job_id} was delivered {deliveries} times (celery.max_deliveries); giving up")
    return _run(task, agent, job, deliveries)


def _forget_inflight(agent: agent_mod.Agent, job_id: str) -> None:
    """Clear the job's in-flight entry. A Redis error must not replace the job's own outcome (a
    cancel when the broker connection was lost): the entry then stays, and the reconnecting
    consumer requeues the job (workers/steps.py)."""
    try:
        Inflight(agent.redis, agent.keys, agent.agent_id, 0).clear(job_id)
    except redis.RedisError as exc:
        log.warning("job %s: could not clear its in-flight entry: %s", job_id, exc)


def _run(task: Any, agent: agent_mod.Agent, job: Job, deliveries: int) -> dict[str, Any]:
    """The job itself: route, answer from the cache or generate, learn, record; the report."""
    touch_agent(agent.redis, agent.keys, agent.agent_id)
    started = time.monotonic()
    now = config.load()
    flags = Flags.from_settings(now)
    routed = route(job, replace(RouterSettings.from_settings(now), strategy=flags.strategy), agent.providers,
                   agent.breakers)
    key = _cache_key(agent, job, flags, routed)
    report = metrics.cache_lookup(agent.cache, key) if flags.cache else None
    if report is not None:
        report["cached"], report["cached_from"] = True, report.get("agent")
        report["learning"] = {"applied": False, "why": "answered from the result cache"}
    else:
        report = _generate(task, agent, job, flags, routed)
    report["flags"] = asdict(flags)
    report["agent"] = {"id": agent.agent_id, "namespace": agent.keys.agent(agent.agent_id),
                       "node": task.request.hostname, "deliveries": deliveries}
    report["wall_seconds"] = round(time.monotonic() - started, 3)
    if flags.cache and not report["cached"]:
        agent.cache.put(key, report, target=job.module)
    if complete_job(agent.redis, agent.keys, agent.agent_id, job.job_id, report,
                    agent.settings["celery"]["result_expires"]):
        log.info("job %s: %d tests kept, quality %.3f", job.job_id, report["tests_kept"], report["quality"])
        metrics.record_job(report)
        return report
    return completed_report(agent.redis, agent.keys, job.job_id) or report


def _cache_key(agent: agent_mod.Agent, job: Job, flags: Flags, routed: RoutedBackend) -> str:
    """The job's cache key: its bundle, target and options, the routed model, and the settings that
    shape output (engine, sampling, the sandbox's python, the trm flag and the routing strategy)."""
    engine = agent.engine
    digest = {"engine": asdict(engine.settings.for_job(job)), "sampling": asdict(engine.sampling),
              "python": engine.limits.python, "trm": flags.trm, "strategy": flags.strategy}
    return cache_key(job, model_id=routed.model_id, model_sha256=routed.sha256, settings_digest=digest)


def _generate(task: Any, agent: agent_mod.Agent, job: Job, flags: Flags, routed: RoutedBackend) -> dict[str, Any]:
    """Plan with the learned policy, run the engine on the routed provider, learn from the report.
    TRM refines when the flag is on and the router's decision refines (``Decision.refine``)."""
    plan = agent.learner.plan(job.target_source, job.module, learning=flags.sona)
    refine = flags.trm and routed.decision.refine
    metrics.time_completions(routed)
    report = agent.engine.with_backend(routed).run(
        job, progress=lambda p: task.update_state(state="PROGRESS", meta=p), examples=plan.examples,
        strategy=plan.strategy, refine=refine)
    report["cached"] = False
    report["routing"] = routed.record()
    report["usage"] = record_usage(agent.redis, agent.keys, agent.agent_id, job.job_id, routed.usage(),
                                   PriceTable.from_settings(agent.settings))
    report["learning"] = _learn(agent, job, plan, report)
    return report


def _learn(agent: agent_mod.Agent, job: Job, plan: Any, report: dict[str, Any]) -> dict[str, Any]:
    """The learning step; its failure is reported, never fails the job (the tests are done)."""
    try:
        return agent.learner.learn(job.job_id, plan, report)
    except (redis.RedisError, CorruptState, OSError) as exc:
        log.warning("job %s: learning step failed: %s", job.job_id, exc)
        return {**plan.as_dict(), "applied": False, "error": f"{type(exc).__name__}: {exc}"}


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
    pending = learning_store(agent.settings).pending_jobs()
    due = pending >= LearningSettings.from_settings(agent.settings).consolidate_after_jobs
    if due:
        consolidate.delay()
    return {"agents": len(agents), "stale": stale, "learned_since_consolidation": pending, "consolidation_sent": due}


@app.task(name=CONSOLIDATE_TASK)
def consolidate() -> dict[str, Any]:
    """Fold the agents' learning into a new shared version (one at a time fleet-wide)."""
    settings = agent_mod.current().settings
    report = consolidate_fleet(learning_store(settings), LearningSettings.from_settings(settings))
    log.info("consolidation: %s", report)
    metrics.record_consolidation(report, settings)
    return report
