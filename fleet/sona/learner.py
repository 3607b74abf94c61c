"""The agent side of learning: plan a job (features → arm → shared patterns as examples), then learn
from its report (reward → one MicroLoRA step, applied once per job id, and an experience entry).

With ``learning.enabled`` off the policy is frozen: the greedy arm of the current weights, no
exploration, no update, no experience.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from fleet.sona import patterns as pat
from fleet.sona.features import Featurizer, pattern_vector
from fleet.sona.lora import LowRank
from fleet.sona.policy import PolicyHead, arms_from
from fleet.sona.reward import parts, reward
from fleet.sona.settings import LearningSettings
from fleet.sona.store import Micro, SonaStore
from fleet.trm.strategy import Strategy

log = logging.getLogger(__name__)


@dataclass
class Plan:
    """What the policy decided for one job."""

    arm: int
    strategy: Strategy
    explored: bool
    x: np.ndarray
    base_version: int
    micro_version: int
    patterns: list[tuple[str, float]] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    learning: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"arm": self.arm, "strategy": self.strategy.name, "explored": self.explored,
                "base_version": self.base_version, "micro_version": self.micro_version,
                "patterns": [{"id": i, "similarity": round(s, 4)} for i, s in self.patterns]}


def fresh_head(cfg: LearningSettings, k: int) -> PolicyHead:
    """The version-0 head every agent starts from (same seed fleet-wide)."""
    return PolicyHead.fresh(k, cfg.feature_dim, base_rank=cfg.base_rank, base_scale=cfg.base_scale,
                            micro_rank=cfg.micro_rank, micro_scale=cfg.micro_scale, seed=cfg.seed)


class Learner:
    """One agent's policy: reads the published base and patterns, owns its MicroLoRA."""

    def __init__(self, store: SonaStore, featurizer: Featurizer, cfg: LearningSettings, agent_id: str,
                 *, seed: int | None = None) -> None:
        self.store, self.featurizer, self.cfg, self.agent_id = store, featurizer, cfg, agent_id
        self.arms = arms_from(cfg.arm_config())
        self.rng = np.random.default_rng(seed)
        self.template = fresh_head(cfg, len(self.arms))
        self.base_version, self.base_ref = 0, ""
        self.patterns: list[pat.Pattern] = []

    # -- shared state -----------------------------------------------------------------------
    def refresh(self) -> None:
        """Pick up a newer published base and its patterns (a version check before each job)."""
        version, ref = self.store.current()
        if ref == self.base_ref:
            return
        base = self.store.load_base(ref)
        if base is None or base.arms != [a.name for a in self.arms] or base.w0.shape != self.template.w0.shape:
            log.warning("published learning version %s does not match this agent's arms; using version %s",
                        version, self.base_version)
            return
        self.template = PolicyHead(base.w0, base.adapter, self.template.micro)
        blob = self.store.load_patterns_blob(ref)
        self.patterns = pat.loads(blob) if blob else []
        self.base_version, self.base_ref = version, ref

    def _micro(self, stored: Micro | None) -> Micro:
        if stored is None or stored.adapter.a.shape != self.template.micro.a.shape:
            return Micro(self.template.micro.copy(), base_version=self.base_version)
        return stored

    def head(self, micro: Micro) -> PolicyHead:
        return PolicyHead(self.template.w0, self.template.base, micro.adapter)

    # -- one job --------------------------------------------------------------------------
    def plan(self, source: str, module: str, *, learning: bool | None = None) -> Plan:
        """Choose the job's arm; ``learning`` (flag sona.enabled, default learning.enabled) off =
        frozen: greedy, and :meth:`learn` will not update."""
        learning = self.cfg.enabled if learning is None else learning
        self.refresh()
        x = self.featurizer.features(source, module)
        micro = self._micro(self.store.load_micro(self.agent_id))
        epsilon = self.cfg.epsilon if learning else 0.0
        arm, explored = self.head(micro).choose(x, epsilon=epsilon, rng=self.rng)
        strategy = self.arms[arm]
        query = pattern_vector(x)
        found = pat.retrieve(self.patterns, query, top_k=self.cfg.patterns_top_k,
                             min_confidence=self.cfg.pattern_min_confidence) if strategy.few_shot and query.any() else []
        return Plan(arm, strategy, explored, x, self.base_version, micro.version,
                    [(p.pattern_id, float(s)) for p, s in found], [p.exemplar for p, _ in found], learning)

    def learn(self, job_id: str, plan: Plan, report: dict[str, Any]) -> dict[str, Any]:
        """Reward the plan's arm; one SGD step on the MicroLoRA unless this job was applied before."""
        r = reward(report)
        out: dict[str, Any] = {"reward": round(r, 4), "reward_parts": {k: round(v, 4) for k, v in parts(report).items()},
                               **plan.as_dict()}
        if not plan.learning:
            return {**out, "applied": False, "why": "learning disabled (frozen policy)"}
        stats: dict[str, float] = {}
        self.refresh()  # a consolidation may have landed during the job: step against the new base

        def update(stored: Micro | None) -> Micro:
            micro = self._micro(stored)
            adapter: LowRank = micro.adapter.copy()
            with threadpool_limits(1):
                stats.update(PolicyHead(self.template.w0, self.template.base, adapter).update(
                    plan.x, plan.arm, r, lr=self.cfg.lr, clip=self.cfg.clip))
            return Micro(adapter, micro.version + 1, job_id, micro.base_version, micro.updates + 1)

        applied = self.store.apply_once(self.agent_id, job_id, update, self._experience(job_id, plan, report, r),
                                        self.cfg.experience_cap)
        return {**out, "applied": applied, **({k: round(v, 6) for k, v in stats.items()} if applied else
                                              {"why": "already applied for this job (redelivery)"})}

    def _experience(self, job_id: str, plan: Plan, report: dict[str, Any], r: float) -> dict[str, Any]:
        return {"job_id": job_id, "arm": plan.arm, "strategy": plan.strategy.name, "reward": f"{r:.6f}",
                "x": plan.x.astype("<f4").tobytes(), "module": report.get("module", ""),
                "exemplar": pat.exemplar_from(report.get("test_module") or "") or "",
                "patterns": ",".join(i for i, _ in plan.patterns), "base_version": plan.base_version,
                "ts": f"{time.time():.3f}"}

