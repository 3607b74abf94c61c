"""Celery settings derived from the fleet settings, shared by the workers and the CLI client.

The visibility timeout must exceed the hard time limit, or Redis redelivers a job that is still
running: ``visibility_timeout = celery.visibility_timeout or hard_time_limit * 2 + 60``.

A ``redis://`` / ``rediss://`` broker is served by :mod:`fleet.transport` (``broker_transport``):
kombu's Redis transport, except that a message on a queue that is not a kombu message (raw
garbage) is moved to ``<queue>.dead`` and logged instead of killing the worker.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from kombu import Queue

from fleet.transport import SCHEMES, TRANSPORT
from fleet.config import Settings

GENERATE_QUEUE = "generate-tests"
MAINTENANCE_QUEUE = "maintenance"
GENERATE_TASK = "fleet.generate_tests"
MAINTENANCE_TASK = "fleet.maintenance"
CONSOLIDATE_TASK = "fleet.consolidate"


def visibility_timeout(settings: Settings) -> int:
    """See the module docstring."""
    cel = settings["celery"]
    return int(cel["visibility_timeout"] or cel["hard_time_limit"] * 2 + 60)


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery configuration mapping (``app.conf.update(**celery_config(settings))``)."""
    cel = settings["celery"]
    url = settings["redis"]["url"]
    transport = {"visibility_timeout": visibility_timeout(settings)}
    conf: dict[str, Any] = {
        "broker_url": url,
        "result_backend": url,
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json", "msgpack"],
        "result_accept_content": ["json", "msgpack"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": cel["soft_time_limit"],
        "task_time_limit": cel["hard_time_limit"],
        "result_expires": cel["result_expires"],
        "result_extended": True,
        "task_track_started": True,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # Broker and backend are one Redis: when it restarts, the cancel above writes RETRY to the
        # backend while it is down. Without retries that write fails, the cancel is lost, the job is
        # recorded REVOKED and its message acknowledged (the job is lost). With them the write waits
        # for Redis, the message stays unacknowledged and is redelivered (tests/test_reliability.py).
        "result_backend_always_retry": True,
        "worker_soft_shutdown_timeout": cel["soft_shutdown_timeout"],
        "task_default_queue": GENERATE_QUEUE,
        "task_queues": (Queue(GENERATE_QUEUE), Queue(MAINTENANCE_QUEUE)),
        "task_routes": {GENERATE_TASK: {"queue": GENERATE_QUEUE}, MAINTENANCE_TASK: {"queue": MAINTENANCE_QUEUE},
                        CONSOLIDATE_TASK: {"queue": MAINTENANCE_QUEUE}},
        "beat_schedule": {
            "maintenance-sweep": {
                "task": MAINTENANCE_TASK,
                "schedule": float(cel["maintenance_interval"]),
                "options": {"queue": MAINTENANCE_QUEUE, "expires": float(cel["maintenance_interval"])},
            },
            "learning-consolidation": {
                "task": CONSOLIDATE_TASK,
                "schedule": float(settings["learning"]["consolidate_every"]),
                "options": {"queue": MAINTENANCE_QUEUE, "expires": float(settings["learning"]["consolidate_every"])},
            },
        },
    }
    if urlsplit(url).scheme in SCHEMES:
        conf["broker_transport"] = TRANSPORT
    return conf
