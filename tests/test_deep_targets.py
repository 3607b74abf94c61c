"""Targets that are legal Python but extreme: deep nesting, separators inside lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.analysis import analyse, source_lines
from fleet.errors import BadInput
from fleet.mutation import mutants
from fleet.sandbox import static_measure
from tests.scripted_job import run_job


def elif_chain(branches: int) -> str:
    """``def f(x)`` with an if/elif chain of ``branches`` tests (each ``elif`` nests one level in the AST)."""
    return "def f(x):\n    if x == 0:\n        return 0\n" + "".join(
        f"    elif x == {i}:\n        return {i}\n" for i in range(1, branches))


def test_a_long_elif_chain_still_gets_its_mutants():
    made, total = mutants(elif_chain(300), 30)
    assert total > 300 and len(made) == 30
    assert all("def f(x):" in m.source for m in made)


def test_a_sum_too_deep_to_unparse_is_skipped_instead_of_failing_the_job():
    source = "def f(x):\n    return " + " + ".join(["x"] * 500) + "\n"
    made, total = mutants(source, 5)
    assert total == 500  # the return and 499 additions; only the return's mutant unparses
    assert [m.description for m in made] == ["return x → return None"]


def test_a_target_too_deep_for_coverage_is_bad_input_that_says_what_to_do(tmp_path: Path):
    source = elif_chain(1000)
    analyse(source, "deep")  # the AST itself is fine
    with pytest.raises(BadInput, match="split the deepest function"):
        static_measure(source, tmp_path / "deep.py")


def test_source_lines_are_numbered_as_python_numbers_them():
    source = "a = 1\n# page\x0cbreak\r\nb = 2\rc = '\x1c'\n"
    assert source_lines(source) == ["a = 1", "# page\x0cbreak", "b = 2", "c = '\x1c'"]
    assert analyse(source, "m").lines == 4
    assert source_lines("") == [] and source_lines("x") == ["x"]


def test_the_prompt_quotes_the_uncovered_lines_after_a_form_feed():
    source = "# part one\x0c\n\n\ndef sign(x):\n    if x < 0:\n        return 'negative'\n    return 'positive'\n"
    idle = "def test_nothing():\n    assert sign is not None\n"
    _, backend = run_job("paged", source, [idle], prompts_per_iteration=2, max_prompts_per_iteration=2)
    user = backend.prompts[1][1].content
    quoted = user.split("write tests that execute them:\n", 1)[1].splitlines()[:3]
    assert [line.strip() for line in quoted] == ["if x < 0:", "return 'negative'", "return 'positive'"]
