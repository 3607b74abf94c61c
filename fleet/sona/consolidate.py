"""Consolidation: merge the agents' MicroLoRAs into the shared BaseLoRA and fit it on their replay
data under the EWC++ penalty (:mod:`fleet.sona.ewc`). Pure numpy; the Redis side is
:mod:`fleet.sona.store`.

    θ₀ = ΔW_b + mean_agents(ΔW_μ)                                   (merge)
    J(θ) = (1/n)·Σ_i BCE(σ((W0 + θ)[a_i]·x_i), r_i) + (λ/2)·Σ F ⊙ (θ − θ*)²
    θ ← θ − η·∇J for ``steps`` steps, η = 1 / (max_i ‖x_i‖²/4 + λ·max eig F)   (a step that cannot overshoot)
    (A_b, B_b) = rank-r SVD truncation of θ; residual ‖θ − θ_r‖_F / ‖θ‖_F is reported
    F ← α·F̂(θ_r) + (1 − α)·F,  θ* ← θ_r

Agents then drop their MicroLoRA (it now lives in the base).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from fleet.sona.ewc import EwcState, batch_fisher
from fleet.sona.lora import LowRank


@dataclass(frozen=True)
class Replay:
    """Experience: features x (n×d), chosen arms (n), rewards in [0, 1] (n)."""

    x: np.ndarray
    arms: np.ndarray
    rewards: np.ndarray

    @classmethod
    def concat(cls, parts: list["Replay"], d: int) -> "Replay":
        parts = [p for p in parts if len(p.arms)]
        if not parts:
            return cls(np.zeros((0, d)), np.zeros(0, int), np.zeros(0))
        return cls(np.concatenate([p.x for p in parts]), np.concatenate([p.arms for p in parts]),
                   np.concatenate([p.rewards for p in parts]))

    def __len__(self) -> int:
        return len(self.arms)


@dataclass(frozen=True)
class FitSettings:
    """``[learning]`` consolidation settings: EWC λ, Fisher rate α, gradient steps, base rank/scale."""

    lam: float = 20.0
    alpha: float = 0.5
    steps: int = 200
    base_rank: int = 8
    base_scale: float = 1.0


class _Grouped:
    """The replay split by arm once (float64), so each step costs one n×d pass."""

    def __init__(self, replay: Replay) -> None:
        self.n = len(replay)
        x = np.asarray(replay.x, dtype=np.float64)
        self.groups = [(int(a), x[replay.arms == a], np.asarray(replay.rewards, dtype=np.float64)[replay.arms == a])
                       for a in np.unique(replay.arms)]

    def loss_and_grad(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        """Mean BCE of σ(w[a_i]·x_i) against r_i, and its gradient in w (only chosen rows move)."""
        loss, grad = 0.0, np.zeros_like(w, dtype=np.float64)
        for a, x, r in self.groups:
            p = np.clip(0.5 * (1.0 + np.tanh(0.5 * (x @ w[a]))), 1e-7, 1 - 1e-7)
            loss -= float(np.sum(r * np.log(p) + (1 - r) * np.log(1 - p)))
            grad[a] = x.T @ (p - r)
        return loss / max(1, self.n), grad / max(1, self.n)


def data_loss(w0: np.ndarray, theta: np.ndarray, replay: Replay) -> tuple[float, np.ndarray]:
    """Mean BCE over the replay and its gradient in θ (K×d)."""
    if not len(replay):
        return 0.0, np.zeros_like(theta)
    return _Grouped(replay).loss_and_grad(w0 + theta)


def fit(w0: np.ndarray, theta: np.ndarray, replay: Replay, ewc: EwcState, cfg: FitSettings) -> np.ndarray:
    """Gradient descent on J (module docstring) from ``theta``; returns the fitted θ."""
    theta = theta.astype(np.float64).copy()
    if not len(replay):
        return theta
    grouped = _Grouped(replay)
    eta = 1.0 / (float(np.max(np.sum(replay.x.astype(np.float64) ** 2, axis=1))) / 4 + cfg.lam * ewc.curvature() + 1e-9)
    for _ in range(cfg.steps):
        _, g = grouped.loss_and_grad(w0 + theta)
        theta -= eta * (g + ewc.grad(theta, cfg.lam))
    return theta


@dataclass
class Consolidated:
    base: LowRank
    ewc: EwcState
    report: dict[str, Any]


def consolidate(w0: np.ndarray, base: LowRank, ewc: EwcState, micro_deltas: list[np.ndarray], replay: Replay,
                cfg: FitSettings) -> Consolidated:
    """Merge, fit, truncate and advance the Fisher (module docstring)."""
    started = time.perf_counter()
    theta0 = base.delta() + (np.mean(micro_deltas, axis=0) if micro_deltas else 0.0)
    loss0, _ = data_loss(w0, theta0, replay)
    theta = fit(w0, theta0, replay, ewc, cfg)
    new_base, residual = LowRank.from_delta(theta, cfg.base_rank, cfg.base_scale)
    theta_r = new_base.delta()
    loss1, _ = data_loss(w0, theta_r, replay)
    z = np.einsum("nd,nd->n", (w0 + theta_r)[replay.arms], replay.x) if len(replay) else np.zeros(0)
    k, d = w0.shape
    new_ewc = ewc.advance(batch_fisher(z, replay.x, replay.arms, k) if len(replay) else np.zeros((k, d, d)),
                          theta_r, cfg.alpha) if len(replay) else EwcState(ewc.fisher, theta_r)
    report = {"samples": len(replay), "agents_merged": len(micro_deltas), "loss_before": round(loss0, 5),
              "loss_after": round(loss1, 5), "penalty": round(ewc.penalty(theta_r, cfg.lam), 5),
              "svd_residual": round(residual, 5), "steps": cfg.steps, "seconds": round(time.perf_counter() - started, 4)}
    return Consolidated(new_base, new_ewc, report)
