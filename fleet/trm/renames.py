"""Misspelt attribute names a job corrects in the model's tests.

A small model repeats an invented name (``date.from_iso_string``) in reply after reply, even
with the hints plugin's ``did you mean `fromisoformat`?`` in its prompt. The runtime already
named the fix, so the engine applies it instead of asking again: from a failure
``... has no attribute 'X' [hint] did you mean `Y` ...`` it learns ``X → Y`` (the closest name,
the first one the hint gives) and rewrites every attribute access ``<expr>.X`` to ``<expr>.Y``:

- in the failed test itself, which is then judged again (the report marks it ``renamed``);
- in every later reply of the job, tests and support code, before they are judged, but only
  for an ``X`` that occurs nowhere in the target's source (a name the target uses may be right
  on another object).

Nothing is kept on faith: a rewritten test is judged like any other (5 reruns, coverage gain).
Without hints (the ``hints`` ablation) there is nothing to learn from, so this is off too.
"""

from __future__ import annotations

import ast
import re
from dataclasses import replace

from fleet.trm.parse import Parsed, Unit

_MISSPELT = re.compile(r"has no attribute '(\w+)' \[hint\] did you mean `(\w+)`")
_WORD = re.compile(r"\w+")


def misspelling(detail: str) -> tuple[str, str] | None:
    """``(wrong, right)`` from a failure's detail that carries a did-you-mean hint."""
    match = _MISSPELT.search(detail)
    return (match.group(1), match.group(2)) if match else None


class _Rename(ast.NodeTransformer):
    def __init__(self, mapping: dict[str, str]) -> None:
        self.mapping, self.changed = mapping, False

    def visit_Attribute(self, node: ast.Attribute) -> ast.Attribute:
        self.generic_visit(node)
        if node.attr in self.mapping:
            node.attr, self.changed = self.mapping[node.attr], True
        return node


def rewrite(source: str, mapping: dict[str, str]) -> str | None:
    """``source`` with every ``.X`` of ``mapping`` renamed; None when nothing changed."""
    if not mapping:
        return None
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    renamer = _Rename(mapping)
    renamer.visit(tree)
    return ast.unparse(tree) if renamer.changed else None


class Renames:
    """The job's learned corrections; ``target_source`` decides which may apply to later replies."""

    def __init__(self, target_source: str) -> None:
        self._target_words = set(_WORD.findall(target_source))
        self.learned: dict[str, str] = {}  # applied to later replies

    def learn(self, details: list[str]) -> None:
        for detail in details:
            found = misspelling(detail)
            if found and found[0] not in self._target_words:
                self.learned[found[0]] = found[1]

    def apply(self, parsed: Parsed) -> int:
        """Rewrite ``parsed``'s units and support in place with the learned names; how many changed."""
        changed = 0
        for i, unit in enumerate(parsed.units):
            fixed = rewrite(unit.source, self.learned)
            if fixed is not None:
                parsed.units[i], changed = replace(unit, source=fixed), changed + 1
        for name, source in parsed.support.items():
            fixed = rewrite(source, self.learned)
            if fixed is not None:
                parsed.support[name], changed = fixed, changed + 1
        return changed

    @staticmethod
    def mend(unit: Unit, wrong: str, right: str) -> Unit | None:
        """The failed ``unit`` with ``.wrong`` corrected to ``.right`` (see :func:`misspelling`), or
        None when it has no ``.wrong``."""
        fixed = rewrite(unit.source, {wrong: right})
        return replace(unit, source=fixed, origin="renamed") if fixed is not None else None
