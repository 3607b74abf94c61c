"""Low-rank adapters on a linear policy head, and their exact gradients.

A head scores K arms for a task feature vector x ∈ R^d:

    logit(x) = W0·x + s_b·B_b·A_b·x + s_μ·B_μ·A_μ·x

W0 (K×d) is frozen, BaseLoRA (A_b r_b×d, B_b K×r_b, scale s_b) is shared by the fleet and only
changed by consolidation, MicroLoRA (A_μ r_μ×d, B_μ K×r_μ, scale s_μ) belongs to one agent and
takes one SGD step after each job. A starts random (N(0, 1/d)) and B at zero, so a fresh adapter
adds nothing and the first step already moves B (∂z/∂B ≠ 0), the next ones A too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

F32 = np.float32


@dataclass
class LowRank:
    """ΔW = scale · B·A with A (rank×d) and B (K×rank)."""

    a: np.ndarray
    b: np.ndarray
    scale: float

    @classmethod
    def fresh(cls, k: int, d: int, rank: int, scale: float, rng: np.random.Generator) -> "LowRank":
        a = rng.normal(0.0, 1.0 / np.sqrt(d), size=(rank, d)).astype(F32)
        return cls(a, np.zeros((k, rank), F32), float(scale))

    @classmethod
    def from_delta(cls, delta: np.ndarray, rank: int, scale: float) -> tuple["LowRank", float]:
        """The rank-``rank`` truncation of ``delta`` by SVD, split as B = U·√S / s, A = √S·Vᵀ;
        also the relative residual ‖Δ − Δ_r‖_F / ‖Δ‖_F (0 when Δ = 0)."""
        u, s, vt = np.linalg.svd(delta.astype(np.float64), full_matrices=False)
        r = min(rank, len(s))
        root = np.sqrt(s[:r])
        a = np.zeros((rank, delta.shape[1]))
        b = np.zeros((delta.shape[0], rank))
        a[:r] = root[:, None] * vt[:r]
        b[:, :r] = u[:, :r] * root[None, :] / scale
        norm = float(np.linalg.norm(s))
        residual = float(np.linalg.norm(s[r:]) / norm) if norm > 0 else 0.0
        return cls(a.astype(F32), b.astype(F32), float(scale)), residual

    @property
    def rank(self) -> int:
        return self.a.shape[0]

    def delta(self) -> np.ndarray:
        """ΔW = s·B·A (K×d)."""
        return self.scale * (self.b @ self.a)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """s·B·(A·x), K scores, without forming ΔW."""
        return self.scale * (self.b @ (self.a @ x))

    def grads(self, x: np.ndarray, arm: int, g: float) -> tuple[np.ndarray, np.ndarray]:
        """(∂L/∂A, ∂L/∂B) for a loss whose derivative in z_arm is ``g``, with z_arm = s·B[arm]·A·x:
        ∂z/∂B[arm] = s·(A·x), ∂z/∂A = s·B[arm]ᵀ·xᵀ; every other row of B gets 0."""
        gb = np.zeros_like(self.b)
        gb[arm] = g * self.scale * (self.a @ x)
        ga = g * self.scale * np.outer(self.b[arm], x)
        return ga.astype(F32), gb.astype(F32)

    def step(self, ga: np.ndarray, gb: np.ndarray, lr: float, clip: float) -> float:
        """SGD step with the joint gradient clipped to L2 norm ``clip``; returns the norm before clipping."""
        norm = float(np.sqrt(np.sum(ga * ga) + np.sum(gb * gb)))
        factor = lr * (min(1.0, clip / norm) if norm > 0 else 0.0)
        self.a -= (factor * ga).astype(F32)
        self.b -= (factor * gb).astype(F32)
        return norm

    def copy(self) -> "LowRank":
        return LowRank(self.a.copy(), self.b.copy(), self.scale)
