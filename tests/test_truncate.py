"""Cutting a failing test before the statement it failed at (fleet.trm.truncate)."""

from __future__ import annotations

from fleet.trm.parse import Unit
from fleet.trm.truncate import before_failure, expecting_failure, failing_line, raised_in_target
from tests.scripted_job import run_job

MODULE = '''import pytest
from calc import sign


def test_three():
    x = sign(5)
    assert x == 1
    with pytest.raises(TypeError):
        sign(None)
    assert sign(0) == 7
    assert sign(-1) == -1


def test_first_fails():
    assert sign(1) == 2
    assert sign(0) == 0


class TestOne:
    def test_only(self):
        assert sign(1) == 1
        assert sign(2) == 3
'''


def unit(name: str) -> Unit:
    return Unit(name, "", asserts=3)


def message(line: int) -> str:
    return f"assert 0 == 7\n>       assert sign(0) == 7\nE       assert 0 == 7\n\ntests/test_generated.py:{line}: AssertionError"


def test_failing_line_is_the_test_files_first_frame():
    text = "x\ntests/test_generated.py:12: \n_ _ _\nsrc/m.py:2: in total\nsrc/m.py:2: TypeError"
    assert failing_line(text) == 12
    assert failing_line("no location") is None


def test_the_cut_keeps_the_statements_before_the_failure():
    cut = before_failure(unit("test_three"), MODULE, message(10))
    assert cut is not None and cut.origin == "cut" and cut.asserts == 2
    assert cut.source == ("def test_three():\n    x = sign(5)\n    assert x == 1\n"
                          "    with pytest.raises(TypeError):\n        sign(None)")


def test_a_failure_inside_a_compound_statement_cuts_before_the_whole_statement():
    cut = before_failure(unit("test_three"), MODULE, message(9))
    assert cut is not None and cut.source.endswith("assert x == 1") and cut.asserts == 1


def test_nothing_is_kept_when_the_first_statement_fails_or_no_check_precedes():
    assert before_failure(unit("test_first_fails"), MODULE, message(15)) is None
    assert before_failure(unit("test_three"), MODULE, message(7)) is None  # only `x = sign(5)` ran


def test_a_one_method_test_class_is_cut_inside_its_method():
    cut = before_failure(unit("TestOne"), MODULE, message(22))
    assert cut is not None
    assert cut.source == "class TestOne:\n\n    def test_only(self):\n        assert sign(1) == 1"


def test_a_line_outside_the_test_or_an_unknown_test_gives_nothing():
    assert before_failure(unit("test_three"), MODULE, message(15)) is None
    assert before_failure(unit("test_missing"), MODULE, message(10)) is None
    assert before_failure(unit("test_three"), "def broken(:\n", message(10)) is None


def raised(line: int, where: str = "src/calc.py:4", exc: str = "ValueError", source: str = "raise ValueError('bad')") -> str:
    return (f"{exc}: bad\n>       assert sign(0) == 7\n\ntests/test_generated.py:{line}: \n_ _ _\n"
            f"{where}: in sign\n    def sign(x):\n>       {source}\nE   {exc}: bad\n\n{where}: {exc}")


def test_an_exception_is_located_by_pytests_last_frame():
    assert raised_in_target(raised(10)) == "ValueError"
    assert raised_in_target(raised(10, where="/usr/lib/python3.11/json/decoder.py:355")) is None
    assert raised_in_target(message(10)) is None  # raised in the test file
    assert raised_in_target(raised(10, exc="IndexError", source="return data[16]")) is None  # not on purpose


def test_a_statement_that_raised_in_the_code_becomes_expected_to_raise():
    expecting = expecting_failure(unit("test_three"), MODULE, raised(10), lambda name: True)
    assert expecting is not None and expecting.origin == "raises" and expecting.asserts == 3
    assert expecting.source.endswith("        sign(None)\n    with pytest.raises(ValueError):\n        sign(0) == 7")
    first = expecting_failure(unit("test_first_fails"), MODULE, raised(15), lambda name: True)
    assert first is not None and first.source == "def test_first_fails():\n    with pytest.raises(ValueError):\n        sign(1) == 2"


def test_an_exception_is_not_expected_when_unnameable_or_not_from_the_code():
    assert expecting_failure(unit("test_three"), MODULE, raised(10), lambda name: False) is None
    assert expecting_failure(unit("test_three"), MODULE, raised(10, exc="RecursionError"), lambda name: True) is None
    assert expecting_failure(unit("test_three"), MODULE, message(10), lambda name: True) is None
    assert expecting_failure(unit("test_three"), MODULE, raised(9), lambda name: True) is None  # inside a `with`
    bad_call = raised(10, exc="TypeError").replace("TypeError: bad", "TypeError: f.<locals>.<lambda>() missing 1 required positional argument: 'x'")
    assert expecting_failure(unit("test_three"), MODULE, bad_call, lambda name: True) is None


def test_the_engine_keeps_a_test_expecting_a_deliberate_raise():
    source = "def area(w, h):\n    if w < 0:\n        raise ValueError('negative')\n    return w * h\n"
    reply = "area\n\ndef test_area():\n    assert area(2, 3) == 6\n\ndef test_negative():\n    assert area(-1, 2) == -2\n"
    report, _ = run_job("geo", source, [reply], prompts_per_iteration=1, ablate=("oracle",))
    assert {t["name"]: t["oracle"] for t in report["tests"]} == {"test_area": "model", "test_negative": "raises"}
    assert "with pytest.raises(ValueError):\n        area(-1, 2) == -2" in report["test_module"]
    assert "1 expecting the exception raised" in " ".join(report["trace"])
    ablated, _ = run_job("geo", source, [reply], prompts_per_iteration=1, ablate=("oracle", "raises"))
    assert [t["name"] for t in ablated["tests"]] == ["test_area"]
