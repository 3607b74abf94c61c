"""The reward of one job, from the verifier's measurements in its report.

    r = (0.45·gain + 0.2·pass_rate + 0.15·stability + 0.2·mutation) / (sum of the weights present)

with gain = (cov_after − cov_before) / (1 − cov_before), coverage being line and branch together
((covered lines + covered branches) / (lines + branches)); pass_rate = tests kept / tests judged
(kept + rejected); stability = final-suite runs passed / reruns; mutation = killed / tested when
it was measured (else its weight is left out). r ∈ [0, 1]; a job that kept nothing scores 0.
"""

from __future__ import annotations

from typing import Any

WEIGHTS = {"gain": 0.45, "pass_rate": 0.2, "stability": 0.15, "mutation": 0.2}


def combined(cov: dict[str, Any]) -> float:
    """(covered lines + covered branches) / (lines + branches), 0 for an empty module."""
    total = cov.get("lines_total", 0) + cov.get("branches_total", 0)
    return (cov.get("lines_covered", 0) + cov.get("branches_covered", 0)) / total if total else 0.0


def parts(report: dict[str, Any]) -> dict[str, float]:
    """The measured parts of the reward, each in [0, 1] (mutation only when measured)."""
    if not report.get("tests_kept"):
        return {k: 0.0 for k in ("gain", "pass_rate", "stability")}
    before, after = combined(report["coverage_before"]), combined(report["coverage_after"])
    judged = report["tests_kept"] + len(report.get("rejected", []))
    out = {"gain": max(0.0, after - before) / (1.0 - before) if before < 1.0 else 1.0,
           "pass_rate": report["tests_kept"] / judged,
           "stability": report["final_runs_passed"] / max(1, report["reruns"])}
    mutation = report.get("mutation") or {}
    if mutation.get("tested"):
        out["mutation"] = mutation["killed"] / mutation["tested"]
    return out


def reward(report: dict[str, Any]) -> float:
    """r as in the module docstring."""
    got = parts(report)
    weight = sum(WEIGHTS[k] for k in got)
    return min(1.0, max(0.0, sum(WEIGHTS[k] * v for k, v in got.items()) / weight))
