"""Signatures of what the target imports from its own package, for the prompt."""

from __future__ import annotations

from fleet.analysis import analyse
from fleet.trm.context import related_definitions
from fleet.trm.repair import Context, absolute_imports
from tests.scripted_job import run_job

MONEY = '''\
class Currency:
    """A currency.

    >>> usd = Currency.of("USD", 2)
    >>> usd.code
    'USD'
    """

    code: str

    def __init__(self, code: str, decimals: int = 2):
        self.code = code

    @classmethod
    def of(cls, code: str, decimals: int) -> "Currency":
        return cls(code, decimals)

    def _private(self):
        pass


def convert(amount, rate=1.0):
    """Convert.

    >>> convert(2, 2.0)
    4.0
    """
    return amount * rate
'''
TIME = "import os\nfrom datetime import date as Date, time\n\nRate = float\nLONG = " + repr("x" * 200) + "\n"
TARGET = ("from .money import Currency, convert as cv\nfrom .time import Date, Rate, LONG, os\nimport os\n\n\n"
          "def price(x):\n    return cv(x)\n")
FILES = {"shop/__init__.py": "", "shop/money.py": MONEY, "shop/time.py": TIME, "shop/price.py": TARGET}


def summary() -> str:
    analysis = analyse(TARGET, "shop.price")
    ctx = Context("shop.price", analysis, frozenset({"shop"}))
    return related_definitions(FILES, "shop/price.py", absolute_imports(ctx))


def test_classes_show_constructor_classmethods_fields_and_doctests():
    text = summary()
    assert "# from shop.money\nclass Currency:" in text
    assert "    def __init__(self, code: str, decimals: int=2)" in text
    assert "    @classmethod def of(code: str, decimals: int)" in text
    assert "    code: str" in text
    assert '    # >>> usd = Currency.of("USD", 2)' in text
    assert "_private" not in text


def test_functions_under_an_alias_show_their_signature_and_examples():
    text = summary()
    assert "def convert(amount, rate=1.0)\n    # >>> convert(2, 2.0)" in text


def test_nothing_for_standard_library_imports_or_an_unbundled_module():
    analysis = analyse("import os\nfrom json import dumps\n", "solo")
    ctx = Context("solo", analysis, frozenset({"solo"}))
    assert related_definitions({"solo.py": "import os\n"}, "solo.py", absolute_imports(ctx)) == ""


def test_a_relative_import_above_the_top_package_is_left_out():
    analysis = analyse("from . import helper\nfrom .. import other\nimport os\n", "solo")
    ctx = Context("solo", analysis, frozenset({"solo"}))
    assert absolute_imports(ctx) == {"os": "import os"}
    assert related_definitions({"solo.py": "", "helper.py": "def h():\n    pass\n"}, "solo.py",
                               absolute_imports(ctx)) == ""


def test_names_a_bundled_module_binds_by_import_or_assignment_show_that_line():
    text = summary()
    assert "# from shop.time\nfrom datetime import date as Date\n" in text  # only the name asked for
    assert "# from shop.time\nRate = float" in text
    assert "# from shop.time\nimport os" in text
    assert "LONG" not in text  # a binding longer than a line's budget is left out


def test_a_job_on_a_module_with_a_relative_import_it_cannot_resolve_still_runs():
    source = "try:\n    from . import helper\nexcept ImportError:\n    helper = None\n\n\ndef twice(x):\n    return 2 * x\n"
    reply = "def test_twice():\n    assert twice(2) == 4\n"
    report, _ = run_job("solo", source, [reply], prompts_per_iteration=1, max_prompts_per_iteration=1)
    assert [test["name"] for test in report["tests"]] == ["test_twice"]
