"""Where a test's path left the uncovered code: the branch it reached but took the other way.

A test that fails, or passes without covering anything new, often never reached the code it was
written for: its input took the other way at some condition (a text the parser did not
recognise, a value that skipped a loop). Its error says nothing about that; its coverage does.

A *divergence* of a test is a branch arc ``(a, b)`` the kept suite misses, where the test ran
line ``a`` but not the arc. Its weight is the number of uncovered statements behind it: ``b`` and
the statements that follow ``b`` in source order while the suite misses them. The heaviest one
(earliest line on ties) is what the feedback names, e.g.
``it ran line 160 `if match:` but never line 161 `desc = text[:match.start()]` (14 uncovered lines start there)``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

MAX_SOURCE_CHARS = 60


@dataclass(frozen=True)
class Divergence:
    """The test ran ``line`` but not the uncovered arc to ``towards``; ``behind`` uncovered statements start there."""

    line: int
    towards: int
    behind: int

    def describe(self, source_lines: Sequence[str]) -> str:
        """One line for the model: both source lines quoted, and what lies behind."""
        tail = f" ({self.behind} uncovered lines start there)" if self.behind > 1 else ""
        return (f"it ran line {self.line} {_quote(source_lines, self.line)} but never line {self.towards} "
                f"{_quote(source_lines, self.towards)}{tail}")


def _quote(source_lines: Sequence[str], line: int) -> str:
    text = source_lines[line - 1].strip() if 0 < line <= len(source_lines) else ""
    if len(text) > MAX_SOURCE_CHARS:
        text = text[: MAX_SOURCE_CHARS - 1] + "…"
    return f"`{text}`" if text else ""


def _behind(start: int, statements: Sequence[int], missing: Collection[int]) -> int:
    """How many statements from ``start`` on, in source order, the suite misses in a row."""
    count = 0
    for line in statements:
        if line < start:
            continue
        if line not in missing:
            break
        count += 1
    return count


def divergence(ran: Collection[int], took: Collection[tuple[int, int]], missing_arcs: Collection[tuple[int, int]],
               statements: Collection[int], missing_lines: Collection[int]) -> Divergence | None:
    """The heaviest divergence of a test that ran the lines ``ran`` and arcs ``took``, against the
    suite's ``missing_arcs`` and ``missing_lines``; None when it never reached an uncovered arc.
    Arcs that leave the code object (``b < 0``) are not divergences: nothing lies behind them."""
    ordered = sorted(statements)
    found = [Divergence(a, b, _behind(b, ordered, missing_lines))
             for a, b in missing_arcs if b > 0 and a in ran and (a, b) not in took]
    if not found:
        return None
    return max(found, key=lambda d: (d.behind, -d.line, -d.towards))
