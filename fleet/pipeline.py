"""Pipelines: the changed modules since a git ref, many jobs submitted and awaited together, one
aggregated exit code, and a JUnit XML report CI systems show natively.

Aggregated exit code = the highest of the jobs' codes: 0 every job kept tests, 1 a job failed or
kept none, 2 a target was refused as bad input, 3 the fleet was unreachable or a wait timed out.
"""

from __future__ import annotations

import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fleet.errors import BadInput, FleetError

SKIP = ("test_", "conftest.py")


@dataclass
class Outcome:
    """One target's job: its report, or the error that ended it, and its exit code."""

    target: Path
    job_id: str = ""
    report: dict[str, Any] | None = None
    error: str = ""
    exit_code: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def module(self) -> str:
        return (self.report or {}).get("module") or self.target.stem


def changed_modules(ref: str, cwd: Path = Path(".")) -> list[Path]:
    """Existing ``.py`` files changed since ``ref`` (committed or not), tests and conftest excluded."""
    done = subprocess.run(["git", "diff", "--name-only", "--diff-filter=ACMR", ref, "--", "*.py"], cwd=cwd,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise BadInput(f"git diff against {ref!r} failed: {done.stderr.strip() or done.stdout.strip()}")
    root = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=cwd, capture_output=True,
                               text=True).stdout.strip() or cwd)
    paths = [root / line for line in done.stdout.splitlines() if line.strip()]
    return [p for p in paths if p.is_file() and not p.name.startswith(SKIP) and not p.name.endswith("_test.py")]


def outcome_of(target: Path, run: Callable[[], dict[str, Any]]) -> Outcome:
    """Run one job step, turning deliberate errors into an Outcome with their exit code."""
    started = time.monotonic()
    try:
        report = run()
    except FleetError as exc:
        return Outcome(target, error=str(exc), exit_code=exc.exit_code, seconds=time.monotonic() - started)
    kept = report.get("tests_kept", 0)
    return Outcome(target, report.get("job_id", ""), report, "" if kept else "no generated test passed verification",
                   0 if kept else 1, time.monotonic() - started)


def exit_code(outcomes: list[Outcome]) -> int:
    """The module docstring's aggregate (0 for no outcomes)."""
    return max((o.exit_code for o in outcomes), default=0)


def junit_xml(outcomes: list[Outcome]) -> str:
    """One ``<testsuite>``: a testcase per target (failure when its job did not keep tests) with
    the kept and rejected counts and coverage in its output."""
    suite = ET.Element("testsuite", name="fleet generate-tests", tests=str(len(outcomes)),
                       failures=str(sum(o.exit_code == 1 for o in outcomes)),
                       errors=str(sum(o.exit_code not in (0, 1) for o in outcomes)),
                       time=f"{sum(o.seconds for o in outcomes):.3f}")
    for o in outcomes:
        case = ET.SubElement(suite, "testcase", classname="fleet.generate_tests", name=o.module, time=f"{o.seconds:.3f}")
        if o.exit_code == 1:
            ET.SubElement(case, "failure", message=o.error).text = o.error
        elif o.exit_code:
            ET.SubElement(case, "error", message=o.error).text = o.error
        if o.report:
            ET.SubElement(case, "system-out").text = _facts(o.report)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)


def _facts(report: dict[str, Any]) -> str:
    after = report.get("coverage_after", {})
    return (f"job {report.get('job_id')}: {report.get('tests_kept', 0)} tests kept, "
            f"{len(report.get('rejected', []))} rejected; line {after.get('line', 0):.0%}, "
            f"branch {after.get('branch', 0):.0%}; quality {report.get('quality', 0):.3f}")
