"""Worker consumer bootsteps, named for what they do."""

from __future__ import annotations

import functools
import logging
from typing import Any

from celery import bootsteps

from fleet import config, inflight
from workers import agent

log = logging.getLogger(__name__)


@functools.cache
def record(nodename: str | None) -> inflight.Inflight:
    """This agent's in-flight record (one Redis connection per main process)."""
    settings = config.load()
    return inflight.for_agent(settings, agent.agent_id_for(settings, nodename))


class RequeueOrphans(bootsteps.StartStopStep):
    """At every consumer start: when the agent's process starts (its predecessor was killed) and
    after each reconnection to the broker (a lost connection cancelled the running job,
    ``worker_cancel_long_running_tasks_on_connection_loss``), put the jobs recorded as in flight
    back in their queue at once instead of after the visibility timeout (fleet/inflight.py).
    Runs before the event loop consumes; never stops the worker."""

    requires = ("celery.worker.consumer.connection:Connection",)

    def start(self, c: Any) -> None:
        try:
            record(c.hostname).requeue_orphans(c.app)
        except Exception:  # noqa: BLE001 - a failed requeue leaves the job to the visibility timeout
            log.exception("could not requeue the jobs recorded as in flight for this agent")
