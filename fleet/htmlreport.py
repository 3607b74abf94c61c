"""A job's report as a page for people: quality and coverage per iteration (an SVG chart), the kept
and rejected tests with their reasons, the routing and learning facts, and the target's source
annotated with what the kept suite covers (from the report's ``missing`` lines and branch arcs).
Rendered with Jinja2 (autoescaped); the page is self-contained (no scripts, no external assets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from fleet.analysis import source_lines
from fleet.output import write_atomic

WIDTH, HEIGHT, PAD = 560, 220, 30
SERIES = (("quality", "#1f6feb"), ("line", "#2da44e"), ("branch", "#bf8700"))


def chart(iterations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One SVG series per measure: ``points`` for a polyline and ``dots`` (x, y) for its markers
    (a single iteration is a dot, not a line); x = iteration (evenly spaced), y = value in [0, 1]."""
    n = max(1, len(iterations) - 1)

    def point(i: int, v: float) -> tuple[str, str]:
        return f"{PAD + i * (WIDTH - 2 * PAD) / n:.1f}", f"{HEIGHT - PAD - v * (HEIGHT - 2 * PAD):.1f}"

    series = []
    for key, color in SERIES:
        dots = [point(i, float(it.get(key, 0))) for i, it in enumerate(iterations)]
        series.append({"name": key, "color": color, "dots": dots, "points": " ".join(f"{x},{y}" for x, y in dots)})
    return series


def annotated(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Source lines with a class: ``missing`` (statement not run), ``partial`` (a branch from it
    not taken), ``run`` or ``""`` (not a statement, or not known)."""
    source = (report.get("target") or {}).get("source", "")
    missing = set(report.get("missing", {}).get("lines", []))
    partial = {a for a, _ in report.get("missing", {}).get("branches", [])}
    return [{"n": n, "text": text, "cls": "missing" if n in missing else "partial" if n in partial else ""}
            for n, text in enumerate(source_lines(source), 1)]


def render(report: dict[str, Any]) -> str:
    env = Environment(loader=PackageLoader("fleet", "templates"), autoescape=select_autoescape(["html", "j2"]))
    return env.get_template("report.html.j2").render(
        r=report, chart=chart(report.get("iterations", [])), lines=annotated(report), width=WIDTH, height=HEIGHT,
        pad=PAD)


def write(report: dict[str, Any], directory: Path) -> Path:
    """``index.html`` (and the kept test module beside it) in ``directory``; returns the page."""
    page = directory / "index.html"
    write_atomic(page, render(report))
    if report.get("test_module"):
        write_atomic(directory / f"test_{report['module'].rpartition('.')[2]}.py", report["test_module"])
    return page
