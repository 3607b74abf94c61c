"""Pipelines: changed modules since a git ref, many jobs at once with one exit code, JUnit XML."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from fleet.cli import cli
from fleet.errors import BadInput
from fleet.llm.scripted import ScriptedBackend
from fleet.pipeline import Outcome, changed_modules, exit_code, junit_xml

SIGN = "def sign(x):\n    if x > 0:\n        return 1\n    return -1\n"
REPLY = "sign\n\ndef test_positive():\n    assert sign(5) == 1\n\ndef test_negative():\n    assert sign(-2) == -1\n"


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=repo, check=True,
                   capture_output=True)


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text(SIGN)
    (tmp_path / "pkg" / "gone.py").write_text(SIGN)
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "base")
    (tmp_path / "pkg" / "a.py").write_text(SIGN + "\n\ndef two():\n    return 2\n")
    (tmp_path / "pkg" / "b.py").write_text(SIGN)
    (tmp_path / "pkg" / "test_a.py").write_text("def test_x():\n    assert True\n")
    (tmp_path / "pkg" / "gone.py").unlink()
    (tmp_path / "notes.txt").write_text("x")
    git(tmp_path, "add", ".")
    return tmp_path


def test_changed_modules_lists_changed_and_added_sources_but_not_tests_or_deleted(repo):
    assert sorted(p.name for p in changed_modules("HEAD", repo)) == ["a.py", "b.py"]


def test_changed_modules_with_an_unknown_ref_is_bad_input(repo):
    with pytest.raises(BadInput, match="no-such-ref"):
        changed_modules("no-such-ref", repo)


def test_exit_code_is_the_worst_jobs():
    ok, failed, refused, lost = (Outcome(Path(f"{n}.py"), exit_code=c) for n, c in (("a", 0), ("b", 1), ("c", 2), ("d", 3)))
    assert exit_code([]) == 0 and exit_code([ok]) == 0 and exit_code([ok, failed]) == 1
    assert exit_code([failed, refused]) == 2 and exit_code([refused, lost, ok]) == 3


def test_junit_xml_has_a_testcase_per_target_with_failures_and_errors():
    report = {"job_id": "j1", "module": "pkg.a", "tests_kept": 2, "rejected": [{}], "quality": 0.9,
              "coverage_after": {"line": 1.0, "branch": 0.5}}
    xml = junit_xml([Outcome(Path("a.py"), "j1", report, seconds=2.5),
                     Outcome(Path("b.py"), error="no generated test passed verification", exit_code=1),
                     Outcome(Path("c.py"), error="syntax error in c.py", exit_code=2)])
    suite = ET.fromstring(xml)
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")
    cases = {c.get("name"): c for c in suite}
    assert set(cases) == {"pkg.a", "b", "c"}
    assert cases["pkg.a"].find("failure") is None and "2 tests kept, 1 rejected" in cases["pkg.a"].find("system-out").text
    assert cases["b"].find("failure").get("message") == "no generated test passed verification"
    assert cases["c"].find("error").text == "syntax error in c.py"


def test_many_targets_through_the_fleet_with_junit_and_json(repo, scripted_fleet, tmp_path, monkeypatch):
    monkeypatch.setenv("FLEET_ENGINE_PROMPTS_PER_ITERATION", "1")
    monkeypatch.chdir(repo)
    (repo / "pkg" / "broken.py").write_text("def f(:\n")
    junit, reports, out = tmp_path / "junit.xml", tmp_path / "reports", tmp_path / "generated"
    with scripted_fleet(ScriptedBackend([REPLY])):
        result = CliRunner().invoke(cli, ["submit", str(repo / "pkg" / "broken.py"), "--changed-since", "HEAD",
                                          "--max-iterations", "1", "--junit", str(junit), "--json-dir", str(reports),
                                          "--out", str(out), "--timeout", "300"], catch_exceptions=False)
    assert result.exit_code == 2, result.output  # the broken target is bad input; the others ran
    cases = {c.get("name"): c for c in ET.fromstring(junit.read_text())}
    assert set(cases) == {"pkg.a", "pkg.b", "broken"}
    assert cases["broken"].find("error") is not None
    assert cases["pkg.a"].find("failure") is None and cases["pkg.b"].find("failure") is None
    assert json.loads((reports / "pkg.a.json").read_text())["tests_kept"] == 2
    assert json.loads((reports / "broken.json").read_text())["exit_code"] == 2
    assert (out / "test_a.py").exists() and (out / "test_b.py").exists()
