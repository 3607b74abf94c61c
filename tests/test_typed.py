"""Typed arguments (fleet.trm.typed): None or an unfit literal replaced by a value of the annotated type."""

from __future__ import annotations

import ast

import pytest

from fleet.trm.parse import Unit
from fleet.trm.typed import Resolver, TypedArguments, signatures, unwrap
from tests.scripted_job import run_job


@pytest.mark.parametrize("annotation, expected", [
    ("Optional[Date]", "Date"), ("typing.Optional[x.Y]", "x.Y"), ("Union[None, int]", "int"), ("'Money'", "Money"),
    ("Date | None", "Date"), ("Union[int, str]", ""), ("List[int]", ""), ("'not valid('", ""),
])
def test_unwrap_finds_the_one_type_an_annotation_stands_for(annotation, expected):
    assert unwrap(ast.parse(annotation, mode="eval").body) == expected


CURRENCIES = '''\
from datetime import date as Date


class Kind:
    MONEY = 1


class Currency:
    """A currency.

    >>> eur = Currency.of("EUR", 2, Kind.MONEY)
    """

    @classmethod
    def of(cls, code, decimals, kind):
        return cls()


class Needy:
    def __init__(self, a, b=1):
        self.a = a
'''
TARGET = '''\
import datetime
from decimal import Decimal
from typing import Optional

from .currencies import Currency, Date, Needy


class Money:
    def __init__(self, ccy: Currency, qty: Decimal, dov: Optional[Date] = None, *, note: str = ""):
        self.ccy, self.qty, self.dov = ccy, qty, dov

    def at(self, when: "datetime.date", needy: Needy, count: int) -> "Money":
        return self

    @staticmethod
    def plain(flag: bool):
        return flag
'''
FILES = {"shop/__init__.py": "", "shop/currencies.py": CURRENCIES, "shop/money.py": TARGET}
IMPORTS = {"datetime": "import datetime", "Decimal": "from decimal import Decimal", "Optional": "from typing import Optional",
           "Currency": "from shop.currencies import Currency", "Date": "from shop.currencies import Date",
           "Needy": "from shop.currencies import Needy"}


def table():
    return signatures(Resolver(ast.parse(TARGET), IMPORTS, FILES))


def test_annotations_resolve_through_imports_and_the_bundle_to_a_way_of_building_the_value():
    made = {name: [(p, s.expr if s else None) for p, s in params] for name, params in table().items()}
    assert made["Money"] == [("ccy", "Currency.of('EUR', 2, Kind.MONEY)"),  # its docstring's example
                             ("qty", "decimal.Decimal('1.5')"),
                             ("dov", "datetime.date(2024, 1, 31)"),  # Date is datetime's date, re-exported
                             ("note", "'a'")]
    assert made["at"] == [("when", "datetime.date(2024, 1, 31)"), ("needy", None), ("count", "1")]  # no self
    assert made["plain"] == [("flag", "True")]  # a staticmethod keeps its first parameter


def test_a_comment_in_a_docstring_example_is_passed_over():
    target = 'class Point:\n    """A point.\n\n    >>> # make one\n    >>> p = Point.at(1, 2)\n    """\n\n\ndef move(p: Point):\n    return p\n'
    made = signatures(Resolver(ast.parse(target), {}, {"geo.py": target}))
    assert [(p, s.expr if s else None) for p, s in made["move"]] == [("p", "Point.at(1, 2)")]


def test_a_test_gets_every_unfit_argument_replaced_at_once_and_its_assertions_made_oracle_sites():
    unit = Unit("test_m", "def test_m():\n    m = Money('EUR', 10, None, note=None)\n    assert m.at(None, None, 3).qty == 10\n")
    typed = TypedArguments(table(), frozenset({"Money"}))
    made = typed.typed([unit], limit=5)
    assert [u.name for u in made] == ["test_m__t1"] and made[0].origin == "typed"
    assert made[0].source == (
        "def test_m__t1():\n"
        "    m = Money(Currency.of('EUR', 2, Kind.MONEY), decimal.Decimal('10'), datetime.date(2024, 1, 31), note='a')\n"
        "    assert m.at(datetime.date(2024, 1, 31), None, 3).qty == None\n")  # 3 fits an int; Needy is unknown
    assert typed.typed([unit], limit=5) == []  # once per test
    fitting = Unit("test_f", "def test_f():\n    assert Money(c, Decimal('1')).at(d, n, 2) is not None\n")
    assert typed.typed([fitting], limit=5) == []  # nothing to replace: no new test


DUE = '''\
import datetime
from decimal import Decimal
from typing import Optional


def due(amount: Optional[Decimal], when: Optional[datetime.date]) -> str:
    if amount is None or when is None:
        return "none"
    return f"{amount.quantize(Decimal('0.01'))} on {when.isoformat()}"
'''


@pytest.mark.parametrize("off", [{}, {"ablate": ("typed",)}, {"max_variants": 0}])
def test_the_loop_keeps_a_test_given_values_of_the_annotated_types(off):
    reply = "def test_due():\n    assert due(None, None) == 'none'\n"
    report, _ = run_job("d", DUE, [reply], prompts_per_iteration=1, max_prompts_per_iteration=1,
                        **{"max_variants": 12, **off})
    origins = [t["oracle"] for t in report["tests"]]
    attempt = report["iterations"][0]["attempts"][0]
    if off:
        assert origins == ["model"] and attempt["typed"] == 0
        return
    assert origins == ["model", "typed"] and attempt["typed"] == 1 and attempt["typed_kept"] == 1
    assert "due(decimal.Decimal('1.5'), datetime.date(2024, 1, 31)) == '1.50 on 2024-01-31'" in report["test_module"]
    assert "import decimal" in report["test_module"] and report["coverage_after"]["line"] == 1.0


def test_a_method_of_a_class_from_elsewhere_and_a_text_that_is_no_number_are_left_alone():
    typed = TypedArguments(table(), frozenset({"Money"}))
    # Currency.at is not Money.at (a name alike); m.at is (m may be a Money)
    unit = Unit("test_c", "def test_c():\n    assert Currency.at(None, 'x', 1) is m.at(None, 'x', 1)\n")
    made = typed.typed([unit], limit=5)
    assert "Currency.at(None, 'x', 1)" in made[0].source and "m.at(datetime.date(2024, 1, 31), 'x', 1)" in made[0].source
    texts = Unit("test_q", "def test_q():\n    assert Money(c, 'ten').qty and Money(c, '2.5').qty\n")
    assert "Money(c, decimal.Decimal('1.5')).qty and Money(c, decimal.Decimal('2.5')).qty" in typed.typed([texts], 5)[0].source
