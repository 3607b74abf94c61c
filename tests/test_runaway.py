"""Runaway replies (fleet.trm.runaway): the halt rule, and the engine stopping a reply there."""

from __future__ import annotations

import pytest

from fleet.trm.runaway import before_halt, repeating
from tests.scripted_job import run_job

A = "def test_a():\n    x = 1\n    assert f(x) == 2\n\n"
A_AGAIN = "def test_a_3():\n    # once more\n    x = 1\n    assert f(x) == 2\n\n"
B = "def test_b():\n    assert f(0) == 1\n"


def test_it_halts_when_the_block_after_a_repeated_one_begins():
    assert not repeating(A + "def test_b():\n")  # one block: nothing to repeat
    assert not repeating(A + A_AGAIN)  # the repeat may still go on differently
    assert repeating(A + A_AGAIN + "def test_b():\n")
    assert repeating(A + A_AGAIN + "def test_b():\n    ")  # a streamed piece: line end + indent
    assert not repeating(A + A_AGAIN + "def test_b")  # that line is not complete yet
    assert not repeating(A + B + "\n\ndef test_c():\n")  # different bodies


def test_the_reply_is_kept_up_to_the_line_it_halted_at():
    assert before_halt(A + A_AGAIN + "def test_b():\n    ") == A + A_AGAIN
    assert before_halt(A + A_AGAIN + "def test_b():\n") == A + A_AGAIN


def test_only_top_level_blocks_count():
    nested = "class TestX:\n    def test_a(self):\n        assert f(1) == 2\n\n    def test_b(self):\n        assert f(1) == 2\n"
    assert not repeating(nested + "    def test_c(self):\n")


@pytest.mark.parametrize("ablate", [(), ("runaway",)])
def test_the_engine_stops_a_runaway_reply_at_the_repeat(ablate):
    source = "def f(x):\n    if x:\n        return x + 1\n    return 1\n"
    report, _ = run_job("m", source, [A + A_AGAIN + B], prompts_per_iteration=1, max_prompts_per_iteration=1,
                        ablate=ablate)
    names = [t["name"] for t in report["tests"]]
    if ablate:
        assert names == ["test_a", "test_b"]
        assert "(stop)" in report["trace"][0]
    else:
        assert names == ["test_a"]  # test_b was never generated
        assert "(halted at a repeat)" in report["trace"][0]
        assert [r["reason"] for r in report["rejected"]] == ["repeat"]
