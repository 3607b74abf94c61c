"""`fleet submit --wait` progress: a rich bar on a terminal, plain lines on a pipe or log."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from fleet.batch import _wait_all
from fleet.errors import JobFailed
from fleet.progress import BatchProgress, ProgressView, progress_line

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def step(k: int, of: int = 3) -> dict:
    return {"iteration": k, "of": of, "quality": 0.2 * k + 0.1, "line": 0.3 * k, "branch": 0.25 * k,
            "tests_total": 2 * k, "seconds": 4.0 * k, "focus": "f", "kept": 1}


REPORT = {"job_id": "j", "module": "pkg.mod", "quality": 0.712, "tests_kept": 5,
          "coverage_after": {"line": 0.9, "branch": 0.75}}
RUN = [("PENDING", {}), ("STARTED", {}), ("PROGRESS", step(1)), ("PROGRESS", step(2)), ("PROGRESS", step(3))]


def terminal(buf: io.StringIO) -> Console:
    return Console(file=buf, force_terminal=True, width=100, color_system="truecolor")


def frames(raw: str) -> list[str]:
    """The successive renders of a live display, escape codes removed."""
    return [f.strip() for f in ANSI.sub("", raw).replace("\n", "\r").split("\r") if f.strip()]


def test_plain_lines_off_a_terminal():
    buf = io.StringIO()
    view = ProgressView(stream=buf)
    assert not view.tty
    for state, info in RUN + [("SUCCESS", REPORT)]:
        view(state, info)
    assert buf.getvalue().splitlines() == [
        "queued, waiting for an agent",
        "an agent started the job",
        "iteration 1/3: quality 0.300, line 30%, branch 25%, tests 2 (4s)",
        "iteration 2/3: quality 0.500, line 60%, branch 50%, tests 4 (8s)",
        "iteration 3/3: quality 0.700, line 90%, branch 75%, tests 6 (12s)",
        "done",
    ]
    assert "\x1b" not in buf.getvalue() and "\r" not in buf.getvalue()


def test_plain_failure_line_and_non_dict_info():
    buf = io.StringIO()
    view = ProgressView(stream=buf)
    view("PENDING", {})
    view("FAILURE", RuntimeError("boom"))  # the client passes {} for a non-dict info; be lenient anyway
    assert buf.getvalue() == "queued, waiting for an agent\nfailure\n"
    assert progress_line("REVOKED", {}) == "revoked"


def test_force_color_does_not_draw_bars_into_a_log(monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")
    buf = io.StringIO()
    ProgressView(stream=buf)("PROGRESS", step(1))
    assert buf.getvalue() == progress_line("PROGRESS", step(1)) + "\n"


def test_bar_on_a_terminal_completes_on_success():
    buf = io.StringIO()
    with ProgressView(console=terminal(buf)) as view:
        assert view.tty
        for state, info in RUN:
            view(state, info)
        running = frames(buf.getvalue())
        view("SUCCESS", REPORT)
    raw = buf.getvalue()
    shown = frames(raw)
    assert any("queued, waiting for an agent" in f for f in running)
    assert any("iteration" in f and "2/3" in f and "quality 0.500" in f
               for f in shown)
    last = shown[-1]
    assert last.startswith("✓ done"), last
    bar = re.search(r"━+", last).group()
    assert len(bar) == 24 and "╺" not in last and "╸" not in last  # a full bar
    for figure in ("3/3", "quality 0.712", "line 90%", "branch 75%", "tests 5"):  # the final report's figures
        assert figure in last, (figure, last)
    assert re.search(r"\d:\d\d:\d\d$", last)  # elapsed
    assert "\x1b[?25h" in raw  # the cursor is shown again


def test_bar_on_a_terminal_shows_failure():
    buf = io.StringIO()
    view = ProgressView(console=terminal(buf))
    for state, info in RUN[:3]:
        view(state, info)
    view("FAILURE", {})
    last = frames(buf.getvalue())[-1]
    assert last.startswith("✗ failed"), last
    assert "1/3" in last and "quality 0.300" in last
    assert "\x1b[31m" in buf.getvalue() or "\x1b[38;2;" in buf.getvalue()  # in red
    before = buf.getvalue()
    view("FAILURE", {})  # a late state after the end draws nothing more
    assert buf.getvalue() == before and not view._bars.running


def test_leaving_the_wait_early_marks_the_bar():
    buf = io.StringIO()
    with pytest.raises(TimeoutError):
        with ProgressView(console=terminal(buf)) as view:
            view("PROGRESS", step(1, of=4))
            raise TimeoutError
    last = frames(buf.getvalue())[-1]
    assert last.startswith("✗ stopped waiting") and "1/4" in last, last


class FakeClient:
    def wait(self, job_id, timeout, progress=None):
        for state, info in RUN:
            if progress:
                progress(state, info)
        if job_id == "j2":
            if progress:
                progress("FAILURE", {})
            raise JobFailed("job j2 failed: RuntimeError: boom")
        report = {**REPORT, "job_id": job_id, "module": f"pkg.m{job_id[1]}"}
        if progress:
            progress("SUCCESS", report)
        return report


SUBMITTED = {Path("pkg/m1.py"): "j1", Path("pkg/m2.py"): "j2"}


def test_batch_one_row_per_job_on_a_terminal(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr("fleet.batch.BatchProgress",
                        lambda labels: BatchProgress(labels, console=terminal(buf)))
    outcomes = _wait_all(FakeClient(), SUBMITTED, 60, {p: f"pkg.{p.stem}" for p in SUBMITTED})
    assert [o.exit_code for o in outcomes] == [0, 1]
    shown = frames(buf.getvalue())
    assert "[1/2] pkg.m1: 5 tests kept, line 90%, branch 75%, quality 0.712" in shown
    assert "[2/2] m2: job j2 failed: RuntimeError: boom" in shown
    m1, m2 = shown[-2:]
    assert m1.startswith("✓ pkg.m1 done") and "quality 0.712" in m1, m1
    assert m2.startswith("✗ pkg.m2 failed") and "3/3" in m2, m2


def test_batch_off_a_terminal_prints_only_its_lines(capsys):
    outcomes = _wait_all(FakeClient(), SUBMITTED, 60)
    assert [o.exit_code for o in outcomes] == [0, 1]
    err = capsys.readouterr().err
    assert err.splitlines() == ["[1/2] pkg.m1: 5 tests kept, line 90%, branch 75%, quality 0.712",
                                "[2/2] m2: job j2 failed: RuntimeError: boom"]
    assert BatchProgress({"a": "a"}, stream=io.StringIO()).row("a") is None
