"""Sibling clones (fleet.trm.siblings): families, re-aimed tests, and the loop keeping them."""

from __future__ import annotations

import pytest

from fleet.trm.parse import Unit
from fleet.trm.siblings import Siblings, called, class_families, families, instances, retarget
from tests.scripted_job import run_job

SRC = """\
class Acc:
    def __init__(self, n):
        self.n = n

    def __eq__(self, other):
        return self.n == other.n

    def add(self, k):
        return Acc(self.n + k)

    def sub(self, k):
        if k < 0:
            raise ValueError("k must be positive")
        return Acc(self.n - k)

    def times(self, k):
        return self.n * k

    def scale(self, factor):
        return self.n * factor


def encode(data):
    return data[::-1]


def decode(data):
    return data.upper()


def other(x, y):
    return x
"""
T_ADD = Unit("test_add", "def test_add():\n    acc = Acc(2)\n    assert acc.add(3).n == 5, 'adds'\n")


def test_families_are_same_class_callables_with_the_same_parameters():
    fam = families(SRC)
    assert fam["Acc.add"] == ["Acc.sub", "Acc.times"]
    assert fam["decode"] == ["encode"]
    assert "Acc.scale" not in fam and "other" not in fam  # no sibling of that shape
    assert "Acc.__eq__" not in fam and "Acc.__init__" not in fam  # dunders are reached otherwise


def test_retarget_renames_the_calls_and_turns_their_assertions_into_oracle_sites():
    clone = retarget(T_ADD, "add", "sub")
    assert clone.name == "test_add__sub" and clone.origin == "clone"
    assert clone.source == "def test_add__sub():\n    acc = Acc(2)\n    assert acc.sub(3).n == None\n"
    both = Unit("test_e", "def test_e():\n    assert encode('ab') == 'ba'\n    assert not decode('x') == 'y'\n"
                          "    assert len('ab') == 2\n")
    source = retarget(both, "encode", "decode").source
    assert "assert decode('ab') == None" in source
    assert "assert (not decode('x') == 'y') == None" in source
    assert "assert len('ab') == 2" in source  # an assertion without the call is left alone
    assert called(source) == {"decode", "len"}


def test_one_clone_per_uncovered_sibling_from_the_shortest_caller_and_never_twice():
    siblings = Siblings.of(SRC)
    longer = Unit("test_add_more", "def test_add_more():\n    acc = Acc(1)\n    x = 1\n    assert acc.add(1).n == 2\n")
    clones = siblings.clones([longer, T_ADD], ["Acc.sub", "Acc.scale", "Acc.times", "decode"], limit=5)
    assert [c.name for c in clones] == ["test_add__sub", "test_add__times"]
    again = siblings.clones([longer, T_ADD], ["Acc.sub"], limit=5)
    assert [c.name for c in again] == ["test_add_more__sub"]
    assert siblings.clones([longer, T_ADD], ["Acc.sub"], limit=5) == []
    assert len(siblings.clones([longer, T_ADD], ["Acc.sub", "Acc.times"], limit=1)) == 1


@pytest.mark.parametrize("off", [{}, {"ablate": ("siblings",)}, {"max_clones": 0}])
def test_the_loop_keeps_clones_that_add_coverage_with_observed_values(off):
    reply = "def test_add():\n    acc = Acc(2)\n    assert acc.add(3).n == 5\n"
    report, _ = run_job("acc", SRC, [reply], max_prompts_per_iteration=1, prompts_per_iteration=1, **off)
    origins = {t["name"]: t["oracle"] for t in report["tests"]}
    if off:
        assert origins == {"test_add": "model"}
        assert report["iterations"][0]["clones"] == 0
        return
    # acc.times(3) is an int: the clone's ``.n`` raises, so it is not kept
    assert origins == {"test_add": "model", "test_add__sub": "clone"}
    assert "assert acc.sub(3).n == -1" in report["test_module"]
    assert report["iterations"][0]["clones"] == 2 and report["iterations"][0]["clones_kept"] == 1
    assert any("2 clone(s) of kept tests" in line for line in report["trace"])


KIN = """\
from typing import NamedTuple


class Cash(NamedTuple("Cash", [("ccy", str), ("qty", int)])):
    def add(self, other):
        return Cash(self.ccy, self.qty + other.qty)

    def neg(self):
        return Cash(self.ccy, -self.qty)


class Rate(NamedTuple("Rate", [("ccy", str), ("qty", int)])):
    def add(self, other):
        return Rate(self.ccy, self.qty + other.qty)

    def neg(self):
        return Rate(self.ccy, -self.qty)


class Other(NamedTuple("Other", [("name", str)])):
    def add(self, other):
        return self

    def neg(self):
        return self


class NoCash:
    def add(self, other):
        return other

    def neg(self):
        return self


class NoRate:
    def add(self, other):
        return other

    def neg(self):
        return self


NIL = NoCash()
NONE_RATE = NoRate()
"""


def test_class_families_are_classes_built_alike_that_share_methods_and_their_instances():
    kin = class_families(KIN)
    assert kin["Cash"] == ["Rate"] and kin["NoCash"] == ["NoRate"]
    assert "Other" not in kin  # other fields
    assert instances(KIN) == {"NoCash": ["NIL"], "NoRate": ["NONE_RATE"]}


def test_a_swap_renames_the_class_and_its_instance_and_turns_method_assertions_into_sites():
    siblings = Siblings.of(KIN)
    cash = Unit("test_cash", "def test_cash():\n    c = Cash('EUR', 1)\n    assert c.add(c) == Cash('EUR', 2)\n"
                             "    assert c.qty == 1\n    assert c.add(NIL) is NIL\n")
    clones = siblings.clones([cash], ["Rate.add", "Rate.neg", "NoRate.add"], limit=5)
    assert [c.name for c in clones] == ["test_cash__Rate", "test_cash__NoRate"]  # one swap per class
    assert clones[0].source == ("def test_cash__Rate():\n    c = Rate('EUR', 1)\n    assert c.add(c) == None\n"
                                "    assert c.qty == 1\n    assert c.add(NIL) == None\n")
    assert "c = Cash('EUR', 1)" in clones[1].source and "assert c.add(NONE_RATE) == None" in clones[1].source


def test_subclasses_built_by_an_inherited_constructor_are_kin_of_their_base_and_of_each_other():
    source = ("class Section:\n    def __init__(self, title, key):\n        self.title = title\n"
              "    def parse(self, text):\n        return [text]\n\n"
              "class Params(Section):\n    def item(self, k):\n        return k\n\n"
              "class Raises(Section):\n    def item(self, k):\n        return k\n\n"
              "class Loose:\n    def __init__(self, title, key):\n        pass\n")
    kin = class_families(source)
    assert kin["Section"] == ["Params", "Raises"] and kin["Params"] == ["Section", "Raises"]
    assert "Loose" not in kin  # built alike, but neither related nor sharing methods
