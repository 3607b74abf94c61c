"""Retyped tests (fleet.trm.retype): a test failing on a TypeError about its inputs' kind, converted."""

from __future__ import annotations

import pytest

from fleet.trm.parse import Unit
from fleet.trm.retype import Retypes, named_kinds, retyped
from fleet.trm.variants import callables
from tests.scripted_job import run_job

SRC = "def checksum(data):\n    out = data[:]\n    out += [sum(data) % 256]\n    return out\n"
TARGETS = callables(SRC, frozenset({"checksum"}))


@pytest.mark.parametrize("detail, kinds", [
    ("TypeError: can't concat list to bytes [where] raised in `rotate` with data=b'y123'", ["list", "bytes"]),
    ("TypeError: 'tuple' object does not support item assignment", ["tuple"]),
    ("TypeError: unhashable type: 'list'\nmore about bytes", ["list"]),
    ("TypeError: object of type 'NoneType' has no len() [where] with x=[1] and a list", []),
    ("ValueError: bytes must be in range(0, 256)", []),
    ("", []),
])
def test_the_kinds_a_type_error_names(detail, kinds):
    assert named_kinds(detail) == kinds


def test_a_retyped_test_converts_every_input_literal_of_the_kind_and_observes_its_assertions():
    unit = Unit("test_sum", "def test_sum():\n    key = b'ab'\n    assert checksum(key) == b'ab\\xc3'\n"
                            "    assert checksum((1, 2)) == (1, 2, 3)\n    assert len(b'xy') == 2\n")
    made = retyped(unit, "bytes", TARGETS, 3)
    assert made.name == "test_sum__k3" and made.origin == "retyped"
    # b'xy' is no input of the target's code and stays; the tuple is another kind; every check
    # is observed anew
    assert made.source == ("def test_sum__k3():\n    key = [97, 98]\n    assert checksum(key) == None\n"
                           "    assert checksum((1, 2)) == None\n    assert len(b'xy') == None\n")
    assert "checksum([1, 2])" in retyped(unit, "tuple", TARGETS, 4).source
    assert retyped(unit, "list", TARGETS, 5) is None  # no list among its inputs


def test_nested_displays_are_converted_inside_out():
    unit = Unit("test_n", "def test_n():\n    assert checksum(((1, 2), (3,))) == 1\n")
    assert "checksum([[1, 2], [3]])" in retyped(unit, "tuple", TARGETS, 1).source


def test_each_test_and_kind_is_retyped_once_within_the_limit():
    a = Unit("test_a", "def test_a():\n    assert checksum(b'a') == 1\n")
    b = Unit("test_b", "def test_b():\n    assert checksum((1,)) == [1, 1]\n")
    error = "TypeError: can only concatenate tuple (not \"list\") to bytes"
    retypes = Retypes(TARGETS)
    first = retypes.retype([(a, error), (b, error)], limit=2)
    assert [u.name for u in first] == ["test_a__k1", "test_b__k2"]  # a: bytes (no tuple); b: tuple
    assert retypes.retype([(a, error), (b, error)], limit=5) == []


@pytest.mark.parametrize("off", [{}, {"ablate": ("retype",)}, {"max_variants": 0}])
def test_the_loop_keeps_a_retyped_test_with_its_observed_value(off):
    reply = "def test_checksum():\n    assert checksum(b'ab') == b'ab\\xc3'\n"
    settings = {"max_variants": 12, **off}
    report, _ = run_job("c", SRC, [reply], prompts_per_iteration=1, max_prompts_per_iteration=1, **settings)
    attempt = report["iterations"][0]["attempts"][0]
    if off:
        assert report["tests"] == [] and attempt["retyped"] == 0
        return
    assert [(t["name"], t["oracle"]) for t in report["tests"]] == [("test_checksum__k1", "retyped")]
    assert "assert checksum([97, 98]) == [97, 98, 195]" in report["test_module"]
    assert attempt["retyped"] == 1 and attempt["retyped_kept"] == 1
