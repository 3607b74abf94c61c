"""The sandbox's hints plugin (fleet.hints_plugin): API facts appended to a failing test's error."""

from __future__ import annotations

import pytest

from fleet.sandbox import Sandbox

TARGET = '''\
import datetime
import enum


class Kind(enum.Enum):
    CASH = 1
    CARD = 2


def pay(amount, kind: "Kind"):
    return amount


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


def total(pairs):
    return sum(amount for amount, _ in pairs)


class Deferred:
    def __init__(self, fn):
        self.fn = fn

    def get(self, *args):
        return self.fn(*args)
'''

TESTS = '''\
import datetime
from money import Money


def test_kwarg():
    Money(value=3)


def test_missing():
    Money.of(3)


def test_enum_parameter():
    from money import pay
    pay(3)


def test_attribute():
    Money(1).double()


def test_stdlib_attribute():
    datetime.date.from_isoformat("2020-01-01")


def test_stdlib_snake_case():
    datetime.date.from_iso_string("2020-01-01")


def test_name():
    Ledger()


def test_plain_assertion():
    assert Money(1).amount == 2


def test_unrelated_type_error():
    len(Money(1))


def test_bad_input():
    from money import total
    assert total([1, 2]) == 3


def test_identity():
    assert Money(1) == Money(2)


def test_callback_called_by_the_code():
    from money import Deferred
    assert Deferred(lambda x: x + 1).get() == 2


def test_no_such_fixture(money_one):
    assert money_one.amount == 1
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


def test_an_enum_parameter_lists_its_members(messages):
    assert "the signature is pay(amount, kind: 'Kind'); kind is one of Kind.CASH, Kind.CARD" in messages["test_enum_parameter"]


def test_misspelt_attribute_gets_the_close_names(messages):
    assert "[hint] did you mean `doubled`?" in messages["test_attribute"]
    assert "[hint] did you mean `fromisoformat`" in messages["test_stdlib_attribute"]
    assert "[hint] did you mean `fromisoformat`" in messages["test_stdlib_snake_case"]


def test_a_parameter_that_is_no_fixture_says_what_to_do(messages):
    message = messages["test_no_such_fixture"]
    assert "fixture 'money_one' not found [hint] a test's parameters must be fixtures" in message
    assert "available fixtures" not in message


def test_close_names_ignore_underscores_and_case():
    from fleet.hints_plugin import close_names

    names = ["fromisoformat", "fromordinal", "fromtimestamp", "isoformat", "today"]
    assert close_names("from_iso_string", names)[0] == "fromisoformat"
    assert close_names("To_Day", names) == ["today"]
    assert close_names("zzz", names) == []


def test_undefined_name_gets_its_import(messages):
    assert "[hint] import it: from money import Ledger" in messages["test_name"]


def test_other_failures_are_left_as_they_were(messages):
    assert "[hint]" not in messages["test_plain_assertion"]
    assert "has no len()" in messages["test_unrelated_type_error"]
    assert "[hint]" not in messages["test_unrelated_type_error"].split("has no len()")[1].splitlines()[0]


def test_an_error_inside_the_code_under_test_says_where(messages):
    assert "[where] raised in `total` at line" in messages["test_bad_input"]
    assert "`return sum(amount for amount, _ in pairs)` with pairs=[1, 2]" in messages["test_bad_input"]


def test_a_callback_called_with_other_arguments_shows_them(messages):
    message = messages["test_callback_called_by_the_code"]
    assert "missing 1 required positional argument: 'x' [where] raised in `Deferred.get`" in message
    assert "`return self.fn(*args)` with args=()" in message


def test_identity_comparison_names_the_attributes_to_compare(messages):
    message = messages["test_identity"]
    assert "`Money` has no __eq__, so == compares identity [hint] compare attributes instead: amount, currency" in message
    assert "amount: 1 != 2" in message


def test_facts_are_deduplicated_by_hint_and_capped_newest_first():
    from fleet.trm.facts import MAX_FACTS, Facts

    facts = Facts()
    sig = "TypeError: f() got an unexpected keyword argument '{}' [hint] the signature is f(x)"
    facts.learn([sig.format("a"), sig.format("b"), "assert 1 == 2", "TypeError: bad [where] raised in `g` at line 3: `x`"])
    assert list(facts) == ["f() got an unexpected keyword argument 'b' → the signature is f(x)"]
    facts.learn([f"NameError: name 'n{i}' is not defined [hint] import it: from m import n{i}" for i in range(MAX_FACTS)])
    assert len(facts) == MAX_FACTS and "signature" not in " ".join(facts)
    assert list(facts)[-1] == f"name 'n{MAX_FACTS - 1}' is not defined → import it: from m import n{MAX_FACTS - 1}"


@pytest.mark.parametrize("message, reason", [
    ("assert 3 == 4\n>       assert total([(3, 1)]) == 4", "assertion"),
    ("AssertionError: Result should be a Money object.\nassert False", "assertion"),
    ("TypeError: f() missing 1 required positional argument: 'x'\n>       assert f() == 1", "exception"),
    ("ValueError: bad [where] raised in `g` at line 3: `assert x, 'Timeout'`", "exception"),
    ("ModuleNotFoundError: No module named 'numpy'", "import-error"),
    ("OSError: network access is blocked in the fleet sandbox", "sandbox-violation"),
    ("Failed: Timeout (>10.0s) from pytest-timeout.", "timeout"),
    ("TimeoutError\n>       await asyncio.wait_for(never(), 0.01)", "exception"),
    ("RuntimeError: no running event loop\n>       t = Timeout(0.1, loop)", "exception"),
])
def test_the_reason_comes_from_the_error_not_from_quoted_source(message, reason):
    from fleet.junit import Outcome
    from fleet.trm.judge import reason_of

    assert reason_of(Outcome("failed", message)) == reason
