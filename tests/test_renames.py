"""Misspelt attribute names corrected from the hints plugin's did-you-mean (fleet.trm.renames)."""

from __future__ import annotations

from fleet.trm.parse import Parsed, Unit
from fleet.trm.renames import Renames, misspelling, rewrite

DETAIL = ("AttributeError: type object 'datetime.date' has no attribute 'from_iso_string' "
          "[hint] did you mean `fromisoformat` or `fromisocalendar`?")


def test_the_closest_name_is_read_from_the_hint():
    assert misspelling(DETAIL) == ("from_iso_string", "fromisoformat")
    assert misspelling("AttributeError: 'Box' object has no attribute 'get' [hint] its public attributes: map") is None
    assert misspelling("AssertionError: assert 1 == 2") is None


def test_only_attribute_accesses_are_rewritten():
    source = "def test_d(from_iso_string):\n    assert date.from_iso_string('x') == from_iso_string"
    assert rewrite(source, {"from_iso_string": "fromisoformat"}) == (
        "def test_d(from_iso_string):\n    assert date.fromisoformat('x') == from_iso_string")
    assert rewrite("def test_e():\n    assert f() == 1", {"from_iso_string": "fromisoformat"}) is None
    assert rewrite("def broken(:", {"a": "b"}) is None


def test_a_name_the_target_uses_is_not_applied_to_later_replies():
    renames = Renames("class Lazy:\n    def get(self):\n        return 1\n")
    renames.learn([DETAIL, "AttributeError: 'Maybe' object has no attribute 'get' [hint] did you mean `get_or_else`?"])
    assert renames.learned == {"from_iso_string": "fromisoformat"}
    parsed = Parsed(support={"day": "@pytest.fixture\ndef day():\n    return date.from_iso_string('2020-01-01')"},
                    units=[Unit("test_a", "def test_a(day):\n    assert Lazy().get() == 1"),
                           Unit("test_b", "def test_b():\n    assert date.from_iso_string('2020-01-01')")])
    assert renames.apply(parsed) == 2
    assert "date.fromisoformat('2020-01-01')" in parsed.support["day"]
    assert parsed.units[0].source.endswith("Lazy().get() == 1")
    assert "date.fromisoformat" in parsed.units[1].source


def test_mend_marks_the_corrected_unit():
    unit = Unit("test_b", "def test_b():\n    assert date.from_iso_string('2020-01-01')", asserts=1)
    fixed = Renames.mend(unit, *misspelling(DETAIL))
    assert fixed is not None and fixed.origin == "renamed" and "fromisoformat" in fixed.source
    assert Renames.mend(unit, "to_iso", "isoformat") is None
