"""Closed integer intervals: parse, merge and measure them."""

from __future__ import annotations


def parse_interval(text: str) -> tuple[int, int]:
    """Parse ``"a-b"`` (or a single number ``"a"``) into ``(a, b)`` with ``a <= b``."""
    text = text.strip()
    if not text:
        raise ValueError("empty interval")
    if "-" in text[1:]:
        left, right = text[0] + text[1:].split("-", 1)[0], text[1:].split("-", 1)[1]
        start, end = int(left), int(right)
    else:
        start = end = int(text)
    if start > end:
        raise ValueError(f"interval {text!r} runs backwards")
    return start, end


def merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge overlapping or touching intervals; the result is sorted."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def total_length(intervals: list[tuple[int, int]]) -> int:
    """Number of integers covered by the intervals, counting overlaps once."""
    return sum(end - start + 1 for start, end in merge(intervals))
