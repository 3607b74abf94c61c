"""The job an agent is running, so that the agent requeues it at once when it comes back after a
hard kill.

With a Redis broker, the message of a running job is *unacknowledged* (``task_acks_late``): it
sits in kombu's ``unacked`` hash under its delivery tag. When the worker is SIGKILLed (OOM kill,
crash, node loss), nothing restores it until the broker's visibility timeout (hard time limit ×
2 + 60 s by default) has passed. The agent's main process therefore records, in the hash
``<prefix>:agent:<id>:inflight``, the delivery tag of every job message it receives (task id →
tag; TTL = the visibility timeout, refreshed at each receipt), and the job deletes its entry when
it ends. When an agent with the
same id starts (supervisord, systemd or Kubernetes restarting it), it restores every recorded tag
with kombu's ``QoS.restore_by_tag``, which moves the message back to its queue in one Redis
transaction, or does nothing if it was acknowledged meanwhile; then it clears the hash.

Contract: agent ids are unique among running agents (``fleet up``/``fleet scale`` guarantee it);
two live processes sharing an id would requeue each other's jobs on restart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis

from fleet.acl import agent_url
from fleet.celeryconf import visibility_timeout
from fleet.config import Settings
from fleet.store import Keys, connect

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inflight:
    """One agent's record of the job messages it holds unacknowledged."""

    client: redis.Redis
    keys: Keys
    agent_id: str
    ttl: int

    @property
    def key(self) -> str:
        return self.keys.agent(self.agent_id, "inflight")

    def mark(self, task_id: str, tag: str) -> None:
        """Main process, on receipt: remember the message of ``task_id`` by its delivery tag."""
        pipe = self.client.pipeline()
        pipe.hset(self.key, task_id, tag)
        pipe.expire(self.key, max(1, self.ttl))
        pipe.execute()

    def clear(self, task_id: str) -> None:
        """The job, as it ends: its message is about to be acknowledged."""
        self.client.hdel(self.key, task_id)

    def requeue_orphans(self, app: Any) -> list[str]:
        """At agent start: put the jobs this agent id held when its previous process died back in
        their queue; returns the delivery tags restored (acknowledged ones are skipped by kombu)."""
        tags = sorted(set(self.client.hvals(self.key)))
        if tags:
            with app.connection_for_write() as conn:
                for tag in tags:
                    conn.default_channel.qos.restore_by_tag(tag, leftmost=True)
            log.warning("agent %s restarted: requeued the unacknowledged job(s) of its previous process: %s",
                        self.agent_id, ", ".join(tags))
        self.client.delete(self.key)
        return tags


def for_agent(settings: Settings, agent_id: str) -> Inflight:
    """The record of ``agent_id``, connected as the agent's own Redis user when ACLs are on."""
    client = connect(agent_url(settings, agent_id), settings["redis"]["connect_timeout"])
    return Inflight(client, Keys(settings.prefix), agent_id, visibility_timeout(settings))
