"""``[learning]`` settings as one typed object (see config/default.toml for each meaning)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from fleet.sona.consolidate import FitSettings


@dataclass(frozen=True)
class LearningSettings:
    enabled: bool = True
    embedder: str = "llama"
    embed_ctx: int = 512
    feature_dim: int = 256
    seed: int = 7
    prompt_styles: tuple[str, ...] = ("focused", "whole", "edge-cases")
    temperatures: tuple[float, ...] = (0.2, 0.7)
    epsilon: float = 0.1
    micro_rank: int = 2
    micro_scale: float = 1.0
    lr: float = 0.5
    clip: float = 1.0
    base_rank: int = 8
    base_scale: float = 1.0
    ewc_lambda: float = 20.0
    fisher_alpha: float = 0.5
    fit_steps: int = 200
    consolidate_every: float = 3600.0
    consolidate_after_jobs: int = 100
    replay_per_agent: int = 256
    experience_cap: int = 2000
    lock_timeout: float = 300.0
    keep_versions: int = 5
    patterns_k: int = 8
    pattern_min_reward: float = 0.5
    patterns_top_k: int = 2
    pattern_min_confidence: float = 0.3
    pattern_fade_min_uses: int = 5
    pattern_fade_floor: float = 0.3

    @classmethod
    def from_settings(cls, settings: Any) -> "LearningSettings":
        section = settings["learning"]
        values = {f.name: section[f.name] for f in fields(cls) if f.name in section}
        for name in ("prompt_styles", "temperatures"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

    def fit(self) -> FitSettings:
        return FitSettings(lam=self.ewc_lambda, alpha=self.fisher_alpha, steps=self.fit_steps,
                           base_rank=self.base_rank, base_scale=self.base_scale)

    def arm_config(self) -> dict[str, Any]:
        return {"prompt_styles": self.prompt_styles, "temperatures": self.temperatures}
