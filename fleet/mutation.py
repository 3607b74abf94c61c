"""Mutation score of a test suite, with a small AST mutator of the target.

Each mutant changes one node of the target: a comparison operator (``<``↔``<=``, ``>``↔``>=``,
``==``↔``!=``, ``in``↔``not in``, ``is``↔``is not``), an arithmetic operator (``+``↔``-``,
``*``↔``/``, ``//``↔``%``), a boolean operator (``and``↔``or``), a constant (``True``↔``False``,
an integer ``n`` → ``n + 1``), a removed ``not``, or a ``return x`` → ``return None``. Mutants
are enumerated in source order and, when there are more than ``max_mutants``, a deterministic
evenly spaced sample is taken. A mutant is *killed* when the suite does not pass against it
(a failure, an error or a timeout). ``score = killed / tested``; mutants not run because the
time budget ran out are reported, not counted.
"""

from __future__ import annotations

import ast
import time
from dataclasses import dataclass, field
from typing import Iterator

from fleet.sandbox import Sandbox

_SWAPS: dict[type, type] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
    ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Mod,
    ast.Mod: ast.FloorDiv, ast.And: ast.Or, ast.Or: ast.And,
}


@dataclass(frozen=True)
class Mutant:
    """One mutated version of the target: where and what changed, and the new source."""

    line: int
    description: str
    source: str


@dataclass
class MutationResult:
    """Killed / tested mutants, how many were generated, and the survivors (for feedback)."""

    killed: int = 0
    tested: int = 0
    generated: int = 0
    seconds: float = 0.0
    survivors: list[dict] = field(default_factory=list)

    @property
    def score(self) -> float | None:
        return round(self.killed / self.tested, 4) if self.tested else None

    def as_dict(self) -> dict:
        return {"killed": self.killed, "tested": self.tested, "generated": self.generated, "score": self.score,
                "seconds": round(self.seconds, 2), "survivors": self.survivors[:20]}


def _sites(tree: ast.AST) -> Iterator[tuple[ast.AST, str]]:
    """Every (node, kind) that one mutation can change, in source order."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                if type(op) in _SWAPS:
                    yield node, f"cmp{i}"
        elif isinstance(node, (ast.BinOp, ast.BoolOp)) and type(node.op) in _SWAPS:
            yield node, "op"
        elif isinstance(node, ast.Constant) and (isinstance(node.value, bool) or type(node.value) is int):
            yield node, "const"
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            yield node, "not"
        elif isinstance(node, ast.Return) and node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None):
            yield node, "return"


def _apply(node: ast.AST, kind: str) -> str:
    """Mutate ``node`` in place; return a description."""
    if kind.startswith("cmp"):
        i = int(kind[3:])
        old = node.ops[i]
        node.ops[i] = _SWAPS[type(old)]()
        return f"{type(old).__name__} → {type(node.ops[i]).__name__}"
    if kind == "op":
        old = node.op
        node.op = _SWAPS[type(old)]()
        return f"{type(old).__name__} → {type(node.op).__name__}"
    if kind == "const":
        old = node.value
        node.value = (not old) if isinstance(old, bool) else old + 1
        return f"{old!r} → {node.value!r}"
    if kind == "not":
        node.operand = ast.UnaryOp(op=ast.Not(), operand=node.operand)  # not not x == bool(x)
        return "not x → x"
    node.value = ast.Constant(None)
    return "return x → return None"


def _spread(count: int, limit: int) -> list[int]:
    """At most ``limit`` indices of ``range(count)``, evenly spaced (deterministic)."""
    if count <= limit:
        return list(range(count))
    step = count / limit
    return [int(i * step) for i in range(limit)]


def mutants(source: str, limit: int = 10**6) -> tuple[list[Mutant], int]:
    """Up to ``limit`` single-change mutants of ``source`` and how many exist in all."""
    tree = ast.parse(source)
    count = sum(1 for _ in _sites(tree))
    out: list[Mutant] = []
    for index in _spread(count, limit):
        clone = ast.parse(source)  # a fresh tree: cheaper than a deep copy, and no recursion
        node, kind = next(site for i, site in enumerate(_sites(clone)) if i == index)
        description = _apply(node, kind)
        try:
            text = ast.unparse(ast.fix_missing_locations(clone))
        except (ValueError, TypeError, RecursionError):  # nesting too deep for the unparser: skipped
            continue
        out.append(Mutant(getattr(node, "lineno", 0), description, text))
    return out, count


def mutation_score(sandbox: Sandbox, test_module: str, source: str, *, max_mutants: int = 40,
                   budget_seconds: float = 120.0) -> MutationResult:
    """Run ``test_module`` against mutants of ``source`` in ``sandbox`` within the budget."""
    result = MutationResult()
    started = time.monotonic()
    candidates, result.generated = mutants(source, max_mutants)
    for mutant in candidates:
        if time.monotonic() - started > budget_seconds:
            break
        run = sandbox.run(test_module, target_text=mutant.source)
        result.tested += 1
        survived = run.collected and not run.timed_out and run.outcomes and all(o.passed for o in run.outcomes.values())
        if survived:
            result.survivors.append({"line": mutant.line, "change": mutant.description})
        else:
            result.killed += 1
    result.seconds = time.monotonic() - started
    return result
