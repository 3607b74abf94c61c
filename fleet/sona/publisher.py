"""One consolidation against Redis: lock, gather, fit (:mod:`fleet.sona.consolidate`), rebuild the
shared patterns (:mod:`fleet.sona.patterns`), publish version N+1 atomically, reset the agents'
MicroLoRAs.

Exactly one runs at a time fleet-wide: a Redis lock with expiry (``learning.lock_timeout``); a
second caller returns at once with ``ran: False``. Publishing writes version N+1's blobs first and
swaps ``…:sona:current`` last, so a crash in between leaves version N in force.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from fleet.sona import patterns as pat
from fleet.sona.consolidate import Replay, consolidate
from fleet.sona.ewc import EwcState
from fleet.sona.features import pattern_vector
from fleet.sona.learner import fresh_head
from fleet.sona.policy import arms_from
from fleet.sona.settings import LearningSettings
from fleet.sona.store import Base, Micro, SonaStore


@dataclass
class Gathered:
    """What the agents contributed since the last consolidation."""

    deltas: list[np.ndarray] = field(default_factory=list)
    replay: list[Replay] = field(default_factory=list)
    samples: list[pat.Sample] = field(default_factory=list)
    uses: list[tuple[str, float]] = field(default_factory=list)
    cursors: dict[str, str] = field(default_factory=dict)


def _parse(agent_id: str, entries: list[tuple[str, dict[str, bytes]]], d: int, out: Gathered) -> None:
    xs, arms, rewards = [], [], []
    for _, f in entries:
        x = np.frombuffer(f["x"], dtype="<f4")
        if x.shape != (d,):
            continue  # written under another feature_dim: not comparable
        r = float(f["reward"])
        xs.append(x)
        arms.append(int(f["arm"]))
        rewards.append(r)
        exemplar = f.get("exemplar", b"").decode()
        if exemplar and pattern_vector(x).any():
            out.samples.append(pat.Sample(f["job_id"].decode(), agent_id, f.get("module", b"").decode(),
                                          pattern_vector(x), r, exemplar))
        out.uses += [(pid, r) for pid in f.get("patterns", b"").decode().split(",") if pid]
    if xs:
        out.replay.append(Replay(np.stack(xs), np.asarray(arms), np.asarray(rewards)))


def gather(store: SonaStore, base: Base, cfg: LearningSettings) -> Gathered:
    """Every agent's MicroLoRA delta (if it learned since its reset) and its experience after the
    cursor recorded in ``base`` (at most ``replay_per_agent`` newest entries each)."""
    out = Gathered(cursors=dict(base.cursors))
    d = base.w0.shape[1]
    for agent_id in store.agents():
        micro = store.load_micro(agent_id)
        if micro and micro.updates and micro.adapter.a.shape[1] == d:
            out.deltas.append(micro.adapter.delta())
        entries = store.experience(agent_id, base.cursors.get(agent_id, "0"), cfg.replay_per_agent)
        if entries:
            out.cursors[agent_id] = entries[-1][0]
            _parse(agent_id, entries, d, out)
    return out


def _patterns(previous: list[pat.Pattern], got: Gathered, cfg: LearningSettings, version: int,
              rng: np.random.Generator) -> list[pat.Pattern]:
    """Previous patterns updated with the outcomes of the jobs that used them, plus patterns rebuilt
    from the new successful samples; unhelpful ones fade out; at most 4·k kept, most confident first."""
    by_id = {p.pattern_id: p for p in previous}
    for pid, r in got.uses:
        if pid in by_id:
            by_id[pid] = pat.record_use(by_id[pid], r)
    kept = list(by_id.values())
    fresh = pat.build_patterns(got.samples, k=cfg.patterns_k, min_reward=cfg.pattern_min_reward, rng=rng,
                               version=version, previous=kept) if got.samples else []
    rebuilt = {p.exemplar for p in fresh}
    pool = fresh + [p for p in kept if p.exemplar not in rebuilt]
    pool = pat.fade(pool, min_uses=cfg.pattern_fade_min_uses, floor=cfg.pattern_fade_floor)
    return sorted(pool, key=lambda p: (-p.confidence, -p.reward_mean))[: 4 * cfg.patterns_k]


def current_base(store: SonaStore, cfg: LearningSettings) -> Base:
    """The published base, or version 0 built from the configured seed."""
    arms = arms_from(cfg.arm_config())
    base = store.load_base(store.current()[1])
    if base is not None:
        return base
    head = fresh_head(cfg, len(arms))
    k, d = head.w0.shape
    return Base(head.base, head.w0, EwcState.empty(k, d), 0, [a.name for a in arms])


def consolidate_fleet(store: SonaStore, cfg: LearningSettings, *, crash_before_swap: bool = False) -> dict[str, Any]:
    """Run one consolidation if no other holds the lock; returns its report."""
    lock = store.lock(cfg.lock_timeout)
    if not lock.acquire(blocking=False):
        return {"ran": False, "why": "another consolidation holds the lock"}
    try:
        with threadpool_limits(1):
            return _run(store, cfg, crash_before_swap)
    finally:
        if lock.owned():
            lock.release()


def _run(store: SonaStore, cfg: LearningSettings, crash_before_swap: bool) -> dict[str, Any]:
    started = time.perf_counter()
    base = current_base(store, cfg)
    got = gather(store, base, cfg)
    fit = consolidate(base.w0, base.adapter, base.ewc, got.deltas, Replay.concat(got.replay, base.w0.shape[1]),
                      cfg.fit())
    version = base.version + 1
    previous_blob = store.load_patterns_blob(store.current()[1])
    patterns = _patterns(pat.loads(previous_blob) if previous_blob else [], got, cfg, version,
                         np.random.default_rng(cfg.seed + version))
    report = {**fit.report, "version": version, "agents": len(got.cursors), "patterns": len(patterns),
              "pattern_uses": len(got.uses)}
    new = Base(fit.base, base.w0, fit.ewc, version, base.arms, got.cursors, report)
    store.publish(new, pat.dumps(patterns), crash_before_swap=crash_before_swap)
    store.prune(cfg.keep_versions)
    template = fresh_head(cfg, len(base.arms)).micro
    for agent_id in store.agents():
        store.reset_micro(agent_id, lambda cur: Micro(template.copy(), (cur.version + 1) if cur else 0, "", version, 0))
    report["seconds"] = round(time.perf_counter() - started, 4)
    return {"ran": True, **report}
