"""Runaway replies: a reply that starts writing a test it already wrote is stopped there.

A small model that writes the same test twice in one reply (renamed ``test_x_3``, ``test_x_4``…)
rarely stops before ``max_tokens``: in real runs such replies were a fifth of the prompts and
two fifths of the generated tokens. :func:`repeating` is the streaming backend's halt rule: it
looks at the reply each time a line begins a new top-level ``def``/``class``, and says stop when
the block that line ends has the same body as an earlier block of the reply (its own ``def``
line aside, blank and comment lines ignored). What was written before that line is judged as
usual (:func:`before_halt`); the repeated block is rejected as a ``repeat``.
"""

from __future__ import annotations

import re

_TOP = re.compile(r"^(?:async[ \t]+def|def|class)[ \t]+\w+", re.M)


def _body(block: str) -> str:
    """A block's lines after its first, without blank and comment lines or trailing spaces."""
    lines = (line.rstrip() for line in block.splitlines()[1:])
    return "\n".join(line for line in lines if line and not line.lstrip().startswith("#"))


def repeating(text: str) -> bool:
    """Whether the last complete line of ``text`` opens a top-level block just after a complete
    block whose body an earlier block of ``text`` already had. (A streamed piece may hold a line
    end and the next line's indent, so the text need not end with the line end.)"""
    head = text[: text.rfind("\n") + 1].rstrip("\n")
    if not _TOP.match(head.rpartition("\n")[2]):
        return False
    starts = [m.start() for m in _TOP.finditer(head)]
    blocks = [_body(head[a:b]) for a, b in zip(starts, starts[1:])]
    return len(blocks) >= 2 and bool(blocks[-1]) and blocks[-1] in blocks[:-1]


def before_halt(text: str) -> str:
    """``text`` without the block-opening line :func:`repeating` stopped at (nor what follows it)."""
    head = text[: text.rfind("\n") + 1].rstrip("\n")
    return head[: head.rfind("\n") + 1]
