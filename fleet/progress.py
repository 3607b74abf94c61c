"""Job progress on stderr while the CLI waits: rich progress bars on an interactive terminal (one
row per job: iteration k of n, quality, line and branch coverage, tests, elapsed), one plain line
per state change otherwise (a CI log gets no terminal codes). Driven by the job's Celery states:
``PENDING``, ``STARTED``, ``PROGRESS`` (the worker's info dict), ``SUCCESS``, ``FAILURE``."""

from __future__ import annotations

import atexit
import sys
from typing import Any

import click

_WORDS = {"PENDING": "queued, waiting for an agent", "STARTED": "an agent started the job", "SUCCESS": "done"}
_ENDED = ("SUCCESS", "FAILURE", "REVOKED")


def progress_line(state: str, info: dict[str, Any]) -> str:
    """The plain one-line form of a job state (what a log gets: no terminal codes)."""
    if state == "PROGRESS" and info:
        return (f"iteration {info.get('iteration')}/{info.get('of')}: quality {info.get('quality', 0):.3f}, "
                f"line {info.get('line', 0):.0%}, branch {info.get('branch', 0):.0%}, "
                f"tests {info.get('tests_total', 0)} ({info.get('seconds', 0):.0f}s)")
    return _WORDS.get(state, state.lower())


def _live_console(stream, console):
    """The rich Console to draw bars on, or None for plain lines: a console only on an interactive
    terminal (not a pipe or file, not TERM=dumb; FORCE_COLOR in a CI log does not make one), or
    the injected ``console`` if it is a terminal one (tests: ``Console(force_terminal=True)``)."""
    if console is None:
        isatty = getattr(stream, "isatty", None)
        if not (isatty and isatty()):
            return None
        from rich.console import Console

        return console if (console := Console(file=stream)).is_interactive else None
    return console if console.is_terminal else None  # an injected console: its caller chose


class _Bars:
    """A rich Progress with one row per job, driven by the job's Celery states (``PENDING``,
    ``STARTED``, ``PROGRESS`` with the worker's info dict, ``SUCCESS``, ``FAILURE``)."""

    def __init__(self, console) -> None:
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.text import Text

        class Mark(SpinnerColumn):  # the spinner until the job ends (even on a full bar), then ✓ or ✗
            def render(self, task):
                mark = task.fields.get("mark")
                return Text.from_markup(mark) if mark else self.spinner.render(task.get_time())

        self.progress = Progress(
            Mark(), TextColumn("{task.description}"), BarColumn(bar_width=24), TextColumn("{task.fields[count]}"),
            TextColumn("{task.fields[quality]}"), TextColumn("{task.fields[line]}"),
            TextColumn("{task.fields[branch]}"), TextColumn("{task.fields[tests]}"), TimeElapsedColumn(),
            console=console, redirect_stdout=False)  # stdout may carry --json
        self.running = False
        self.ended: set[Any] = set()

    def add(self, label: str = "") -> Any:
        row = self.progress.add_task("", total=None, label=label, mark="", count="", quality="", line="", branch="",
                                     tests="")
        self.describe(row, "queued" if label else _WORDS["PENDING"])
        self.start()
        return row

    def describe(self, row: Any, status: str) -> None:
        from rich.markup import escape

        label = self.progress.tasks[self._index(row)].fields["label"]
        self.progress.update(row, description=f"[bold]{escape(label)}[/bold] {status}" if label else status)

    def _index(self, row: Any) -> int:
        return next(i for i, t in enumerate(self.progress.tasks) if t.id == row)

    def update(self, row: Any, state: str, info: dict[str, Any]) -> None:
        self.start()
        task = self.progress.tasks[self._index(row)]
        labelled = bool(task.fields["label"])
        if state == "PROGRESS" and info:
            of = info.get("of") or task.total
            self.progress.update(row, total=of, completed=info.get("iteration", 0),
                                 count=f"{info.get('iteration')}/{info.get('of')}", **_stats(info))
            self.describe(row, "iteration")
        elif state == "SUCCESS":
            self.end(row, True, **_final_stats(info))
        elif state in _ENDED:
            self.end(row, False, "failed" if state == "FAILURE" else state.lower())
        else:
            self.describe(row, {"PENDING": "queued" if labelled else _WORDS["PENDING"],
                                "STARTED": "started" if labelled else _WORDS["STARTED"]}.get(state, state.lower()))
        self.progress.refresh()

    def end(self, row: Any, ok: bool, status: str = "", **fields: str) -> None:
        """Finish a row: a full bar and a check mark, or a cross and the reason in red."""
        task = self.progress.tasks[self._index(row)]
        self.ended.add(row)
        if ok:
            total = task.total or 1
            self.progress.update(row, total=total, completed=total, mark="[green]✓[/green]", **fields)
            self.describe(row, "[green]done[/green]")
        else:
            from rich.markup import escape

            self.progress.update(row, mark="[red]✗[/red]")
            self.progress.stop_task(row)
            self.describe(row, f"[red]{escape(status)}[/red]")
        self.progress.refresh()

    def say(self, text: str) -> None:
        """A line above the bars (click.echo would write past them: click does not write through
        rich's stderr redirection)."""
        self.progress.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def start(self) -> None:
        if not self.running:
            self.running = True
            self.progress.start()
            atexit.register(self.close)  # a timeout or Ctrl-C must still restore the cursor

    def close(self) -> None:
        """Stop drawing; rows that never got a final state are marked as no longer awaited."""
        if self.running:
            for task in self.progress.tasks:
                if task.id not in self.ended:
                    self.end(task.id, False, "stopped waiting")
            self.running = False
            self.progress.stop()
            atexit.unregister(self.close)


def _stats(info: dict[str, Any]) -> dict[str, str]:
    return {"quality": f"quality {info.get('quality', 0):.3f}", "line": f"line {info.get('line', 0):.0%}",
            "branch": f"branch {info.get('branch', 0):.0%}", "tests": f"tests {info.get('tests_total', 0)}"}


def _final_stats(report: dict[str, Any]) -> dict[str, str]:
    """The finished job's own figures (its report), when the SUCCESS info carries them."""
    after = report.get("coverage_after") if isinstance(report, dict) else None
    if not isinstance(after, dict) or "quality" not in report:
        return {}
    return _stats({"quality": report["quality"], "line": after.get("line", 0), "branch": after.get("branch", 0),
                   "tests_total": report.get("tests_kept", 0)})


class ProgressView:
    """Shows one job's progress on stderr: a rich progress bar on a terminal (iteration k of n,
    quality, line and branch coverage, tests, elapsed), one plain line per state change otherwise.

    Called as ``view(state, info)``; ``console`` injects a rich Console (tests: ``force_terminal``)."""

    def __init__(self, stream=None, console=None) -> None:
        self.stream = stream or (console.file if console is not None else sys.stderr)
        self.console = _live_console(self.stream, console)
        self.tty = self.console is not None
        self._bars: _Bars | None = None
        self._row = None

    def __call__(self, state: str, info: dict[str, Any]) -> None:
        info = info if isinstance(info, dict) else {}
        if not self.tty:
            self.stream.write(progress_line(state, info) + "\n")
            self.stream.flush()
            return
        if self._bars is None:
            self._bars = _Bars(self.console)
            self._row = self._bars.add()
        elif not self._bars.running:
            return  # closed: a late state must not start a second display
        self._bars.update(self._row, state, info)
        if state in _ENDED:
            self.close()

    def close(self) -> None:
        """Stop drawing (the last bar stays on screen). Done on SUCCESS or FAILURE; otherwise on
        leaving ``with ProgressView() as view:`` (a timeout, Ctrl-C), or at the latest at exit."""
        if self._bars is not None:
            self._bars.close()

    def __enter__(self) -> "ProgressView":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class BatchProgress:
    """Several awaited jobs: one bar row per job on a terminal; nothing on a pipe (the batch prints
    its own line per finished job there). ``bars.row(key)`` is the ``progress`` callback for
    ``Client.wait`` (None off a terminal); ``bars.end(key, ok, reason)`` settles a row whatever
    ended the wait (a timeout raises before any final state arrives)."""

    def __init__(self, labels: dict[Any, str], stream=None, console=None) -> None:
        self.console = _live_console(stream or (console.file if console is not None else sys.stderr), console)
        self._bars = _Bars(self.console) if self.console is not None else None
        self._rows = {key: self._bars.add(label) for key, label in labels.items()} if self._bars else {}

    def row(self, key: Any):
        if self._bars is None:
            return None
        bars, row = self._bars, self._rows[key]
        return lambda state, info: bars.update(row, state, info if isinstance(info, dict) else {})

    def end(self, key: Any, ok: bool, reason: str = "") -> None:
        if self._bars is not None:
            self._bars.end(self._rows[key], ok, reason)

    def say(self, text: str) -> None:
        """A line on stderr: above the bars on a terminal, a plain line otherwise."""
        if self._bars is not None:
            self._bars.say(text)
        else:
            click.echo(text, err=True)

    def close(self) -> None:
        if self._bars is not None:
            self._bars.close()

    def __enter__(self) -> "BatchProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
