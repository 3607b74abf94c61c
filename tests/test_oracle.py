"""Oracle repair: expected values taken from the target's observed behaviour, in the real sandbox."""

from __future__ import annotations

import pytest

from fleet.analysis import analyse
from fleet.sandbox import Limits, Sandbox
from fleet.trm.oracle import make_probe, parse_observations, repair
from fleet.trm.parse import Unit
from fleet.trm.repair import Context
from fleet.trm.suite import Suite
from tests.scripted_job import run_job

SRC = "def area(w, h):\n    if w < 0:\n        raise ValueError('negative')\n    return w * h\n\n\nclass Box:\n    pass\n"


@pytest.fixture
def sandbox():
    with Sandbox({"geo.py": SRC}, "geo.py", Limits()) as sb:
        yield sb


def ctx() -> Context:
    return Context("geo", analyse(SRC, "geo"), frozenset({"geo"}))


def unit(source: str) -> Unit:
    name = source.split("(", 1)[0].removeprefix("def ")
    return Unit(name, source, asserts=source.count("assert") + source.count("raises"))


def test_wrong_expected_value_is_replaced_by_the_observed_one(sandbox):
    fixed = repair(sandbox, Suite(), ctx(), [unit("def test_a():\n    assert area(2, 3) == 5\n    assert 7 == area(1, 7)")])
    assert [u.source for u in fixed] == ["def test_a():\n    assert area(2, 3) == 6\n    assert 7 == area(1, 7)"]
    assert fixed[0].origin == "observed"


def test_raises_that_did_not_raise_becomes_an_equality(sandbox):
    fixed = repair(sandbox, Suite(), ctx(), [unit("def test_r():\n    with pytest.raises(ValueError):\n        area(2, 2)")])
    assert [u.source for u in fixed] == ["def test_r():\n    assert area(2, 2) == 4"]


def test_a_raises_that_did_not_raise_loses_the_checks_of_its_exception(sandbox):
    source = "def test_r():\n    with pytest.raises(ValueError) as e:\n        area(2, 2)\n    assert 'neg' in str(e.value)\n    assert area(1, 1) == 1"
    fixed = repair(sandbox, Suite(), ctx(), [unit(source)])
    assert [u.source for u in fixed] == ["def test_r():\n    assert area(2, 2) == 4\n    assert area(1, 1) == 1"]


def test_a_non_literal_value_is_asserted_by_its_repr(sandbox):
    fixed = repair(sandbox, Suite(), ctx(), [unit("def test_rng():\n    assert range(area(1, 2)) == [0, 1]")])
    assert [u.source for u in fixed] == ["def test_rng():\n    assert repr(range(area(1, 2))) == 'range(0, 2)'"]


def test_reprs_with_addresses_are_asserted_by_class_and_crashing_tests_are_not_repaired(sandbox):
    failed = [unit("def test_box():\n    assert Box() == 1"),  # repr is <geo.Box object …>: its class
              unit("def test_crash():\n    assert area(-1, 2) == 3")]  # raises before any observation
    fixed = repair(sandbox, Suite(), ctx(), failed)
    assert [u.source for u in fixed] == ["def test_box():\n    assert type(Box()).__name__ == 'Box'"]


def test_a_site_observed_with_different_values_is_not_repaired(sandbox):
    looped = unit("def test_loop():\n    for w in (1, 2):\n        assert area(w, 1) == 0")
    assert repair(sandbox, Suite(), ctx(), [looped]) == []


def test_sites_observed_before_the_probe_failed_are_repaired(sandbox):
    source = "def test_p():\n    assert area(2, 3) == 5\n    assert area(-1, 2) == 3\n    assert area(1, 1) == 2"
    fixed = repair(sandbox, Suite(), ctx(), [unit(source)])
    assert [u.source for u in fixed] == [  # the probe raised at the second site: the third is never reached
        "def test_p():\n    assert area(2, 3) == 6\n    assert area(-1, 2) == 3\n    assert area(1, 1) == 2"]


def test_units_without_repairable_sites_need_no_probe():
    assert make_probe(unit("def test_x():\n    assert area(1, 1) > 0")).probe is None


def test_observations_keep_agreeing_short_literals_and_address_free_reprs():
    text = ('["t:1", "6"]\n["t:2", "<geo.Box object at 0x1>"]\n["t:3", "1"]\n["t:3", "2"]\n["t:4", "' + "9" * 400
            + '"]\nnot json\n["t:5", "P(a=1)"]\n["t:6", "<function f at 0x7f3fd1c553a0>"]\n')
    seen = parse_observations(text)
    assert {k: (v.value.value, v.by_repr, v.by_type) for k, v in seen.items()} == {
        "t:1": (6, False, False), "t:2": ("Box", False, True), "t:5": ("P(a=1)", True, False)}


def test_a_default_object_repr_is_asserted_by_its_class_when_every_run_agrees_on_it():
    first, second = '["t:1", "<geo.Box object at 0x7f01>"]\n', '["t:1", "<geo.Box object at 0x7e99>"]\n'
    assert parse_observations(first, second)["t:1"].value.value == "Box"
    assert parse_observations(first, '["t:1", "<geo.Bag object at 0x7e99>"]\n') == {}


def test_engine_asserts_the_class_of_a_value_without_a_repr():
    source = "class Box:\n    pass\n\n\ndef make(n):\n    if n > 1:\n        return Box()\n    return n\n"
    reply = "def test_make():\n    assert make(2) == 5\n"
    report, _ = run_job("geo", source, [reply], max_prompts_per_iteration=1)
    assert {t["name"]: t["oracle"] for t in report["tests"]} == {"test_make": "observed"}
    assert "assert type(make(2)).__name__ == 'Box'" in report["test_module"]


def test_engine_keeps_the_repaired_test_and_marks_it():
    reply = "area\n\ndef test_area():\n    assert area(2, 3) == 5\n\ndef test_neg():\n    with pytest.raises(ValueError):\n        area(-1, 1)\n"
    report, _ = run_job("geo", SRC, [reply])
    assert {t["name"]: t["oracle"] for t in report["tests"]} == {"test_area": "observed", "test_neg": "model"}
    assert "assert area(2, 3) == 6" in report["test_module"]
    assert report["coverage_after"]["line"] == 1.0
    assert all(r["name"] != "test_area" for r in report["rejected"])


@pytest.mark.parametrize("ablate, ending", [
    ((), "\n    with pytest.raises(ValueError):\n        area(-1, 2) == 3\n"),
    (("raises",), "\n"),  # cut before the failing statement instead
])
def test_a_repaired_test_that_still_fails_is_mended_once_more(ablate, ending):
    reply = "def test_two():\n    assert area(2, 3) == 5\n    assert area(-1, 2) == 3\n"
    report, _ = run_job("geo", SRC, [reply], max_prompts_per_iteration=1, ablate=ablate)
    assert {t["name"]: t["oracle"] for t in report["tests"]} == {"test_two": "observed"}
    assert report["test_module"].endswith("def test_two():\n    assert area(2, 3) == 6" + ending)
    assert all(r["name"] != "test_two" for r in report["rejected"])


def test_an_expected_value_held_in_a_variable_is_replaced_in_the_assert(sandbox):
    source = "def test_v():\n    expected = 5\n    assert area(2, 3) == expected"
    fixed = repair(sandbox, Suite(), ctx(), [unit(source)])
    assert [u.source for u in fixed] == ["def test_v():\n    expected = 5\n    assert area(2, 3) == 6"]


def test_a_variable_assigned_twice_is_not_taken_for_a_fixed_expectation():
    source = "def test_w():\n    expected = 5\n    expected = expected + 1\n    assert area(2, 3) == expected"
    assert make_probe(unit(source)).probe is None


def test_an_expected_value_worked_out_as_arithmetic_is_replaced(sandbox):
    fixed = repair(sandbox, Suite(), ctx(), [unit("def test_k():\n    size = (16 // 16 + 7) * 16\n    assert area(2, 3) == size + 1")])
    assert fixed == []  # `size + 1` names a variable: not a constant the model wrote down
    fixed = repair(sandbox, Suite(), ctx(), [unit("def test_k():\n    assert area(2, 3) == (16 // 16 + 7) * 16")])
    assert [u.source for u in fixed] == ["def test_k():\n    assert area(2, 3) == 6"]


def test_a_repr_that_holds_a_string_hash_is_asserted_with_the_hash_masked():
    """The sandbox gives every run its own hash seed, as where the tests are used later; the probe
    runs twice, so a repr holding ``hash(str)`` is seen to differ in that number only and is
    asserted with it masked. The test then passes every rerun and is kept."""
    source = ("class Tag:\n    def __init__(self, name):\n        self.name, self.h = name, hash(name)\n\n"
              "    def __repr__(self):\n        return f'Tag({self.name!r}, {self.h})'\n\n\n"
              "def tag(name):\n    return Tag(name)\n")
    reply = "def test_tag():\n    assert tag('a') == 5\n"
    report, _ = run_job("tags", source, [reply], reruns=3, max_prompts_per_iteration=1)
    assert {t["name"]: t["oracle"] for t in report["tests"]} == {"test_tag": "observed"}
    assert "assert re.fullmatch(\"Tag\\\\('a',\\\\ -?\\\\d+\\\\)\", repr(tag('a')))" in report["test_module"]
    assert "import re" in report["test_module"] and report["final_runs_passed"] == 3


@pytest.mark.parametrize("runs, expected", [
    (["Tag('a', 12)", "Tag('a', -7)"], r"Tag\('a',\ -?\d+\)"),
    (["P(x=1, h=5)", "P(x=1, h=9)"], r"P\(x=1,\ h=-?\d+\)"),  # the number that agrees stays
    (["Tag('a', 12)", "Tag('b', 7)"], None),  # other text: not a masked hash
    (["12", "13"], None),  # nothing but the number would be checked
])
def test_reprs_differing_only_in_numbers_are_masked(runs, expected):
    from fleet.trm.oracle import masked
    assert masked(runs) == expected


def test_sites_are_kept_by_agreement_across_runs_or_masked():
    first = '["t:1", "6"]\n["t:2", "H(3)"]\n["t:3", "1"]\n["t:4", "<a at 0x7f01>"]\n'
    second = '["t:1", "6"]\n["t:2", "H(8)"]\n["t:3", "2"]\n["t:4", "<a at 0x7f02>"]\n["t:5", "5"]\n'
    seen = parse_observations(first, second)
    assert {k: (v.value.value, v.pattern) for k, v in seen.items()} == {"t:1": (6, False), "t:2": (r"H\(-?\d+\)", True)}
