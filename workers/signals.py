"""Worker lifecycle hooks, named for when they run."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery.signals import celeryd_init, task_received, worker_process_init, worker_process_shutdown

from fleet import config, metrics
from fleet.celeryconf import GENERATE_TASK
from workers import agent, steps

log = logging.getLogger(__name__)


@celeryd_init.connect
def remember_nodename(sender: str | None = None, **_: object) -> None:
    """In the main worker process, before fork: pass the node name to the pool processes."""
    if sender:
        os.environ["FLEET_AGENT_NODENAME"] = sender


@celeryd_init.connect
def serve_metrics(sender: str | None = None, **_: object) -> None:
    """In the main worker process, before fork: clear the multiprocess directory, export it to the
    pool processes and serve /metrics (see fleet/metrics.py)."""
    metrics.start_worker_exposition(config.load(), sender)


@task_received.connect
def remember_delivery(sender: Any = None, request: Any = None, **_: object) -> None:
    """In the main worker process, as a job message arrives: record its delivery tag."""
    tag = getattr(getattr(request, "message", None), "delivery_tag", None)
    if tag and getattr(request, "name", None) == GENERATE_TASK:
        try:
            steps.record(getattr(sender, "hostname", None)).mark(request.id, str(tag))
        except Exception:  # noqa: BLE001 - bookkeeping only: the job runs regardless
            log.exception("could not record the delivery of job %s", request.id)


@worker_process_init.connect
def load_model(**_: object) -> None:
    """In each pool process, after fork: load the model once and register the agent (unless an
    agent was installed already, as an in-process test worker does)."""
    if agent.installed() is None:
        agent.install(agent.Agent.start(os.environ.get("FLEET_AGENT_NODENAME")))


@worker_process_shutdown.connect
def metrics_process_dead(pid: int | None = None, **_: object) -> None:
    """In a pool process as it exits: drop its live-gauge files from the multiprocess directory."""
    metrics.process_stopped(pid or os.getpid())
