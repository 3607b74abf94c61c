"""How the engine attacks one job; the learning policy picks one per job (:mod:`fleet.sona.policy`).

- ``focused``: one segment at a time, chosen by missing coverage, its uncovered lines tagged.
- ``whole``: every prompt asks for the module's whole public API (no segmenting).
- ``edge-cases``: segments as in ``focused``, and the rules ask for boundary values, every branch
  of each condition and every ``raise`` (with ``pytest.raises``).

``temperature`` replaces the configured sampling temperature; ``few_shot`` says whether shared
patterns are shown as examples.
"""

from __future__ import annotations

from dataclasses import dataclass

PROMPT_STYLES = ("focused", "whole", "edge-cases")


@dataclass(frozen=True)
class Strategy:
    prompt: str = "focused"
    temperature: float = 0.2
    few_shot: bool = True

    def __post_init__(self) -> None:
        if self.prompt not in PROMPT_STYLES:
            raise ValueError(f"unknown prompt style {self.prompt!r}; choose from {', '.join(PROMPT_STYLES)}")

    @property
    def name(self) -> str:
        return f"{self.prompt}/t{self.temperature:g}/{'fewshot' if self.few_shot else 'zeroshot'}"
