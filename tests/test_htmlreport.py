"""The job report as an HTML page: chart points, source annotation, escaping, and `fleet report`
fetching a real job's report through the fleet."""

from __future__ import annotations

from html.parser import HTMLParser

from click.testing import CliRunner

from fleet.cli import cli
from fleet.htmlreport import HEIGHT, PAD, annotated, chart, render
from fleet.jobs import Job, Options
from fleet.llm.scripted import ScriptedBackend

SOURCE = "def sign(x):\n    if x > 0:\n        return 1\n    return -1\n"
REPLY = "sign\n\ndef test_positive():\n    assert sign(5) == 1\n"


class Spans(HTMLParser):
    """Collects the class of every source line span and all text."""

    def __init__(self) -> None:
        super().__init__()
        self.classes: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "span" and "class" in dict(attrs):  # source lines; the legend's spans have no class
            self.classes.append(dict(attrs)["class"])

    def handle_data(self, data):
        self.text.append(data)


def test_chart_maps_values_to_the_plot_area():
    (quality, line, _) = chart([{"quality": 0.0, "line": 0.5}, {"quality": 1.0, "line": 1.0}])
    first, last = quality["points"].split()
    assert first.split(",")[1] == f"{HEIGHT - PAD:.1f}" and last.split(",")[1] == f"{PAD:.1f}"
    assert line["points"].split()[0].split(",")[1] == f"{HEIGHT - PAD - 0.5 * (HEIGHT - 2 * PAD):.1f}"


def test_a_single_iteration_is_drawn_as_dots():
    (quality, line, branch) = chart([{"quality": 0.75, "line": 0.8, "branch": 0.5}])
    assert [len(s["dots"]) for s in (quality, line, branch)] == [1, 1, 1]
    assert quality["dots"][0] == (f"{PAD:.1f}", f"{HEIGHT - PAD - 0.75 * (HEIGHT - 2 * PAD):.1f}")
    one = {"iteration": 1, "focus": "module", "quality": 0.75, "line": 0.8, "branch": 0.5, "kept": 1, "rejected": 0,
           "seconds": 1.0, "tokens_in": 10, "tokens_out": 5}
    page = render(minimal_report(iterations=[one]))
    assert page.count("<circle") == 3


def test_source_lines_are_marked_missing_or_partial():
    report = {"target": {"source": SOURCE}, "missing": {"lines": [4], "branches": [[2, 4]]}}
    assert [line["cls"] for line in annotated(report)] == ["", "partial", "", "missing"]


def minimal_report(**fields) -> dict:
    return {"module": "m", "job_id": "j", "status": "ok", "tests_kept": 0, "coverage_before": {"line": 0, "branch": 0},
            "coverage_after": {"line": 0, "branch": 0}, "quality": 0.0, "quality_formula": "q", "reruns": 5,
            "final_runs_passed": 5, "iterations": [], "stop_reason": "plateau", "seconds": 1.0,
            "tokens": {"in": 1, "out": 1}, "model": {"id": "x"}, "tests": [], "sandbox": {}, "rejected": [],
            "target": {"path": "m.py", "source": "x = 1\n"}, **fields}


def test_hostile_text_in_the_report_is_escaped():
    report = minimal_report(
        rejected=[{"iteration": 1, "name": "t", "reason": "assertion", "detail": "<script>alert(1)</script>"}],
        target={"path": "m.py", "source": "x = '</pre><script>bad()</script>'\n"})
    page = render(report)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_fleet_report_writes_the_page_of_a_real_job(scripted_fleet, tmp_path, monkeypatch):
    monkeypatch.setenv("FLEET_ENGINE_PROMPTS_PER_ITERATION", "1")
    with scripted_fleet(ScriptedBackend([REPLY])) as client:
        job_id, _ = client.submit(Job(module="signs", target_path="signs.py", files={"signs.py": SOURCE},
                                      options=Options(max_iterations=1)))
        client.wait(job_id, timeout=120)
        done = CliRunner().invoke(cli, ["report", job_id, "--html", str(tmp_path / "r")], catch_exceptions=False)
        missing = CliRunner().invoke(cli, ["report", "no-such-job", "--html", str(tmp_path / "x")])
    assert done.exit_code == 0, done.output
    page = (tmp_path / "r" / "index.html").read_text()
    spans = Spans()
    spans.feed(page)
    assert spans.classes == ["", "partial", "", "missing"]  # sign(5) only: `return -1` never ran
    assert "test_positive" in page and "signs.py: what the kept suite covers" in page
    assert (tmp_path / "r" / "test_signs.py").read_text().count("def test_positive") == 1
    assert missing.exit_code == 1 and not (tmp_path / "x").exists()
