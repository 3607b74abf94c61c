"""Repeated tests (fleet.trm.repeats): fingerprints, outcomes carried, sampling heat."""

from __future__ import annotations

from fleet.trm.parse import Rejection, Unit
from fleet.trm.repeats import Repeats, fingerprint

BASE = "def test_a():\n    assert f(1) == 2\n"


def no_support(_unit: Unit) -> list[str]:
    return []


def test_fingerprint_ignores_names_comments_docstrings_and_assert_messages():
    same = 'def test_b():\n    """Checks f."""\n    # one\n    assert f(1) == 2, "f adds one"\n'
    assert fingerprint(same, []) == fingerprint(BASE, [])


def test_fingerprint_differs_by_code_and_by_support():
    assert fingerprint("def test_a():\n    assert f(1) == 3\n", []) != fingerprint(BASE, [])
    helper = "class H:\n    x = 1\n"
    assert fingerprint(BASE, [helper]) != fingerprint(BASE, [])
    assert fingerprint(BASE, [helper]) != fingerprint(BASE, [helper.replace("1", "2")])


def test_fingerprint_of_unparsable_text_is_the_text():
    assert fingerprint("def test_a(:\n", []) == "def test_a(:\n"


def test_split_rejects_repeats_and_carries_the_earlier_failure():
    repeats = Repeats()
    fresh, repeated = repeats.split([Unit("test_a", BASE), Unit("test_b", BASE.replace("2", "5"))], no_support)
    assert [u.name for u in fresh] == ["test_a", "test_b"] and repeated == []
    repeats.record([Rejection("test_b", "assertion", "assert 2 == 5", "it ran line 2 but never line 3")])
    fresh, repeated = repeats.split([Unit("test_a_2", BASE), Unit("test_c", BASE.replace("2", "5"))], no_support)
    assert fresh == []
    assert repeated[0] == Rejection("test_a_2", "repeat", "the same test as an earlier one")
    assert repeated[1].detail == "the same test as an earlier one, which failed: assert 2 == 5"
    assert repeated[1].path == "it ran line 2 but never line 3"
    assert [Repeats.failed(r) for r in repeated] == [False, True]


def test_a_repeat_within_one_reply_is_a_repeat():
    fresh, repeated = Repeats().split([Unit("test_a", BASE), Unit("test_a_2", BASE)], no_support)
    assert [u.name for u in fresh] == ["test_a"]
    assert [r.name for r in repeated] == ["test_a_2"]


def test_streak_heats_until_capped_and_resets_on_a_mostly_new_reply():
    repeats = Repeats(step=0.25, max_temperature=0.9)
    repeats.split([Unit("test_a", BASE)], no_support)
    assert repeats.temperature(0.3) == 0.3
    repeats.split([], no_support)  # a reply without tests counts as a repeat
    assert repeats.temperature(0.3) == 0.55
    repeats.split([Unit("test_a_2", BASE)], no_support)
    repeats.split([Unit("test_a_3", BASE)], no_support)
    assert repeats.temperature(0.3) == 0.9
    assert repeats.temperature(1.2) == 1.2  # never below the strategy's own temperature
    repeats.split([Unit("test_d", "def test_d():\n    assert g() is None\n")], no_support)
    assert repeats.temperature(0.3) == 0.3


def test_no_new_coverage_is_not_a_failure_and_a_module_that_did_not_load_is_forgotten():
    repeats = Repeats()
    other = "def test_e():\n    assert f(0) == 1\n"
    repeats.split([Unit("test_a", BASE), Unit("test_e", other)], no_support)
    repeats.record([Rejection("test_a", "no-new-coverage", "covers nothing the kept tests miss"),
                    Rejection("test_e", "exception", "the test module failed to load: SyntaxError")])
    fresh, repeated = repeats.split([Unit("test_a_2", BASE), Unit("test_e_2", other)], no_support)
    assert [u.name for u in fresh] == ["test_e_2"]
    assert repeated == [Rejection("test_a_2", "repeat", "the same test as an earlier one")]
