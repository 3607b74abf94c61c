"""The sandbox's hints plugin (fleet.hints_plugin): API facts appended to a failing test's error."""

from __future__ import annotations

import pytest

from fleet.sandbox import Sandbox

TARGET = '''\
import datetime


class Money:
    def __init__(self, amount, currency="EUR"):
        self.amount, self.currency = amount, currency

    @classmethod
    def of(cls, amount, currency):
        return cls(amount, currency)

    def doubled(self):
        return Money(self.amount * 2, self.currency)


class Ledger:
    pass


def today():
    return datetime.date.today()
'''

TESTS = '''\
import datetime
from money import Money


def test_kwarg():
    Money(value=3)


def test_missing():
    Money.of(3)


def test_attribute():
    Money(1).double()


def test_stdlib_attribute():
    datetime.date.from_isoformat("2020-01-01")


def test_name():
    Ledger()


def test_plain_assertion():
    assert Money(1).amount == 2


def test_unrelated_type_error():
    len(Money(1))
'''


@pytest.fixture(scope="module")
def messages() -> dict[str, str]:
    with Sandbox({"money.py": TARGET}, "money.py") as sandbox:
        result = sandbox.run(TESTS)
    return {name: outcome.message for name, outcome in result.outcomes.items()}


def test_unexpected_keyword_gets_the_constructor_signature(messages):
    assert "[hint] the signature is Money(amount, currency='EUR')" in messages["test_kwarg"]


def test_missing_argument_gets_the_classmethod_signature(messages):
    assert "[hint] the signature is Money.of(amount, currency)" in messages["test_missing"]


def test_misspelt_attribute_gets_the_close_names(messages):
    assert "[hint] did you mean `doubled`?" in messages["test_attribute"]
    assert "[hint] did you mean `fromisoformat`" in messages["test_stdlib_attribute"]


def test_undefined_name_gets_its_import(messages):
    assert "[hint] import it: from money import Ledger" in messages["test_name"]


def test_other_failures_are_left_as_they_were(messages):
    assert "[hint]" not in messages["test_plain_assertion"]
    assert "[hint]" not in messages["test_unrelated_type_error"]
    assert "has no len()" in messages["test_unrelated_type_error"]
