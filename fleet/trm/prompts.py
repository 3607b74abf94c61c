"""Prompts for a small model: stable prefix first (KV-cache reuse), one focused segment after.

Layout of every prompt of a job (identical up to the "Task" line, so llama.cpp reuses it):
    system text · target module source (cut to a character budget) · signatures of what it
    imports from its own package (:mod:`fleet.trm.context`) · the rules (with the edge-case rule
    when the job's strategy asks for it) ·
    then what changes: API facts learned from earlier failures (:mod:`fleet.trm.facts`), an
    exemplar test when one is given, kept tests of this job that use the focus (correct calls
    to copy), the task for one segment, the
    segment's uncovered lines, and the errors of the previous attempt. The reply is prefilled
    with a code fence and a complete import of the focus's names (:func:`import_names`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from fleet.analysis import Analysis, Segment, source_lines
from fleet.llm.base import Message

SYSTEM = (
    "You are an expert Python developer who writes correct, focused pytest unit tests. "
    "You reply with a single Python code block that contains only test code."
)
STOP = ["\n```"]


@dataclass(frozen=True)
class Focus:
    """What one prompt asks for: segments (none = the module's public API) and their gaps."""

    segments: tuple[Segment, ...] = ()
    missing_lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)
    passing: list[str] = field(default_factory=list)  # this job's kept tests that use the focus


def source_block(source: str, limit: int) -> str:
    """The module source, cut at a line boundary to ``limit`` characters."""
    if len(source) <= limit:
        return source
    cut = source[:limit].rsplit("\n", 1)[0]
    return cut + "\n# ... (rest of the module omitted)"


def prefill(module: str, names: Sequence[str]) -> str:
    """The forced start of the reply: a fence, pytest and a complete import of ``names`` from the
    target, so the reply begins with test code (it may still import more). An open
    ``from m import `` made small models finish the line with a comment (often the prompt's own
    import rule) and sometimes go on to copy the target's source."""
    line = f"from {module} import {', '.join(names)}\n" if names else f"import {module}\n"
    return f"```python\nimport pytest\n{line}\n"


def import_names(analysis: Analysis, focus: Focus, limit: int = 12) -> list[str]:
    """The target's top-level names a reply for ``focus`` needs: each segment's owner (its class,
    or the function itself), or the public entries of a private one; the public API (at most
    ``limit``) when the focus is the whole module. Only names the module binds."""
    wanted: list[str] = []
    for seg in focus.segments:
        wanted += [name.split(".")[0] for name in seg.entry or (seg.name,)]
    if not wanted:
        wanted = list(analysis.public)
    return [n for n in dict.fromkeys(wanted) if n in analysis.names][:limit]


def _through(seg: Segment) -> str:
    """How to reach a private segment: `` (private: call it through `a` or `b`)``, or ""."""
    if not seg.entry:
        return ""
    return " (private: call it through " + " or ".join(f"`{name}`" for name in seg.entry) + ")"


def _task(analysis: Analysis, focus: Focus, source: str, limit: int) -> list[str]:
    """The task line; the segment's own source too when the module text was cut before it."""
    if not focus.segments:
        names = ", ".join(f"`{n}`" for n in analysis.public[:20]) or "the module"
        return [f"Task: write pytest tests for {names}."]
    lines = ["Task: write pytest tests for:"] + [f"- `{seg.signature}`{_through(seg)}" for seg in focus.segments]
    shown = len(source_lines(source_block(source, limit)))
    numbered = source_lines(source)
    for seg in focus.segments:
        body = numbered[seg.start - 1 : seg.end]
        if seg.end > shown and len("\n".join(body)) < 4000:
            lines += ["```python", *body, "```"]
    return lines


EDGE_CASES = ("- Cover the edges: empty and boundary inputs, both outcomes of every condition, and every "
              "`raise` (with pytest.raises).")


def build(module: str, source: str, analysis: Analysis, focus: Focus, *, max_source_chars: int,
          related: str = "", edge_cases: bool = False) -> list[Message]:
    """The chat messages for one attempt (see the module docstring for the layout)."""
    names = ", ".join(analysis.public[:12])
    parts = [f"Module `{module}`:", "```python", source_block(source, max_source_chars), "```", ""]
    if related:
        parts += ["Definitions it uses from elsewhere in its package:", "```python", related, "```", ""]
    parts += [
             "Rules:",
             f"- Import the code under test from `{module}` (e.g. `from {module} import {names}`); never copy or redefine it.",
             "- Write 3 to 6 small test functions named test_<something>, each with assert statements or pytest.raises.",
             "- Work out each expected value by reading the code carefully; use only pytest and the standard library.",
             *([EDGE_CASES] if edge_cases else []),
             ""]
    if focus.facts:
        parts += ["Facts about this code, learned from earlier failed tests:", *[f"- {f}" for f in focus.facts], ""]
    for example in focus.examples[:2]:
        parts += ["An example of a good test from a similar module:", "```python", example, "```"]
    if focus.passing:
        parts += ["Tests of this module that already pass (call the code the way they do):", "```python",
                  *focus.passing, "```"]
    parts += _task(analysis, focus, source, max_source_chars)
    if focus.missing_lines:
        parts += ["These lines are not covered by any test yet; write tests that execute them:"]
        parts += [f"    {line.strip()}" for line in focus.missing_lines[:25]]
    if focus.errors:
        parts += ["Earlier tests failed like this; do not repeat these mistakes:"]
        parts += [f"- {err}" for err in focus.errors[:6]]
    return [Message("system", SYSTEM), Message("user", "\n".join(parts))]
