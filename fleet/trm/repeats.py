"""Tests the model already wrote in this job: a repeat is not judged again, and it heats sampling.

A small model asked a similar prompt twice often writes the same tests again, only renamed or with
other comments. Judging a repeat again cannot change its outcome (the sandbox is deterministic
enough that the earlier run decided it: kept, or failed with an error already fed back), so it is
rejected as ``repeat`` and the earlier outcome is carried. A test's fingerprint is its AST without
its name, docstrings and ``assert`` messages, followed by the AST of each support definition it
uses (a changed helper class makes it a new test).

Sampling temperature rises while replies repeat: ``t = min(max_temperature, t₀ + step · streak)``,
where ``streak`` counts the consecutive replies in which repeats were at least half of the tests
(a reply without any test counts too); a reply that is mostly new resets it to 0.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Callable

from fleet.trm.judge import LOAD_FAILED
from fleet.trm.parse import Rejection, Unit

_SAME = "the same test as an earlier one"
_FAILED = f"{_SAME}, which failed: "



def _strip(node: ast.AST) -> ast.AST:
    """``node`` without names of definitions, docstrings and assert messages (in place)."""
    for sub in ast.walk(node):
        if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            sub.name = ""
            body = sub.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str) and len(body) > 1:
                del body[0]
        elif isinstance(sub, ast.Assert):
            sub.msg = None
    return node


def fingerprint(source: str, support: list[str]) -> str:
    """The AST dump of a unit's source and of its support sources, stripped as :func:`_strip` says;
    the raw text when a source does not parse."""
    parts = []
    for text in [source, *support]:
        try:
            parts.append(ast.dump(_strip(ast.parse(text))))
        except SyntaxError:
            parts.append(text)
    return "\n".join(parts)


@dataclass
class Repeats:
    """Fingerprints seen in this job, each with its rejection (None: kept, or not judged yet)."""

    step: float = 0.25
    max_temperature: float = 1.0
    outcomes: dict[str, Rejection | None] = field(default_factory=dict)
    streak: int = 0
    pending: dict[str, str] = field(default_factory=dict)  # unit name → fingerprint, of the last split

    def split(self, units: list[Unit], support_of: Callable[[Unit], list[str]]) -> tuple[list[Unit], list[Rejection]]:
        """The units not seen before, and a ``repeat`` rejection for each other one (a repeat
        within ``units`` counts too), whose detail (and path) is the earlier failure's if there was
        one. Updates the streak."""
        fresh, repeated = [], []
        self.pending = {}
        for unit in units:
            key = fingerprint(unit.source, support_of(unit))
            if key in self.outcomes:
                earlier = self.outcomes[key]
                detail = f"{_FAILED}{earlier.detail}" if earlier else _SAME
                repeated.append(Rejection(unit.name, "repeat", detail, earlier.path if earlier else ""))
            else:
                self.pending[unit.name], self.outcomes[key] = key, None
                fresh.append(unit)
        self.streak = self.streak + 1 if len(repeated) >= len(fresh) else 0
        return fresh, repeated

    def record(self, rejected: list[Rejection]) -> None:
        """Remember the outcome of each unit of the last :meth:`split`: the failure it was rejected
        for, else None (kept, or no new coverage). A unit rejected because the whole test module
        failed to load was not judged on its own, so it is forgotten: a repeat of it is judged."""
        why = {r.name: r for r in rejected}
        for name, key in self.pending.items():
            rejection = why.get(name)
            if rejection is not None and rejection.detail.startswith(LOAD_FAILED):
                del self.outcomes[key]
            else:
                self.outcomes[key] = rejection if rejection and rejection.reason != "no-new-coverage" else None
        self.pending = {}

    @staticmethod
    def failed(rejection: Rejection) -> bool:
        """Whether a ``repeat`` rejection repeats a test that failed (its error is worth feeding back)."""
        return rejection.detail.startswith(_FAILED)

    def temperature(self, base: float) -> float:
        """``min(max_temperature, base + step · streak)``, never below ``base``."""
        return max(base, min(self.max_temperature, base + self.step * self.streak))
