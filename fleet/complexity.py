"""How hard a target module is, as one number and a level the router acts on (AST only).

Facts measured on the module:

* ``lines``: the number of source lines (as :func:`fleet.analysis.analyse` counts them);
* ``cyclomatic``: the sum of McCabe numbers (:func:`fleet.analysis.complexity`) of the outermost
  functions and methods (a nested function's decision points count inside its enclosing one);
  module-level code outside functions is not counted;
* ``max_cyclomatic``: the largest of those McCabe numbers (0 without functions);
* ``classes`` / ``functions``: every ``class`` / ``def`` / ``async def``, nested ones included;
* ``max_nesting``: the depth of the deepest compound statement (``def``, ``class``, ``if``,
  ``for``, ``while``, ``with``, ``try``, ``match``), a top-level one being depth 1; an ``elif``
  (an ``if`` that is the whole ``else`` branch of an ``if``) stays at its ``if``'s depth.

The weighted score::

    score = cyclomatic + 2·classes + 3·max(0, max_nesting − 2) + lines / 50

Branches are what a test suite has to cover, so McCabe dominates; a class adds state to set up
(2); nesting beyond ``def``-plus-one-block (a method, or a loop in a function) makes paths hard
to reach (3 per level); raw length adds a little (1 per 50 lines).

The level: ``score < moderate`` → SIMPLE, ``< complex`` → MODERATE, ``< very_complex`` →
COMPLEX, else VERY_COMPLEX. See :class:`Cutoffs` for the defaults.
"""

from __future__ import annotations

import ast
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

from fleet.analysis import complexity as mccabe, source_lines

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef)
_COMPOUND = (
    ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.If, ast.For, ast.AsyncFor, ast.While,
    ast.With, ast.AsyncWith, ast.Try, ast.TryStar, ast.Match,
)


class Level(str, Enum):
    """How hard a module is, from its score and the cut-offs."""

    SIMPLE = "simple"
    MODERATE = "moderate"
    COMPLEX = "complex"
    VERY_COMPLEX = "very_complex"


@dataclass(frozen=True)
class Cutoffs:
    """Lowest score of each level (the ``[router]`` settings ``moderate``/``complex``/``very_complex``).

    Defaults, for whole modules (calibrated on this repository's own modules and examples):

    * below 8: a few straight or lightly branched functions (``fleet/flags.py``, 53 lines, one
      class, McCabe sum 4, scores 7.1) — SIMPLE;
    * 8 to 25: a small utility module or one small class, a few dozen paths at most
      (``examples/shapes/intervals.py`` 12.7, ``fleet/costs.py`` 15.1) — MODERATE;
    * 25 to 80: a real module of 100–300 lines with classes and branchy functions (most of
      ``fleet/``: ``fleet/jobs.py`` 57.2, ``fleet/acl.py`` 72.0) — COMPLEX; TRM refinement lets a
      small local model cover these;
    * 80 and above: large, heavily branched modules (``fleet/trm/loop.py`` 104, ``fleet/cache.py``
      142; over ~65 paths to cover) where a small model struggles even with refinement —
      VERY_COMPLEX.
    """

    moderate: float = 8.0
    complex: float = 25.0
    very_complex: float = 80.0

    def __post_init__(self) -> None:
        if not 0 < self.moderate < self.complex < self.very_complex:
            raise ValueError(
                f"cut-offs must satisfy 0 < moderate < complex < very_complex, got "
                f"{self.moderate}, {self.complex}, {self.very_complex}"
            )

    def level(self, score: float) -> Level:
        """The level of ``score`` (each cut-off is the lowest score of its level)."""
        if score < self.moderate:
            return Level.SIMPLE
        if score < self.complex:
            return Level.MODERATE
        if score < self.very_complex:
            return Level.COMPLEX
        return Level.VERY_COMPLEX


@dataclass(frozen=True)
class Complexity:
    """The measured facts, the weighted score and the level (see the module docstring)."""

    lines: int
    cyclomatic: int
    max_cyclomatic: int
    classes: int
    functions: int
    max_nesting: int
    score: float
    level: Level

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe: the level as its string value, the score rounded to 2 decimals."""
        return {**asdict(self), "score": round(self.score, 2), "level": self.level.value}


def score(cyclomatic: int, classes: int, max_nesting: int, lines: int) -> float:
    """``cyclomatic + 2·classes + 3·max(0, max_nesting − 2) + lines / 50``."""
    return cyclomatic + 2 * classes + 3 * max(0, max_nesting - 2) + lines / 50


def _outermost_functions(node: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Functions and methods not inside another function (classes are looked into)."""
    found: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, _DEFS):
            found.append(child)
        else:
            found.extend(_outermost_functions(child))
    return found


def _blocks(stmt: ast.stmt) -> list[list[ast.stmt]]:
    """The statement lists nested one level inside ``stmt`` (an ``elif`` chain excluded)."""
    if isinstance(stmt, ast.Match):
        return [case.body for case in stmt.cases]
    orelse = [] if _is_elif_chain(stmt) else getattr(stmt, "orelse", [])
    handlers = [handler.body for handler in getattr(stmt, "handlers", [])]
    return [stmt.body, orelse, getattr(stmt, "finalbody", []), *handlers]


def _is_elif_chain(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.If) and len(stmt.orelse) == 1 and isinstance(stmt.orelse[0], ast.If)


def _depth_of(stmt: ast.stmt, depth: int) -> int:
    """Deepest compound statement within ``stmt``, which itself sits at ``depth``."""
    deepest = max([depth] + [_nesting(block, depth) for block in _blocks(stmt)])
    if _is_elif_chain(stmt):
        deepest = max(deepest, _depth_of(stmt.orelse[0], depth))
    return deepest


def _nesting(body: list[ast.stmt], depth: int = 0) -> int:
    """Deepest compound statement in ``body``, whose compound statements sit at ``depth + 1``."""
    depths = [_depth_of(stmt, depth + 1) for stmt in body if isinstance(stmt, _COMPOUND)]
    return max([depth] + depths)


def measure(source: str, cutoffs: Cutoffs) -> Complexity:
    """Measure ``source`` (it must parse; job targets are syntax-checked on the wire)."""
    tree = ast.parse(source)
    numbers = [mccabe(fn) for fn in _outermost_functions(tree)]
    facts = {
        "lines": len(source_lines(source)),
        "cyclomatic": sum(numbers),
        "classes": sum(isinstance(n, ast.ClassDef) for n in ast.walk(tree)),
        "max_nesting": _nesting(tree.body),
    }
    value = score(**facts)
    return Complexity(
        **facts,
        max_cyclomatic=max(numbers, default=0),
        functions=sum(isinstance(n, _DEFS) for n in ast.walk(tree)),
        score=value,
        level=cutoffs.level(value),
    )
