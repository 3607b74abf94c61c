"""Learning state in Redis (binary client: ``decode_responses=False``).

    <prefix>:agent:<id>:sona:micro        blob   the agent's MicroLoRA (codec kind "micro": a, b, scale,
                                                 version, job_id, base_version, updates since reset)
    <prefix>:agent:<id>:sona:applied      zset   job ids whose update was applied (idempotency), capped
    <prefix>:agent:<id>:sona:experience   stream features, arm, reward, exemplar test, patterns used (capped)
    <prefix>:shared:sona:base:<ref>       blob   a BaseLoRA version (codec kind "base": adapter, W0, EWC state,
                                                 stream cursors, report); ref = "<N>-<random token>"
    <prefix>:shared:sona:patterns:<ref>   blob   the shared patterns of that version (fleet.sona.patterns format)
    <prefix>:shared:sona:current          str    the published ref; swapped last (atomic publish)
    <prefix>:shared:sona:lock             lock   held while a consolidation runs
    <prefix>:shared:sona:log              stream consolidation reports (capped)
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import redis

from fleet.sona import codec
from fleet.sona.ewc import EwcState
from fleet.sona.lora import LowRank
from fleet.store import Keys

APPLIED_CAP = 10000
LOG_CAP = 200


@dataclass
class Micro:
    """One agent's MicroLoRA and its bookkeeping."""

    adapter: LowRank
    version: int = 0
    job_id: str = ""
    base_version: int = 0
    updates: int = 0

    def blob(self) -> bytes:
        return codec.dumps("micro", {"a": self.adapter.a, "b": self.adapter.b, "scale": self.adapter.scale,
                                     "version": self.version, "job_id": self.job_id,
                                     "base_version": self.base_version, "updates": self.updates})

    @classmethod
    def from_blob(cls, blob: bytes) -> "Micro":
        f = codec.loads(blob, "micro", ("a", "b", "scale", "version", "job_id", "base_version", "updates"))
        return cls(LowRank(f["a"], f["b"], float(f["scale"])), int(f["version"]), str(f["job_id"]),
                   int(f["base_version"]), int(f["updates"]))


@dataclass
class Base:
    """A published BaseLoRA version with everything the next consolidation needs."""

    adapter: LowRank
    w0: np.ndarray
    ewc: EwcState
    version: int
    arms: list[str]
    cursors: dict[str, str] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)

    def blob(self) -> bytes:
        return codec.dumps("base", {"a": self.adapter.a, "b": self.adapter.b, "scale": self.adapter.scale,
                                    "w0": self.w0, "fisher": self.ewc.fisher, "anchor": self.ewc.anchor,
                                    "version": self.version, "arms": self.arms, "cursors": self.cursors,
                                    "report": self.report, "created": time.time()})

    @classmethod
    def from_blob(cls, blob: bytes) -> "Base":
        f = codec.loads(blob, "base", ("a", "b", "scale", "w0", "fisher", "anchor", "version", "arms", "cursors",
                                       "report"))
        return cls(LowRank(f["a"], f["b"], float(f["scale"])), f["w0"], EwcState(f["fisher"], f["anchor"]),
                   int(f["version"]), list(f["arms"]), dict(f["cursors"]), dict(f["report"]))


def binary_client(url: str, timeout: float) -> redis.Redis:
    """A Redis client that returns bytes (learning blobs are binary)."""
    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=max(timeout, 5.0))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class SonaStore:
    """Reads and writes the keys of the module docstring."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client, self.keys = client, keys

    # -- agent side -----------------------------------------------------------------------
    def micro_key(self, agent_id: str) -> str:
        return self.keys.agent(agent_id, "sona", "micro")

    def experience_key(self, agent_id: str) -> str:
        return self.keys.agent(agent_id, "sona", "experience")

    def load_micro(self, agent_id: str) -> Micro | None:
        blob = self.client.get(self.micro_key(agent_id))
        return Micro.from_blob(blob) if blob else None

    def _transact(self, watched: list[str], body: Callable[[redis.client.Pipeline], bool]) -> bool:
        """Run ``body`` under WATCH on ``watched`` (it calls ``pipe.multi()`` before writing), retrying
        while another client changes a watched key; returns what ``body`` returns."""
        while True:
            with self.client.pipeline() as pipe:
                try:
                    pipe.watch(*watched)
                    done = body(pipe)
                    if done:
                        pipe.execute()
                    return done
                except redis.WatchError:
                    continue

    def apply_once(self, agent_id: str, job_id: str, update: Callable[[Micro | None], Micro],
                   experience: dict[str, Any], cap: int) -> bool:
        """Apply ``update`` to the agent's MicroLoRA and log ``experience``, atomically and at most once
        per job id. False = this job's update was applied before (a redelivery)."""
        micro_key, applied = self.micro_key(agent_id), self.keys.agent(agent_id, "sona", "applied")

        def body(pipe: redis.client.Pipeline) -> bool:
            if pipe.zscore(applied, job_id) is not None:
                return False
            blob = pipe.get(micro_key)
            new = update(Micro.from_blob(blob) if blob else None)
            pipe.multi()
            pipe.set(micro_key, new.blob())
            pipe.zadd(applied, {job_id: time.time()})
            pipe.zremrangebyrank(applied, 0, -APPLIED_CAP - 1)
            pipe.xadd(self.experience_key(agent_id), experience, maxlen=cap, approximate=True)
            return True

        return self._transact([micro_key, applied], body)

    # -- shared, read ---------------------------------------------------------------------
    def current(self) -> tuple[int, str]:
        """(version, ref) of the published version; (0, "") before the first consolidation."""
        ref = self.client.get(self.keys.shared("sona", "current"))
        ref = _text(ref) if ref else ""
        return (int(ref.split("-", 1)[0]), ref) if ref else (0, "")

    def current_version(self) -> int:
        return self.current()[0]

    def load_base(self, ref: str) -> Base | None:
        blob = self.client.get(self.keys.shared("sona", "base", ref)) if ref else None
        return Base.from_blob(blob) if blob else None

    def load_patterns_blob(self, ref: str) -> bytes | None:
        return self.client.get(self.keys.shared("sona", "patterns", ref)) if ref else None

    # -- consolidation side ---------------------------------------------------------------
    def agents(self) -> list[str]:
        """Agents that have learning state (a MicroLoRA key)."""
        pattern = self.keys.agent("x", "sona", "micro").replace(":agent:x:", ":agent:*:")
        found = {_text(k).split(":agent:", 1)[1].split(":", 1)[0] for k in self.client.scan_iter(pattern, count=500)}
        return sorted(found)

    def experience(self, agent_id: str, after: str, count: int) -> list[tuple[str, dict[str, bytes]]]:
        """Up to ``count`` newest entries after stream id ``after`` (oldest first)."""
        entries = self.client.xrevrange(self.experience_key(agent_id), max="+", min=f"({after}" if after != "0" else "-",
                                        count=count)
        return [(_text(i), {_text(k): v for k, v in fields.items()}) for i, fields in reversed(entries)]

    def pending_jobs(self) -> int:
        """Updates applied fleet-wide since each agent's last reset (the consolidation trigger)."""
        total = 0
        for agent_id in self.agents():
            micro = self.load_micro(agent_id)
            total += micro.updates if micro else 0
        return total

    def lock(self, timeout: float) -> redis.lock.Lock:
        return self.client.lock(self.keys.shared("sona", "lock"), timeout=timeout, blocking=False)

    def publish(self, base: Base, patterns_blob: bytes, *, crash_before_swap: bool = False) -> str:
        """Write version N's blobs under a fresh ref, then swap the pointer to it, only if the
        pointer still names version N − 1 (else the blobs are removed and RuntimeError raised).
        A crash before the swap leaves an unreferenced ref and version N − 1 in force."""
        ref = f"{base.version}-{secrets.token_hex(4)}"
        blobs = {self.keys.shared("sona", "base", ref): base.blob(), self.keys.shared("sona", "patterns", ref): patterns_blob}
        self.client.mset(blobs)
        if crash_before_swap:
            raise RuntimeError("injected crash between write and swap")
        pointer = self.keys.shared("sona", "current")

        def swap(pipe: redis.client.Pipeline) -> bool:
            ref_now = pipe.get(pointer)
            if (int(_text(ref_now).split("-", 1)[0]) if ref_now else 0) != base.version - 1:
                return False
            pipe.multi()
            pipe.set(pointer, ref)
            return True

        if not self._transact([pointer], swap):
            self.client.delete(*blobs)
            raise RuntimeError(f"version {base.version - 1} is no longer current; another consolidation published")
        self.client.xadd(self.keys.shared("sona", "log"), {"version": base.version, "ref": ref,
                         "report": codec.dumps("report", base.report)}, maxlen=LOG_CAP, approximate=True)
        return ref

    def prune(self, keep: int) -> int:
        """Delete the blobs of versions ≤ N − ``keep`` and the unreferenced refs of version N
        (left by a crash before the swap); returns keys deleted."""
        version, current = self.current()
        stale = []
        for key in self.client.scan_iter(self.keys.shared("sona", "*"), count=500):
            kind, ref = _text(key).rsplit(":", 2)[-2:]
            if kind not in ("base", "patterns") or ref == current:
                continue
            ref_version = int(ref.split("-", 1)[0])
            if ref_version <= version - keep or ref_version == version:
                stale.append(key)
        return int(self.client.delete(*stale)) if stale else 0

    def reset_micro(self, agent_id: str, fresh: Callable[[Micro | None], Micro]) -> None:
        """Replace the agent's MicroLoRA by ``fresh(current)`` atomically (its experience stays in
        the stream, so an update that lands during consolidation is replayed by the next one)."""
        key = self.micro_key(agent_id)

        def body(pipe: redis.client.Pipeline) -> bool:
            blob = pipe.get(key)
            new = fresh(Micro.from_blob(blob) if blob else None)
            pipe.multi()
            pipe.set(key, new.blob())
            return True

        self._transact([key], body)
