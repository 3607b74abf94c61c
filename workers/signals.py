"""Worker lifecycle hooks, named for when they run."""

from __future__ import annotations

import os

from celery.signals import celeryd_init, worker_process_init, worker_process_shutdown

from fleet import config, metrics
from workers import agent


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
