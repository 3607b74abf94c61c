"""The quality score of a kept suite, from measurements only.

    quality = 0.5 · line_rate + 0.4 · branch_rate + 0.1 · min(1, asserts_per_test / 2)

line_rate and branch_rate are coverage.py's line and branch coverage of the target by the kept
suite (every kept test passed all reruns, so stability is a precondition, not a term);
asserts_per_test is the mean number of assertions in the kept tests. An empty suite scores 0.
A module without branches counts its branch rate as its line rate.
"""

from __future__ import annotations

from fleet.sandbox import Measure

FORMULA = "0.5*line + 0.4*branch + 0.1*min(1, asserts_per_test/2)"


def quality(measure: Measure, asserts: list[int]) -> float:
    """See the module docstring."""
    if not asserts:
        return 0.0
    branch = measure.branch_rate if measure.branches else measure.line_rate
    density = min(1.0, (sum(asserts) / len(asserts)) / 2)
    return round(0.5 * measure.line_rate + 0.4 * branch + 0.1 * density, 4)
