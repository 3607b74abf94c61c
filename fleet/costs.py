"""What jobs cost, from real usage and the price table in config (``[prices]``).

    cost(local)  = cpu_seconds · local_cpu_second
    cost(remote) = prompt_tokens / 1000 · remote_input_per_1k + completion_tokens / 1000 · remote_output_per_1k

The cloud-only counterfactual of a job prices the job's own token counts (whatever provider served
them) at the remote rates; savings = 1 − actual / counterfactual over a period.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from fleet.llm.base import Usage


@dataclass(frozen=True)
class PriceTable:
    local_cpu_second: float = 0.0
    remote_input_per_1k: float = 0.0
    remote_output_per_1k: float = 0.0

    @classmethod
    def from_settings(cls, settings: Any) -> "PriceTable":
        section = settings["prices"]
        return cls(**{k: float(section[k]) for k in cls.__dataclass_fields__ if k in section})

    def remote(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens / 1000 * self.remote_input_per_1k + completion_tokens / 1000 * self.remote_output_per_1k

    def cost(self, usage: Usage) -> float:
        """The module docstring's formula for ``usage.provider``."""
        if usage.provider == "local":
            return usage.cpu_seconds * self.local_cpu_second
        return self.remote(usage.prompt_tokens, usage.completion_tokens)

    def counterfactual(self, usage: Usage) -> float:
        """The same tokens priced at the remote rates."""
        return self.remote(usage.prompt_tokens, usage.completion_tokens)


DIGITS = 10


def summarise(table: PriceTable, usages: Iterable[Usage]) -> dict[str, Any]:
    """Spend per provider, the cloud-only counterfactual, and savings = 1 − spend / counterfactual.
    Amounts are rounded to ``DIGITS`` decimals: a small job costs a few millionths."""
    spend: dict[str, float] = {}
    counterfactual = 0.0
    tokens = {"prompt": 0, "completion": 0}
    for u in usages:
        spend[u.provider] = spend.get(u.provider, 0.0) + table.cost(u)
        counterfactual += table.counterfactual(u)
        tokens["prompt"] += u.prompt_tokens
        tokens["completion"] += u.completion_tokens
    total = sum(spend.values())
    return {"spend": {k: round(v, DIGITS) for k, v in spend.items()}, "total": round(total, DIGITS),
            "cloud_only": round(counterfactual, DIGITS), "tokens": tokens,
            "savings": round(1 - total / counterfactual, 4) if counterfactual else None}
