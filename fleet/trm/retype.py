"""Retyped tests: a test that failed on a ``TypeError`` about a builtin kind of its inputs, with
those inputs converted to a kind the code works with, without the model.

Small models often pass the right data in the wrong container: ``b"key"`` where the code
expects a list of byte values (``can't concat list to bytes``, ``'bytes' object does not
support item assignment``), a tuple where it appends or assigns, a list where it hashes
(``unhashable type: 'list'``). When a failed test's error is a ``TypeError`` whose first line
names a kind of :data:`CONVERSIONS`, every input literal of that kind in the test (an input
literal as :mod:`fleet.trm.variants` defines it: an argument of the target's code, a value
passed by name, or a literal inside one of these) is converted: bytes → the list of their
values (``b"ab"`` → ``[97, 98]``; up to :data:`MAX_BYTES`), tuple → list, list → tuple. Each
named kind the test holds gives one retyped test (``<test>__k<n>``, origin ``retyped``) whose assertions become oracle
sites, so the loop mends them with the observed values like a variant and judges it like any
test: kept only if it passes every rerun and adds coverage. A test is retyped once per kind.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Callable

from fleet.trm.oracle import literal_value
from fleet.trm.parse import Unit
from fleet.trm.variants import Replace, input_literals, observed_copy, position


MAX_BYTES = 1024  # longer bytes literals are not spelt out as lists


def _bytes_to_list(node: ast.expr) -> ast.expr:
    return ast.List([ast.Constant(b) for b in literal_value(node)], ast.Load())


def _elements_as(kind: type[ast.List] | type[ast.Tuple]) -> Callable[[ast.expr], ast.expr]:
    def convert(node: ast.expr) -> ast.expr:
        return kind(node.elts, ast.Load())  # type: ignore[attr-defined]
    return convert


# kind named in the error → (test of an input literal of that kind, its conversion)
CONVERSIONS: dict[str, tuple[Callable[[ast.expr], bool], Callable[[ast.expr], ast.expr]]] = {
    "bytes": (lambda n: isinstance(n, ast.Constant) and isinstance(n.value, bytes) and len(n.value) <= MAX_BYTES,
              _bytes_to_list),
    "tuple": (lambda n: isinstance(n, ast.Tuple), _elements_as(ast.List)),
    "list": (lambda n: isinstance(n, ast.List), _elements_as(ast.Tuple)),
}
_KIND = re.compile(r"\b(" + "|".join(CONVERSIONS) + r")\b")


def named_kinds(detail: str) -> list[str]:
    """The kinds of :data:`CONVERSIONS` a ``TypeError``'s first line names (before any `` [``
    note the hints add), in order; none for other errors."""
    first = detail.strip().splitlines()[0].split(" [")[0] if detail.strip() else ""
    if not first.startswith("TypeError"):
        return []
    return list(dict.fromkeys(_KIND.findall(first)))


def retyped(unit: Unit, kind: str, targets: set[str], number: int) -> Unit | None:
    """``unit`` with its input literals of ``kind`` converted and its assertions made oracle
    sites, named ``<name>__k<number>``; None when it holds no such literal."""
    try:
        tree = ast.parse(unit.source)
    except SyntaxError:
        return None
    holds, convert = CONVERSIONS[kind]
    at = {position(n) for n in input_literals(tree, targets) if holds(n)}
    if not at:
        return None
    tree = Replace(at, convert).visit(tree)
    return observed_copy(unit, tree, f"{unit.name}__k{number}", "retyped")


@dataclass
class Retypes:
    """The target's callable names, and the (test source, kind) pairs tried in this job."""

    targets: set[str]
    tried: set[tuple[str, str]] = field(default_factory=set)
    made: int = 0

    def retype(self, failed: list[tuple[Unit, str]], limit: int) -> list[Unit]:
        """At most ``limit`` retyped tests of the ``failed`` (unit, error) pairs, each (test,
        kind) once."""
        out: list[Unit] = []
        for unit, detail in failed:
            for kind in named_kinds(detail):
                if len(out) >= limit or (unit.source, kind) in self.tried:
                    continue
                self.tried.add((unit.source, kind))
                made = retyped(unit, kind, self.targets, self.made + 1)
                if made is not None:
                    self.made += 1
                    out.append(made)
        return out
