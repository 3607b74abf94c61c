"""EWC++ (Chaudhry et al., 2018, "Riemannian Walk"): an online Fisher estimate with decay, and the
elastic penalty that keeps consolidated weights near what earlier tasks needed.

Parameters θ are the BaseLoRA's effective matrix ΔW_b = s_b·B_b·A_b (K×d), which stays meaningful
when consolidation re-factorises it by SVD (the factors A_b, B_b do not). Row θ_a only moves arm
a's logit, so the Fisher is exactly block-diagonal by arm; each block is kept in full (d×d), which
protects the dense embedding directions a diagonal estimate misses.

    F_t = α·F̂_t + (1 − α)·F_{t−1}                                    (online Fisher, decay 1 − α)
    F̂_t[a] = (1/n)·Σ_{i: a_i = a} σ_i(1 − σ_i)·x_i·x_iᵀ              (the Bernoulli head's Fisher)
    penalty(θ) = (λ/2)·Σ_a (θ_a − θ*_a)ᵀ F[a] (θ_a − θ*_a),   ∇_a = λ·F[a]·(θ_a − θ*_a)

θ* is the consolidated ΔW_b the penalty anchors to; both F and θ* are stored with each version.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fleet.sona.lora import F32


@dataclass
class EwcState:
    """The online Fisher F (K×d×d, one block per arm) and the anchor θ* (K×d)."""

    fisher: np.ndarray
    anchor: np.ndarray

    @classmethod
    def empty(cls, k: int, d: int) -> "EwcState":
        return cls(np.zeros((k, d, d), F32), np.zeros((k, d), F32))

    def penalty(self, theta: np.ndarray, lam: float) -> float:
        diff = theta - self.anchor
        return float(0.5 * lam * np.einsum("ki,kij,kj->", diff, self.fisher, diff))

    def grad(self, theta: np.ndarray, lam: float) -> np.ndarray:
        return lam * np.einsum("kij,kj->ki", self.fisher, theta - self.anchor)

    def curvature(self) -> float:
        """The largest eigenvalue over the blocks (bounds the penalty's Hessian / λ)."""
        return float(max(np.linalg.eigvalsh(block.astype(np.float64))[-1] for block in self.fisher)) \
            if self.fisher.any() else 0.0

    def advance(self, batch_fisher: np.ndarray, anchor: np.ndarray, alpha: float) -> "EwcState":
        """F_t = α·F̂_t + (1 − α)·F_{t−1}, and the new anchor."""
        return EwcState((alpha * batch_fisher + (1.0 - alpha) * self.fisher).astype(F32), anchor.astype(F32))


def batch_fisher(logits: np.ndarray, x: np.ndarray, arms: np.ndarray, k: int) -> np.ndarray:
    """F̂ of the module docstring (K×d×d); ``logits`` are the chosen arms' z_i (n), x is n×d, arms n."""
    p = 0.5 * (1.0 + np.tanh(0.5 * logits))
    weight = p * (1.0 - p)
    out = np.zeros((k, x.shape[1], x.shape[1]))
    for a in np.unique(arms):
        rows = arms == a
        out[a] = (x[rows] * weight[rows, None]).T @ x[rows]
    return out / max(1, len(arms))
