"""Input variants (fleet.trm.variants): a kept test with one input literal changed, judged by the loop."""

from __future__ import annotations

import ast

import pytest

from fleet.analysis import Segment
from fleet.trm.parse import Unit
from fleet.trm.variants import (MAX_TOKEN_EDITS, Variants, callables, input_literals, replacements, sites, token_edits,
                                 variant)
from tests.scripted_job import run_job


def texts(node_source: str) -> list[str]:
    return [ast.unparse(n) for n in replacements(ast.parse(node_source, mode="eval").body)]


@pytest.mark.parametrize("literal, expected", [
    ("5", ["0", "None", "'5'", "6", "4", "-5"]),
    ("0", ["None", "'0'", "1", "-1"]),
    ("True", ["False", "None"]),
    ("2.5", ["0.0", "None", "'2.5'", "-2.5", "1.25"]),
    ("'ab'", ["''", "None", "['ab']", "'a'", "'abab'"]),
    ("''", ["None", "['']"]),  # the other replacements of '' are '' again
    ("[1, 2]", ["[]", "None", "''", "[1]"]),
    ("(1,)", ["()", "None", "''"]),
    ("[]", ["None", "''"]),
    ("{'a': 1, 'b': 2}", ["{}", "None", "''", "{'a': 1}"]),
    ("{1, 2}", ["set()", "None", "''", "{1}"]),
    ("None", []),
    ("b'x'", []),
])
def test_replacements_of_a_literal(literal, expected):
    assert texts(literal) == expected


SRC = "class P:\n    def parse(self, text, strict=False):\n        return text\n\n\ndef load(n):\n    return n\n"
TARGETS = callables(SRC, frozenset({"P", "load"}))


def test_input_literals_are_call_arguments_and_values_passed_by_name():
    test = ("def test_p():\n    text = 'a: b'\n    other = 'unused'\n    p = P()\n"
            "    assert p.parse(text, strict=True) == 'a: b'\n    assert len([1, 2]) == 2\n    assert load(3) == 3\n")
    found = [ast.unparse(n) for n in input_literals(ast.parse(test), TARGETS)]
    assert found == ["'a: b'", "True", "3"]  # not 'unused' (never passed), not [1, 2] (len is not the target's)


def test_input_literals_include_the_items_of_displays_and_the_arguments_of_calls_building_inputs():
    test = ("def test_p():\n    data = OrderedDict([('a', 1)])\n    assert load(data) == data\n"
            "    assert load({'k': [2]}) == {'k': [2]}\n    assert load(load(4)) == 4\n")
    found = [ast.unparse(n) for n in input_literals(ast.parse(test), TARGETS)]
    # OrderedDict(...) is no literal but builds the input; load(4) is itself a call of the target
    assert found == ["[('a', 1)]", "('a', 1)", "'a'", "1", "{'k': [2]}", "'k'", "[2]", "2", "4"]


def test_a_variant_changes_one_literal_and_makes_its_assertions_oracle_sites():
    unit = Unit("test_p", "def test_p():\n    text = 'a: b'\n    assert P().parse(text) == 'a: b'\n    assert load(3) > 0\n")
    made = variant(unit, TARGETS, index=0, choice=0, number=7)
    assert made.name == "test_p__v7" and made.origin == "variant"
    assert made.source == ("def test_p__v7():\n    text = ''\n    assert P().parse(text) == None\n"
                           "    assert load(3) == None\n")  # one-operator comparisons: the non-constant side
    assert variant(unit, TARGETS, index=4, choice=0, number=8) is None  # 2 literals, 2 calls
    assert variant(unit, TARGETS, index=1, choice=9, number=8) is None


def test_variants_take_tests_of_uncovered_segments_in_turn_never_twice_nor_too_far_from_the_model():
    a = Unit("test_a", "def test_a():\n    assert load(3) == 3\n")
    b = Unit("test_b", "def test_b():\n    assert P().parse('x') == 'x'\n")
    c = Unit("test_c", "def test_c():\n    assert 1 == 1\n")  # calls nothing of the target
    v = Unit("test_a__v1__v2", "def test_a__v1__v2():\n    assert load(0) == 0\n", origin="variant")  # 2 changes
    parse = Segment("P.parse", 2, 3, "parse(self, text)", 1, is_method=True)
    load = Segment("load", 6, 7, "load(n)", 1)
    variants = Variants.of(SRC, frozenset({"P", "load"}))
    first = variants.variants([a, b, c, v], [parse, load], limit=3)
    assert [u.source.split("(")[0] for u in first] == ["def test_b__v1", "def test_a__v2", "def test_b__v3"]
    assert "parse('')" in first[0].source and "load(0)" in first[1].source
    assert "parse(P().parse('x'))" in first[2].source  # each site's first replacement, then the next
    rest = variants.variants([a, b, c, v], [parse, load], limit=10)
    assert [u.source.split("(")[0] for u in rest] == [f"def test_{t}__v{n}" for t, n in zip("bababaaaa", range(4, 13))]
    assert [u.source.split("\n")[1].strip() for u in rest[:2]] == ["assert P().parse(None) == None",
                                                                   "assert load(load(3)) == None"]
    assert variants.variants([a, b, c, v], [parse, load], limit=10) == []
    seed = Unit("test_a__v2", "def test_a__v2():\n    assert load(0) == 0\n", origin="variant")
    assert [u.name for u in variants.variants([seed], [load], limit=1)] == ["test_a__v2__v13"]


TARGET = "def words(text):\n    if not text:\n        return []\n    return text.split()\n"


@pytest.mark.parametrize("off", [{}, {"ablate": ("variants",)}, {"max_variants": 0}])
def test_the_loop_keeps_a_variant_that_adds_coverage_with_its_observed_value(off):
    reply = "def test_words():\n    assert words('a b') == ['a', 'b']\n"
    settings = {"max_variants": 12, **off}
    report, _ = run_job("w", TARGET, [reply], prompts_per_iteration=1, max_prompts_per_iteration=1, **settings)
    origins = {t["name"]: t["oracle"] for t in report["tests"]}
    attempt = report["iterations"][0]["attempts"][0]
    if off:
        assert origins == {"test_words": "model"} and attempt["variants"] == 0
        return
    # '' reaches ``return []``; None, 'a' and 'a ba b' cover nothing more, ['a b'] and
    # words(words('a b')) raise an AttributeError the target does not mean to raise: none is kept
    assert origins == {"test_words": "model", "test_words__v1": "variant"}
    assert "assert words('') == []" in report["test_module"]
    assert attempt["variants"] == 8 and attempt["variants_kept"] == 1
    assert report["coverage_after"]["branch"] == 1.0


GUARDED = ("def words(text):\n    if text is None:\n        raise TypeError('text must be a str')\n"
           "    return text.split()\n")


def test_the_loop_keeps_a_wrong_kind_variant_expecting_the_error_the_target_raises_on_purpose():
    reply = "def test_words():\n    assert words('a b') == ['a', 'b']\n"
    report, _ = run_job("w", GUARDED, [reply], prompts_per_iteration=1, max_prompts_per_iteration=1,
                        max_variants=12)
    kept = {t["name"]: t["oracle"] for t in report["tests"]}
    assert list(kept.values()) == ["model", "variant"]
    assert "with pytest.raises(TypeError" in report["test_module"] and "words(None)" in report["test_module"]
    assert report["coverage_after"]["line"] == 1.0


def test_token_edits_delete_each_punctuation_run_and_double_each_word():
    assert token_edits(":returns: x.") == ["returns: x.", ":returns returns: x.", ":returns x.",
                                           ":returns: x x.", ":returns: x"]
    assert token_edits("word") == [] and token_edits("") == []
    assert len(token_edits(" ".join("w" * 20))) == MAX_TOKEN_EDITS
    assert texts("'a b'")[-2:] == ["'a a b'", "'a b b'"]  # after the kind's other values


def test_a_token_edit_reaches_the_branch_a_parser_takes_without_its_marker():
    target = ("def fields(text):\n    if text.startswith(':'):\n        return text[1:].split(':')\n"
              "    return None\n")
    reply = "def test_fields():\n    assert fields(':a:b') == ['a', 'b']\n"
    report, _ = run_job("f", target, [reply], prompts_per_iteration=1, max_prompts_per_iteration=1, max_variants=12)
    kept = [t["oracle"] for t in report["tests"]]
    assert kept == ["model", "variant"] and report["coverage_after"]["line"] == 1.0


def test_a_calls_output_is_fed_back_as_its_first_argument_once_per_distinct_call():
    test = ("def test_p():\n    r = load(3)\n    assert load(3) == r\n"
            "    assert P().parse('x', strict=True) == 'x'\n")
    places = [(ast.unparse(node), [ast.unparse(o) for o in options]) for node, options in sites(ast.parse(test), TARGETS)]
    literals = [ast.unparse(n) for n in input_literals(ast.parse(test), TARGETS)]
    assert [node for node, _ in places[:len(literals)]] == literals  # the literals first
    assert places[len(literals):] == [("3", ["load(3)"]), ("'x'", ["P().parse('x', strict=True)"])]
    made = variant(Unit("test_p", test), TARGETS, index=len(literals), choice=0, number=1)
    assert "r = load(load(3))" in made.source and made.source.count("load(load(3))") == 1


BOXES = ("class Box:\n    def __init__(self, value):\n        self.value = value\n\n\n"
         "def box(value):\n    if isinstance(value, Box):\n        return value\n    return Box(value)\n")


def test_the_loop_keeps_a_variant_that_gives_the_target_its_own_output():
    reply = "def test_box():\n    assert box(1).value == 1\n"
    report, _ = run_job("b", BOXES, [reply], prompts_per_iteration=1, max_prompts_per_iteration=1, max_variants=12)
    kept = {t["name"]: t["oracle"] for t in report["tests"]}
    assert list(kept.values()) == ["model", "variant"]
    assert "box(box(1)).value == 1" in report["test_module"]
    assert report["coverage_after"]["line"] == 1.0 and report["coverage_after"]["branch"] == 1.0


def test_an_attribute_of_an_object_of_the_tests_own_class_is_read_through_the_class():
    test = ("def test_c():\n    class C:\n        y = 1\n    c = C()\n    p = P()\n"
            "    assert c.y == 1 and c.y > 0 and c.f() is None and p.parse('x') == 'x'\n")
    places = sites(ast.parse(test), TARGETS)
    reads = [(ast.unparse(node), [ast.unparse(o) for o in options]) for node, options in places
             if isinstance(node, ast.Attribute)]
    assert reads == [("c.y", ["type(c).y"])]  # once; not c.f (called), not p.parse (P is the target's)
    made = variant(Unit("test_c", test), TARGETS, index=len(places) - 1, choice=0, number=1)
    assert "(type(c).y == 1 and c.y > 0 and" in made.source  # the first read; the assertion an oracle site


LAZY = ("class lazy:\n    def __init__(self, func):\n        self.func = func\n\n"
        "    def __get__(self, obj, cls):\n        if obj is None:\n            return self\n"
        "        return self.func(obj)\n")


def test_the_loop_keeps_a_class_level_read_of_the_targets_descriptor_asserted_by_its_class():
    reply = ("def test_lazy():\n    class C:\n        @lazy\n        def y(self):\n            return 6\n\n"
             "    c = C()\n    assert c.y == 6\n")
    report, _ = run_job("z", LAZY, [reply], prompts_per_iteration=1, max_prompts_per_iteration=1, max_variants=12)
    assert [t["oracle"] for t in report["tests"]] == ["model", "variant"]
    assert "assert type(type(c).y).__name__ == 'lazy'" in report["test_module"]
    assert report["coverage_after"]["line"] == 1.0



def test_the_loop_reads_through_the_class_when_the_tests_class_is_support_code():
    reply = ("class C:\n    @lazy\n    def y(self):\n        return 6\n\n\n"
             "def test_lazy():\n    c = C()\n    assert c.y == 6\n")
    report, _ = run_job("z", LAZY, [reply], prompts_per_iteration=1, max_prompts_per_iteration=1, max_variants=12)
    assert [t["oracle"] for t in report["tests"]] == ["model", "variant"]
    assert report["coverage_after"]["line"] == 1.0
