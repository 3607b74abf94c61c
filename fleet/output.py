"""What the CLI shows and writes: the job summary, JSON, and the test file (progress: :mod:`fleet.progress`)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import click


def test_file_name(module: str) -> str:
    return f"test_{module.rpartition('.')[2]}.py"


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write ``content`` (text as UTF-8) to ``path`` via a temporary file and rename: never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _pct(cov: dict[str, Any], key: str) -> str:
    return f"{cov.get(key, 0):.0%}"


def summary(report: dict[str, Any], written: Path | None) -> str:
    """A few human lines about a finished job."""
    before, after = report["coverage_before"], report["coverage_after"]
    agent = report.get("agent", {}).get("id", "?")
    lines = [
        f"job {report['job_id']} ({report['module']}) on {agent}, model {report['model']['id']}",
        f"tests kept: {report['tests_kept']}, each passed {report['reruns']}/{report['reruns']} runs; "
        f"final suite passed {report['final_runs_passed']}/{report['reruns']} runs",
        f"coverage: line {_pct(before, 'line')} → {_pct(after, 'line')}, "
        f"branch {_pct(before, 'branch')} → {_pct(after, 'branch')}; quality {report['quality']:.3f}",
        f"iterations: {len(report['iterations'])} (stop: {report['stop_reason']}), "
        f"time {report.get('wall_seconds', report['seconds']):.1f}s, "
        f"tokens {report['tokens']['in']} in / {report['tokens']['out']} out",
        f"rejected: {report['rejected_by_reason'] or 'none'}",
    ]
    if report.get("cached"):
        first = (report.get("cached_from") or {}).get("id", "?")
        lines.append(f"answered from the result cache (generated earlier on {first}; the model was not used)")
    mutation = report.get("mutation")
    if mutation and mutation.get("tested"):
        lines.append(f"mutation score: {mutation['killed']}/{mutation['tested']} mutants killed")
    if written:
        lines.append(f"wrote {written}")
    return "\n".join(lines)


def echo_json(doc: dict[str, Any]) -> None:
    import json

    click.echo(json.dumps(doc, indent=2, default=str))
