"""The policy head: which strategy (arm) an agent uses on a task, and how it learns from the outcome.

Arms are the product of the configured prompt styles, temperatures and few-shot on/off, each a
:class:`fleet.trm.strategy.Strategy` that really changes what the engine does. Scores follow :mod:`fleet.sona.lora`;
the choice is ε-greedy over σ(logit). After a job, one SGD step on the binary cross-entropy

    L = −[r·log σ(z_a) + (1 − r)·log(1 − σ(z_a))],   ∂L/∂z_a = σ(z_a) − r

for the chosen arm a and the job's reward r (:func:`fleet.sona.reward.reward`), applied to the
MicroLoRA only (W0 and BaseLoRA are frozen between consolidations).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from fleet.sona.lora import F32, LowRank
from fleet.trm.strategy import PROMPT_STYLES, Strategy


def arms_from(cfg: dict[str, Any]) -> list[Strategy]:
    """Every combination of ``prompt_styles`` × ``temperatures`` × few-shot (off, on), in that order."""
    styles = list(cfg["prompt_styles"])
    unknown = set(styles) - set(PROMPT_STYLES)
    if unknown:
        raise ValueError(f"unknown prompt style(s) {sorted(unknown)}; choose from {PROMPT_STYLES}")
    return [Strategy(p, float(t), f) for p, t, f in itertools.product(styles, cfg["temperatures"], (False, True))]


def sigmoid(z: np.ndarray | float) -> np.ndarray | float:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z)))


def bce(p: float, r: float, eps: float = 1e-7) -> float:
    """Binary cross-entropy of prediction p against soft target r."""
    p = min(max(p, eps), 1.0 - eps)
    return float(-(r * np.log(p) + (1.0 - r) * np.log(1.0 - p)))


@dataclass
class PolicyHead:
    """logit = W0·x + base.scores(x) + micro.scores(x) over K arms."""

    w0: np.ndarray
    base: LowRank
    micro: LowRank

    @classmethod
    def fresh(cls, k: int, d: int, *, base_rank: int, base_scale: float, micro_rank: int, micro_scale: float,
              seed: int) -> "PolicyHead":
        rng = np.random.default_rng(seed)
        return cls(np.zeros((k, d), F32), LowRank.fresh(k, d, base_rank, base_scale, rng),
                   LowRank.fresh(k, d, micro_rank, micro_scale, rng))

    @property
    def arms(self) -> int:
        return self.w0.shape[0]

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.w0 @ x + self.base.scores(x) + self.micro.scores(x)

    def loss(self, x: np.ndarray, arm: int, r: float) -> float:
        return bce(float(sigmoid(self.logits(x)[arm])), r)

    def update(self, x: np.ndarray, arm: int, r: float, *, lr: float, clip: float) -> dict[str, float]:
        """One SGD step of the MicroLoRA on BCE(σ(z_arm), r); returns loss before/after and grad norm."""
        before = self.loss(x, arm, r)
        g = float(sigmoid(self.logits(x)[arm])) - r
        ga, gb = self.micro.grads(x, arm, g)
        norm = self.micro.step(ga, gb, lr, clip)
        return {"loss_before": before, "loss_after": self.loss(x, arm, r), "grad_norm": norm}

    def choose(self, x: np.ndarray, *, epsilon: float, rng: np.random.Generator) -> tuple[int, bool]:
        """ε-greedy: a uniformly random arm with probability ε (explored=True), else argmax σ(logit)."""
        if rng.random() < epsilon:
            return int(rng.integers(self.arms)), True
        return int(np.argmax(self.logits(x))), False
