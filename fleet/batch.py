"""Many targets in one command: bundle each, submit all at once, wait for all, write the tests, a
JSON report per job and a JUnit XML report; return the aggregated exit code (:mod:`fleet.pipeline`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from fleet.config import Settings
from fleet.errors import FleetError, JobTimeout
from fleet.output import echo_json, test_file_name, write_atomic
from fleet.progress import BatchProgress
from fleet.pipeline import Outcome, exit_code, junit_xml, outcome_of


def _say(text: str) -> None:
    click.echo(text, err=True)


def _bundle_all(settings: Settings, paths: list[Path], project: Path | None, max_iterations: int | None):
    """(jobs by target, outcomes of targets refused as bad input)."""
    from fleet.bundle import build_bundle
    from fleet.jobs import Job, Options, limits_from

    jobs, refused = {}, []
    for path in dict.fromkeys(paths):
        try:
            jobs[path] = Job.from_bundle(build_bundle(path, limits_from(settings), project),
                                         Options(max_iterations=max_iterations))
        except FleetError as exc:
            refused.append(Outcome(path, error=str(exc), exit_code=exc.exit_code))
            _say(f"{path}: refused: {exc}")
    return jobs, refused


def _wait_all(client: Any, submitted: dict[Path, str], timeout: float,
              labels: dict[Path, str] | None = None) -> list[Outcome]:
    deadline = time.monotonic() + timeout
    outcomes = []
    # One bar per job on a terminal (the jobs run at once, but are awaited in turn: a row moves
    # when its wait comes up); nothing extra on a pipe, where the per-job lines below suffice.
    with BatchProgress({path: (labels or {}).get(path, path.stem) for path in submitted}) as bars:
        for k, (path, job_id) in enumerate(submitted.items(), 1):
            def wait(job_id: str = job_id, progress: Any = bars.row(path)) -> dict[str, Any]:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise JobTimeout(f"job {job_id} did not finish within {timeout:.0f}s in all")
                return client.wait(job_id, left, progress)

            outcome = outcome_of(path, wait)
            outcome.job_id = outcome.job_id or job_id
            outcomes.append(outcome)
            bars.end(path, outcome.exit_code == 0, "no tests kept" if outcome.report else
                     "timed out" if outcome.exit_code == 3 else "failed")
            bars.say(f"[{k}/{len(submitted)}] {outcome.module}: " + (_line(outcome.report) if outcome.report else outcome.error))
    return outcomes


def _line(report: dict[str, Any]) -> str:
    after = report["coverage_after"]
    return (f"{report['tests_kept']} tests kept, line {after['line']:.0%}, branch {after['branch']:.0%}, "
            f"quality {report['quality']:.3f}")


def _write(outcomes: list[Outcome], out: Path | None, json_dir: Path | None, junit: Path | None) -> None:
    for o in outcomes:
        if o.report and out and o.report.get("test_module"):
            o.extra["written"] = str(out / test_file_name(o.module))
            write_atomic(out / test_file_name(o.module), o.report["test_module"])
        if json_dir:
            doc = o.report or {"module": o.module, "target": str(o.target), "error": o.error}
            write_atomic(json_dir / f"{o.module}.json", json.dumps({**doc, "exit_code": o.exit_code}, indent=2, default=str))
    if junit:
        write_atomic(junit, junit_xml(outcomes))


def run_batch(settings: Settings, paths: list[Path], *, project: Path | None, max_iterations: int | None, wait: bool,
              out: Path | None, json_dir: Path | None, junit: Path | None, as_json: bool,
              timeout: float | None) -> int:
    """Submit every target, wait (if asked), write the outputs; returns the aggregated exit code."""
    from fleet.client import Client

    jobs, outcomes = _bundle_all(settings, paths, project, max_iterations)
    if jobs:
        client = Client(settings)
        submitted = {path: client.submit(job)[0] for path, job in jobs.items()}
        _say(f"submitted {len(submitted)} job(s)" + (f", {len(outcomes)} target(s) refused" if outcomes else ""))
        if not wait:
            outcomes += [Outcome(path, job_id) for path, job_id in submitted.items()]
        else:
            outcomes += _wait_all(client, submitted, timeout or settings["jobs"]["wait_timeout"],
                                  {path: job.module for path, job in jobs.items()})
    _write(outcomes, out if wait else None, json_dir if wait else None, junit if wait else None)
    code = exit_code(outcomes)
    if as_json:
        echo_json({"exit_code": code, "jobs": [{"target": str(o.target), "module": o.module, "job_id": o.job_id,
                                                "exit_code": o.exit_code, "error": o.error, **o.extra}
                                               for o in outcomes]})
    else:
        click.echo(f"{len(outcomes)} target(s): {sum(o.exit_code == 0 for o in outcomes)} ok, "
                   f"{sum(o.exit_code != 0 for o in outcomes)} not; exit code {code}")
    return code
