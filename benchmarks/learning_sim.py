"""A seeded environment for the learning benchmark: task families whose per-arm rewards are drawn
around the rewards of real jobs, with features shaped like :mod:`fleet.sona.features`.

Grounding (:class:`Grounding`): every engine report in ``benchmarks/results/*.json`` is scored with
the production reward :func:`fleet.sona.reward.reward`. From those rewards r_1..r_n:

    level pool  = {r_i}, clipped to [g, 1 − 2g]       (how hard a family is)
    g (gap)     = RMS of the paired differences r(module, run A) − r(module, run B) over modules
                  measured in two bench runs (how much a change of strategy moves a job's reward)
    κ           = r̄(1 − r̄)/s² − 1                     (Beta concentration: method of moments of the
                  pooled rewards, so per-job noise is as wide as the real spread across jobs)

Family f (:class:`Env`): a level ℓ_f drawn from the pool and a best arm b_f (a different one per
family). True mean reward of arm a on family f:

    μ_f[b_f] = ℓ_f + g;   μ_f[b_h] = ℓ_f − g for every other family h (conflicting best arms);
    μ_f[a]   = ℓ_f + U(−g/2, g/2) otherwise

A job's reward is r ~ Beta(κ·μ, κ·(1 − μ)). Features follow the production layout
x = [embedding part (d − 9) ; 8 AST statistics ; 1]:

    embedding part = unit(√s_c·c + √s_f·p_f + √s_n·ξ)     c shared by all families, p_f the family's
                                                           prototype, ξ per-task noise (unit vectors)
    statistics     = clip(σ_common + δ_f + ε_task, 0, 0.99)

so families share the bias, most of the statistics and a common embedding direction: a weight
change that helps one family moves the logits of the others (interference).
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fleet.sona.features import N_STATS
from fleet.sona.lora import F32
from fleet.sona.reward import reward

# Shares of the embedding part's variance: common to all code, family prototype, task noise.
SHARE_COMMON, SHARE_FAMILY, SHARE_NOISE = 0.55, 0.30, 0.15
STAT_FAMILY_SD, STAT_TASK_SD = 0.06, 0.04
# Used only when no result file with engine reports exists (the values measured on 2 bench runs, 16 jobs).
FALLBACK = {"mean": 0.382, "sd": 0.240, "gap": 0.162}


@dataclass(frozen=True)
class Grounding:
    """Reward statistics of real jobs (module docstring)."""

    rewards: tuple[float, ...]
    gap: float
    sources: tuple[str, ...]

    @property
    def mean(self) -> float:
        return float(np.mean(self.rewards))

    @property
    def sd(self) -> float:
        return float(np.std(self.rewards, ddof=1))

    @property
    def kappa(self) -> float:
        """Beta concentration κ = r̄(1 − r̄)/s² − 1 (at least 1)."""
        m = self.mean
        return max(1.0, m * (1 - m) / self.sd ** 2 - 1)

    def levels(self) -> np.ndarray:
        return np.clip(np.asarray(self.rewards), self.gap, 1 - 2 * self.gap)

    @classmethod
    def from_results(cls, pattern: str) -> "Grounding":
        """Rewards of every ``rows[i]["engine_report"]`` in the files matching ``pattern``."""
        by_module: dict[str, list[float]] = {}
        rewards, sources = [], []
        for path in sorted(glob.glob(pattern)):
            try:
                rows = json.loads(Path(path).read_text()).get("rows", [])
            except (OSError, ValueError):
                continue
            got = [(r["module"], reward(r["engine_report"])) for r in rows if r.get("engine_report")]
            if got:
                sources.append(path)
            for module, r in got:
                rewards.append(r)
                by_module.setdefault(module, []).append(r)
        diffs = [v[0] - v[1] for v in by_module.values() if len(v) >= 2]
        if len(rewards) < 4 or not diffs:
            return cls.fallback()
        return cls(tuple(rewards), float(np.sqrt(np.mean(np.square(diffs)))), tuple(sources))

    @classmethod
    def fallback(cls) -> "Grounding":
        """Four rewards with the recorded mean and sd, and the recorded gap (no result files)."""
        m, s = FALLBACK["mean"], FALLBACK["sd"]
        spread = s * np.sqrt(3 / 4)
        return cls((m - spread, m - spread, m + spread, m + spread), FALLBACK["gap"], ())

    def describe(self) -> str:
        where = ", ".join(Path(s).name for s in self.sources) or "recorded fallback constants (no result files)"
        return (f"{len(self.rewards)} real job rewards (fleet.sona.reward.reward over the engine reports in {where}): "
                f"mean {self.mean:.3f}, sd {self.sd:.3f} -> per-job Beta noise with kappa = {self.kappa:.2f}; "
                f"strategy gap g = {self.gap:.3f} (RMS of paired per-module differences between runs)")


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@dataclass
class Env:
    """T families over K arms in dimension d (module docstring)."""

    means: np.ndarray        # T×K true mean rewards
    best: np.ndarray         # T best arms (distinct)
    common: np.ndarray       # shared embedding direction
    protos: np.ndarray       # T×(d−9) family prototypes
    stats: np.ndarray        # T×8 family statistics
    kappa: float

    @classmethod
    def draw(cls, grounding: Grounding, families: int, arms: int, d: int, rng: np.random.Generator) -> "Env":
        if families > arms:
            raise ValueError("need at least as many arms as families (distinct best arms)")
        g, width = grounding.gap, d - N_STATS - 1
        best = rng.choice(arms, size=families, replace=False)
        levels = rng.choice(grounding.levels(), size=families)
        means = levels[:, None] + rng.uniform(-g / 2, g / 2, size=(families, arms))
        means[:, best] = levels[:, None] - g
        means[np.arange(families), best] = levels + g
        stats = np.clip(rng.uniform(0.4, 0.85, N_STATS) + rng.normal(0, STAT_FAMILY_SD, (families, N_STATS)), 0, 0.99)
        return cls(np.clip(means, 0.02, 0.98), best, _unit(rng.normal(size=width)),
                   _unit(rng.normal(size=(families, width))), stats, grounding.kappa)

    @property
    def families(self) -> int:
        return self.means.shape[0]

    def tasks(self, family: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """n feature vectors (n×d, float32) of tasks from ``family``."""
        noise = _unit(rng.normal(size=(n, self.protos.shape[1])))
        emb = _unit(np.sqrt(SHARE_COMMON) * self.common + np.sqrt(SHARE_FAMILY) * self.protos[family]
                    + np.sqrt(SHARE_NOISE) * noise)
        stats = np.clip(self.stats[family] + rng.normal(0, STAT_TASK_SD, (n, N_STATS)), 0, 0.99)
        return np.hstack([emb, stats, np.ones((n, 1))]).astype(F32)

    def sample(self, family: int, arm: int, rng: np.random.Generator) -> float:
        """One job's reward: Beta(κ·μ, κ·(1 − μ)) around the arm's true mean."""
        mu = self.means[family, arm]
        return float(rng.beta(self.kappa * mu, self.kappa * (1 - mu)))

    def expected(self, family: int, arms: np.ndarray) -> float:
        """Mean true reward of the chosen arms on ``family``."""
        return float(np.mean(self.means[family, arms]))

    def score(self, family: int, arms: np.ndarray) -> float:
        """Expected reward of the chosen arms divided by the best arm's: 1 = always the best arm."""
        return self.expected(family, arms) / float(self.means[family].max())
