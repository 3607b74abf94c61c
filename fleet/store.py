"""Redis: connections, key namespaces, the agent registry, and per-job counters.

Key layout (``<prefix>`` is ``fleet.prefix``):
    <prefix>:agent:<id>:info          hash   one agent's registry entry (model, node, counters)
    <prefix>:agent:<id>:usage         stream provider usage per job (tokens, CPU seconds), for `fleet costs`
    <prefix>:agent:<id>:…             the agent's own namespace (learning state lives here)
    <prefix>:shared:…                 fleet-wide state (maintenance sweeps, shared patterns)
    <prefix>:job:<job_id>:deliveries  int    times the job was delivered to an agent
    <prefix>:job:<job_id>:submitted   str    set while a submission is live (deduplication)
    <prefix>:job:<job_id>:done        bytes  the report of the job's first completion (zlib JSON)
"""

from __future__ import annotations

import base64
import json
import re
import time
import zlib
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

from fleet.costs import PriceTable
from fleet.errors import FleetUnreachable
from fleet.llm.base import Usage

AGENT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def safe_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def connect(url: str, timeout: float) -> redis.Redis:
    """A client that has answered PING, or FleetUnreachable naming the URL tried."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=max(timeout, 5.0),
                                  decode_responses=True)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise FleetUnreachable(
            f"cannot reach Redis at {safe_url(url)} ({exc}); start the fleet with `fleet up` "
            "or set FLEET_REDIS_URL"
        ) from exc
    return client


@dataclass(frozen=True)
class Keys:
    """Builds every key the fleet uses under one prefix."""

    prefix: str

    def agent(self, agent_id: str, *parts: str) -> str:
        if not AGENT_ID.fullmatch(agent_id):
            raise ValueError(f"invalid agent id {agent_id!r}")
        return ":".join([self.prefix, "agent", agent_id, *parts])

    def shared(self, *parts: str) -> str:
        return ":".join([self.prefix, "shared", *parts])

    def job(self, job_id: str, *parts: str) -> str:
        return ":".join([self.prefix, "job", job_id, *parts])

    def agent_info_pattern(self) -> str:
        return f"{self.prefix}:agent:*:info"


def register_agent(client: redis.Redis, keys: Keys, agent_id: str, info: dict[str, Any]) -> None:
    """Create or refresh the agent's registry entry."""
    now = time.time()
    client.hset(keys.agent(agent_id, "info"), mapping={**info, "agent_id": agent_id, "namespace":
                keys.agent(agent_id), "started_at": now, "last_seen": now})


def touch_agent(client: redis.Redis, keys: Keys, agent_id: str) -> None:
    """Record that the agent is alive (its ``last_seen``)."""
    client.hset(keys.agent(agent_id, "info"), "last_seen", time.time())


def list_agents(client: redis.Redis, keys: Keys) -> list[dict[str, str]]:
    """Every registered agent's info, sorted by id."""
    agents = [client.hgetall(key) for key in client.scan_iter(keys.agent_info_pattern(), count=200)]
    return sorted((a for a in agents if a), key=lambda a: a.get("agent_id", ""))


def count_delivery(client: redis.Redis, keys: Keys, job_id: str, ttl: int) -> int:
    """Increment and return how often ``job_id`` has been delivered (the poison-job guard)."""
    key = keys.job(job_id, "deliveries")
    pipe = client.pipeline()
    pipe.incr(key)
    pipe.expire(key, ttl)
    return int(pipe.execute()[0])


def complete_job(client: redis.Redis, keys: Keys, agent_id: str, job_id: str, report: dict[str, Any],
                 ttl: int) -> bool:
    """Record the job's completion once per job id, fleet-wide: store ``report`` under
    ``<prefix>:job:<id>:done`` (TTL ``ttl``) and add 1 to the agent's ``jobs_done``, in one
    transaction (WATCH on the done key). False = the job had completed before (a redelivery of a
    job whose message was not acknowledged in time): nothing is written."""
    done, info = keys.job(job_id, "done"), keys.agent(agent_id, "info")
    blob = base64.b64encode(zlib.compress(json.dumps(report, default=str).encode()))  # text: clients decode

    def body(pipe: redis.client.Pipeline) -> bool:
        if pipe.exists(done):
            return False
        pipe.multi()
        pipe.set(done, blob, ex=max(1, ttl))
        pipe.hset(info, "last_seen", time.time())
        pipe.hincrby(info, "jobs_done", 1)
        return True

    return bool(client.transaction(body, done, value_from_callable=True))


def completed_report(client: redis.Redis, keys: Keys, job_id: str) -> dict[str, Any] | None:
    """The report stored by the job's first completion (:func:`complete_job`), or None. Works
    with a client that decodes responses (the agents') and with one that does not."""
    blob = client.get(keys.job(job_id, "done"))
    return json.loads(zlib.decompress(base64.b64decode(blob))) if blob else None


USAGE_CAP = 100000


def record_usage(client: redis.Redis, keys: Keys, agent_id: str, job_id: str, usages: list[Usage],
                 prices: PriceTable) -> list[dict[str, Any]]:
    """Append each provider's usage of one job to ``<prefix>:agent:<id>:usage`` (a capped stream,
    read by `fleet costs`); returns the records with their cost and cloud-only counterfactual."""
    out = []
    for u in usages:
        record = {**asdict(u), "job_id": job_id, "ts": round(time.time(), 3), "cost": prices.cost(u),
                  "cloud_only": prices.counterfactual(u)}
        client.xadd(keys.agent(agent_id, "usage"), {k: str(v) for k, v in record.items()}, maxlen=USAGE_CAP,
                    approximate=True)
        out.append(record)
    return out


def read_usage(client: redis.Redis, keys: Keys, since: float) -> list[Usage]:
    """Every agent's usage records newer than the unix time ``since``."""
    start = f"{int(since * 1000)}-0"
    out = []
    for key in client.scan_iter(keys.agent_info_pattern().replace(":info", ":usage"), count=500):
        for _, f in client.xrange(key, min=start):
            out.append(Usage(f["provider"], f["model_id"], int(f["prompt_tokens"]), int(f["completion_tokens"]),
                             float(f["cpu_seconds"])))
    return out
