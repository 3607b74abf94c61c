"""fleet.junit.parse_junit on hand-written and real pytest JUnit XML."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fleet.junit import COLLECTION, Outcome, parse_junit

MOD = "tests.test_generated"


def _xml(tmp_path: Path, *cases: str) -> Path:
    path = tmp_path / "junit.xml"
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">'
        '<testsuite name="pytest" errors="0" failures="0" skipped="0" tests="1">'
        + "".join(cases)
        + "</testsuite></testsuites>",
        encoding="utf-8",
    )
    return path


def _case(name: str, body: str = "", classname: str = MOD) -> str:
    return f'<testcase classname="{classname}" name="{name}" time="0.001">{body}</testcase>'


def test_passed_failed_error_skipped(tmp_path):
    path = _xml(
        tmp_path,
        _case("test_ok"),
        _case("test_bad", '<failure message="assert 1 == 2">def test_bad():\n&gt;  assert 1 == 2</failure>'),
        _case("test_err", '<error message="failed on setup with &quot;fixture x not found&quot;">trace</error>'),
        _case("test_skip", '<skipped type="pytest.skip" message="not today">skip reason</skipped>'),
    )
    out = parse_junit(path)
    assert out["test_ok"] == Outcome("passed")
    assert out["test_bad"].status == "failed"
    assert out["test_bad"].message == "assert 1 == 2\ndef test_bad():\n>  assert 1 == 2"
    assert out["test_err"] == Outcome("error", 'failed on setup with "fixture x not found"\ntrace')
    assert out["test_skip"] == Outcome("skipped", "not today")
    assert [o.passed for o in out.values()] == [True, False, False, False]


def test_class_methods_fold_into_the_class_unit(tmp_path):
    path = _xml(
        tmp_path,
        _case("test_one", classname=f"{MOD}.TestX"),
        _case("test_two", classname=f"{MOD}.TestX"),
        _case("test_one", classname=f"{MOD}.TestY"),
        _case("test_two", '<failure message="boom"/>', classname=f"{MOD}.TestY"),
    )
    assert parse_junit(path) == {"TestX": Outcome("passed"), "TestY": Outcome("failed", "boom")}


@pytest.mark.parametrize("order", [("1", "2"), ("2", "1")])
def test_parametrized_cases_fold_and_worst_wins(tmp_path, order):
    bodies = {"1": "", "2": '<failure message="assert 2 == 1"/>'}
    path = _xml(tmp_path, *(_case(f"test_a[{p}]", bodies[p]) for p in order), _case("test_b[x-y]"))
    assert parse_junit(path) == {"test_a": Outcome("failed", "assert 2 == 1"), "test_b": Outcome("passed")}


def test_merge_ranks_error_over_failed_over_skipped(tmp_path):
    path = _xml(
        tmp_path,
        _case("test_a[1]", '<skipped message="s"/>'),
        _case("test_a[2]", '<error message="e"/>'),
        _case("test_a[3]", '<failure message="f"/>'),
        _case("test_b[1]", '<skipped message="s"/>'),
        _case("test_b[2]"),
    )
    assert parse_junit(path) == {"test_a": Outcome("error", "e"), "test_b": Outcome("skipped", "s")}


def test_nameless_failing_case_is_a_collection_error(tmp_path):
    path = _xml(tmp_path, _case("", '<error message="collection failure">E  SyntaxError</error>'))
    assert parse_junit(path) == {COLLECTION: Outcome("collection-error", "collection failure\nE  SyntaxError")}


def test_pytest_style_collection_error_is_reported_under_collection(tmp_path):
    path = _xml(tmp_path, _case(MOD, '<error message="collection failure">SyntaxError</error>', classname=""))
    assert parse_junit(path) == {COLLECTION: Outcome("collection-error", "collection failure\nSyntaxError")}


def test_missing_file_gives_empty(tmp_path):
    assert parse_junit(tmp_path / "absent.xml") == {}


def test_directory_gives_empty(tmp_path):
    assert parse_junit(tmp_path) == {}


@pytest.mark.parametrize("text", ["", "<testsuites><testsuite>", "not xml at all", "<a></b>"])
def test_malformed_file_gives_empty(tmp_path, text):
    path = tmp_path / "junit.xml"
    path.write_text(text)
    assert parse_junit(path) == {}


# --- real pytest output ------------------------------------------------------------------------


def _run_pytest(tmp_path: Path, source: str) -> Path:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_generated.py").write_text(source)
    junit = tmp_path / "junit.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
         f"--rootdir={tmp_path}", "tests/test_generated.py"],
        cwd=tmp_path, capture_output=True, timeout=120, check=False,
    )
    return junit


REAL = '''\
import pytest

def test_pass():
    assert 1 + 1 == 2

def test_fail():
    assert 1 + 1 == 3, "arith is broken"

@pytest.mark.skip(reason="later")
def test_skip():
    pass

@pytest.fixture
def broken():
    raise RuntimeError("fixture exploded")

def test_error(broken):
    pass

@pytest.mark.parametrize("n", [1, 2, 3])
def test_param(n):
    assert n != 2

class TestGroup:
    def test_a(self):
        pass

    def test_b(self):
        pass
'''


def test_real_pytest_junit(tmp_path):
    out = parse_junit(_run_pytest(tmp_path, REAL))
    assert set(out) == {"test_pass", "test_fail", "test_skip", "test_error", "test_param", "TestGroup"}
    assert out["test_pass"].passed and out["TestGroup"].passed
    assert out["test_fail"].status == "failed" and "arith is broken" in out["test_fail"].message
    assert out["test_skip"] == Outcome("skipped", "later")
    assert out["test_error"].status == "error" and "fixture exploded" in out["test_error"].message
    assert out["test_param"].status == "failed" and "assert 2 != 2" in out["test_param"].message


def test_real_pytest_collection_error(tmp_path):
    out = parse_junit(_run_pytest(tmp_path, "def test_x(:\n    pass\n"))
    assert list(out) == [COLLECTION]
    assert out[COLLECTION].status == "collection-error"
