"""The submitting side: send a job, wait for it with progress, fetch results, report status.

Never imports the model runtime, so ``fleet submit`` starts fast on a CI runner without one.
A submission is deduplicated by its deterministic job id: while ``<prefix>:job:<id>:submitted``
exists (set with NX for the wait timeout), a resubmission attaches to the running job instead of
sending it again; a job that already succeeded returns its stored result; a job that failed is
sent again as a fresh attempt (its old result and delivery count are cleared first).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from celery import Celery
from celery.result import AsyncResult

from fleet.celeryconf import GENERATE_QUEUE, GENERATE_TASK, MAINTENANCE_QUEUE, celery_config
from fleet.config import Settings
from fleet.errors import FleetUnreachable, JobFailed, JobTimeout
from fleet.jobs import Job
from fleet.store import Keys, connect, list_agents

Progress = Callable[[str, dict[str, Any]], None]


def make_app(settings: Settings) -> Celery:
    app = Celery("fleet-client")
    app.conf.update(**celery_config(settings))
    return app


@dataclass
class Client:
    """A connection to one fleet (its Redis) with the fleet's settings."""

    settings: Settings

    def __post_init__(self) -> None:
        self.redis = connect(self.settings["redis"]["url"], self.settings["redis"]["connect_timeout"])
        self.app = make_app(self.settings)
        self.keys = Keys(self.settings.prefix)

    def submit(self, job: Job) -> tuple[str, bool]:
        """Send ``job`` unless an identical one is live or done; returns (job id, newly sent)."""
        job_id = job.job_id
        previous = AsyncResult(job_id, app=self.app)
        marker = self.keys.job(job_id, "submitted")
        ttl = int(self.settings["jobs"]["wait_timeout"] + self.settings["celery"]["hard_time_limit"])
        if previous.state == "SUCCESS":
            return job_id, False
        if previous.state in ("FAILURE", "REVOKED"):  # a retry after a failure is a fresh attempt
            previous.forget()
            self.redis.set(marker, "1", ex=ttl)
        elif not self.redis.set(marker, "1", nx=True, ex=ttl):
            return job_id, False
        # a new submission: count its deliveries afresh, and run it even if an earlier one completed
        self.redis.delete(self.keys.job(job_id, "deliveries"), self.keys.job(job_id, "done"))
        self.app.send_task(GENERATE_TASK, args=[job.to_dict()], task_id=job_id, queue=GENERATE_QUEUE)
        return job_id, True

    def wait(self, job_id: str, timeout: float, progress: Progress | None = None, poll: float = 0.5) -> dict[str, Any]:
        """Block until the job ends; return its report, or raise JobFailed / JobTimeout."""
        result = AsyncResult(job_id, app=self.app)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            state, info = result.state, result.info
            if (state, info) != last and progress:
                progress(state, info if isinstance(info, dict) else {})
                last = (state, info)
            if state == "SUCCESS":
                return result.get(timeout=5)
            if state in ("FAILURE", "REVOKED"):
                raise JobFailed(f"job {job_id} failed: {type(info).__name__}: {info}")
            time.sleep(poll)
        raise JobTimeout(f"job {job_id} did not finish within {timeout:.0f}s; it keeps running: "
                         f"`fleet result {job_id}` fetches it later")

    def result(self, job_id: str) -> tuple[str, Any]:
        """The job's state and its report (SUCCESS), progress (PROGRESS) or error (FAILURE)."""
        result = AsyncResult(job_id, app=self.app)
        return result.state, result.info

    def status(self, ping_timeout: float = 1.5) -> dict[str, Any]:
        """Workers answering a ping, queue depths, and registered agents with their namespaces."""
        try:
            replies = self.app.control.ping(timeout=ping_timeout) or []
        except OSError as exc:
            raise FleetUnreachable(f"broker unreachable: {exc}") from exc
        workers = sorted(name for reply in replies for name in reply)
        queues = {q: self.redis.llen(q) for q in (GENERATE_QUEUE, MAINTENANCE_QUEUE)}
        return {"workers": workers, "queues": queues, "agents": list_agents(self.redis, self.keys)}
