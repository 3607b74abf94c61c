"""Where a test's path left the uncovered code (fleet.trm.divergence), and the loop feeding it back."""

from __future__ import annotations

from fleet.trm.divergence import Divergence, divergence
from tests.test_engine_scripted import T_POS, reply, run_engine

#                1              2                    3                4              5
SOURCE = ["def f(x):", "    if x > 0:", "        y = 1", "        return y", "    return 0"]
STATEMENTS = {2, 3, 4, 5}


def test_the_arc_not_taken_from_a_line_the_test_ran_is_its_divergence():
    found = divergence(ran={2, 5}, took={(2, 5)}, missing_arcs={(2, 3)}, statements=STATEMENTS,
                       missing_lines={3, 4})
    assert found == Divergence(line=2, towards=3, behind=2)
    assert found.describe(SOURCE) == ("it ran line 2 `if x > 0:` but never line 3 `y = 1` "
                                      "(2 uncovered lines start there)")


def test_no_divergence_when_the_test_never_reached_the_branch_or_took_it():
    assert divergence(ran={5}, took=set(), missing_arcs={(2, 3)}, statements=STATEMENTS, missing_lines={3, 4}) is None
    assert divergence(ran={2, 3}, took={(2, 3)}, missing_arcs={(2, 3)}, statements=STATEMENTS,
                      missing_lines={3, 4}) is None


def test_an_exit_arc_is_no_divergence():
    assert divergence(ran={2}, took=set(), missing_arcs={(2, -1)}, statements=STATEMENTS, missing_lines=set()) is None


def test_the_divergence_with_most_uncovered_lines_behind_it_wins_then_the_earliest():
    statements = set(range(1, 21))
    missing = {4, 10, 11, 12}
    arcs = {(3, 4), (9, 10), (15, 4)}
    found = divergence(ran={3, 9, 15}, took=set(), missing_arcs=arcs, statements=statements, missing_lines=missing)
    assert (found.line, found.towards, found.behind) == (9, 10, 3)
    tie = divergence(ran={3, 15}, took=set(), missing_arcs=arcs, statements=statements, missing_lines=missing)
    assert (tie.line, tie.behind) == (3, 1)
    assert "uncovered lines start there" not in tie.describe([""] * 20)


def test_a_long_source_line_is_shortened_in_the_description():
    text = Divergence(1, 2, 1).describe(["x" * 200, "y"])
    assert "…`" in text and len(text) < 120


T_BIG_WRONG = "def test_sign_big():\n    assert sign(9) == 2\n"
T_POS_AGAIN = "def test_sign_three():\n    assert sign(3) == 1\n"
NOTE = "it ran line 6 `if x > 0:` but never line 8 `if x < 0:` (3 uncovered lines start there)"


def test_failed_and_idle_tests_are_fed_back_with_where_their_path_left_the_gap():
    report, backend = run_engine([reply(T_POS), reply(T_BIG_WRONG, T_POS_AGAIN), reply(T_POS)],
                                 max_iterations=3, patience=5)
    third = backend.prompts[2][-1].content
    assert "test_sign_big: assert 1 == 2" in third
    assert third.count(NOTE) == 2  # the failure and the test that covered nothing new
    assert "test_sign_three: covers nothing the kept tests miss; " + NOTE in third
    paths = {r["name"]: r.get("path") for r in report["rejected"]}
    assert paths["test_sign_big"] == paths["test_sign_three"] == NOTE


def test_the_path_feedback_ablation_feeds_back_the_error_only():
    report, backend = run_engine([reply(T_POS), reply(T_BIG_WRONG, T_POS_AGAIN), reply(T_POS)],
                                 max_iterations=3, patience=5, ablate=("oracle", "path-feedback"))
    third = backend.prompts[2][-1].content
    assert "test_sign_big: assert 1 == 2" in third
    assert "it ran line" not in third and "test_sign_three" not in third
    assert any(r.get("path") == NOTE for r in report["rejected"])  # still measured and reported
