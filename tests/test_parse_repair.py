"""fleet.trm.parse (reply → test units), fleet.trm.repair (import repair) and Suite.absorb/render."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from fleet.analysis import analyse
from fleet.trm.parse import Unit, count_asserts, extract_code, parse_reply, salvage, strip_line_numbers
from fleet.trm.repair import Context, import_for, keep_import, repair_imports, undefined_names
from fleet.trm.suite import Suite

CALC = """\
import math
from datetime import date


def add(a, b):
    return a + b


def sign(x):
    if x > 0:
        return 1
    if x < 0:
        return -1
    return 0


class Account:
    def __init__(self, balance=0):
        self.balance = balance


LIMIT = 10
"""
CALC_NAMES = frozenset({"add", "sign", "Account", "LIMIT"})


@pytest.fixture
def calc_ctx() -> Context:
    return Context("calc", analyse(CALC, "calc"), frozenset({"calc"}))


def _bindings(imports: list[str]) -> dict[str, str]:
    """Bound name → what it refers to ("module:name" for from-imports, "module" for imports)."""
    out: dict[str, str] = {}
    for statement in imports:
        for node in ast.parse(statement).body:
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, statement
                for alias in node.names:
                    out[alias.asname or alias.name] = f"{node.module}:{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    out[alias.asname or alias.name.split(".")[0]] = alias.name
    return out


# -- extract_code ------------------------------------------------------------------------------

def test_extract_code_without_fence_returns_text():
    text = "import pytest\n\ndef test_a():\n    assert 1 + 1 == 2\n"
    assert extract_code(text) == text.rstrip("\n")


def test_extract_code_without_fence_cuts_at_a_bare_closing_fence():
    assert extract_code("x = 1\ny = 2```") == "x = 1\ny = 2"


def test_extract_code_single_fence_drops_prose():
    text = "Here are the tests:\n```python\ndef test_a():\n    assert True\n```\nThese cover everything."
    assert extract_code(text).strip() == "def test_a():\n    assert True"


@pytest.mark.parametrize("lang", ["", "py", "Python", "python "])
def test_extract_code_fence_languages(lang):
    text = f"prose\n```{lang}\nvalue = 3\n```\nmore prose"
    assert extract_code(text).strip() == "value = 3"


def test_extract_code_joins_multiple_fences_in_order():
    text = "First:\n```python\na = 1\n```\nthen\n```py\nb = 2\n```\nand\n```\nc = 3\n```\nbye"
    code = extract_code(text)
    assert "First" not in code and "then" not in code and "bye" not in code
    assert code.index("a = 1") < code.index("b = 2") < code.index("c = 3")
    assert ast.parse(code)  # the joined blocks are one valid module


def test_extract_code_unclosed_fence_runs_to_end():
    assert extract_code("```python\nx = 1\ny = 2\n").strip() == "x = 1\ny = 2"


def test_extract_code_strips_line_numbers_inside_fence():
    text = "```python\n1: def test_a():\n2:     assert 1\n```"
    assert extract_code(text).strip() == "def test_a():\n    assert 1"


def test_extract_code_prefilled_reply_with_closing_fence_and_prose():
    # The engine strips the prefilled "```python\n", so a reply that closes its block and goes on
    # talking holds only a *closing* fence. extract_code's fallback `text.split("```")[0]` exists
    # for exactly this, but _FENCE matches "```\n<prose>" first.
    text = "import pytest\nfrom calc import add\n\ndef test_a():\n    assert add(1, 2) == 3\n```\nThese tests check add."
    code = extract_code(text)
    assert "def test_a" in code
    assert "These tests" not in code


# -- strip_line_numbers ------------------------------------------------------------------------

def test_strip_line_numbers_colon_prefixes_keep_indentation():
    numbered = "1: def f(x):\n2:     if x:\n3:         return 1\n4:     return 0\n"
    assert strip_line_numbers(numbered) == "def f(x):\n    if x:\n        return 1\n    return 0"


def test_strip_line_numbers_pipe_prefixes_and_blank_lines():
    numbered = "12| import pytest\n13|\n14| def test_x():\n15|     assert 1 == 1\n"
    out = strip_line_numbers(numbered)
    assert out.splitlines()[0] == "import pytest"
    assert "def test_x():\n    assert 1 == 1" in out
    assert "|" not in out
    ast.parse(out)


def test_strip_line_numbers_right_aligned_numbers():
    numbered = " 9: x = 1\n10: y = 2\n11: z = x + y\n"
    assert strip_line_numbers(numbered) == "x = 1\ny = 2\nz = x + y"


def test_strip_line_numbers_leaves_normal_code_alone():
    code = (
        "def test_lookup():\n"
        "    table = {1: 'a', 2: 'b'}\n"
        "    assert table[1] == 'a'\n"
        "    values = [x for x in range(3)]\n"
        "    assert values == [0, 1, 2]"
    )
    assert strip_line_numbers(code) == code


def test_strip_line_numbers_leaves_a_minority_of_numbered_lines():
    code = "x = {\n    1: 'a',\n}\ny = 2\nz = 3\nw = 4"
    assert strip_line_numbers(code) == code


def test_int_keyed_table_is_not_mistaken_for_line_numbers():
    codes = [(200, "OK"), (201, "Created"), (204, "No Content"), (301, "Moved Permanently"), (302, "Found"),
             (304, "Not Modified"), (400, "Bad Request"), (401, "Unauthorized"), (403, "Forbidden"),
             (404, "Not Found"), (500, "Internal Server Error"), (503, "Service Unavailable")]
    entries = "".join(f'        {c}: "{t}",\n' for c, t in codes)
    reply = ("import pytest\nfrom http_names import reason\n\n\ndef test_reason_phrases():\n    expected = {\n"
             + entries + "    }\n    for code, phrase in expected.items():\n        assert reason(code) == phrase\n")
    parsed = parse_reply(reply, frozenset({"reason"}))
    assert [u.name for u in parsed.units] == ["test_reason_phrases"]
    table = next(n for n in ast.walk(ast.parse(parsed.units[0].source)) if isinstance(n, (ast.Dict, ast.Set)))
    assert isinstance(table, ast.Dict) and len(table.keys) == len(codes)


# -- salvage -----------------------------------------------------------------------------------

def test_a_def_without_parentheses_gets_them_outside_strings():
    reply = ('parse\n\ndef test_meta:\n    text = """\n    def inside:\n    """\n    assert parse(text)\n\n'
             "class TestX:\n    def test_y:  # note\n        assert parse('')\n")
    parsed = parse_reply(reply, frozenset({"parse"}))
    assert [u.name for u in parsed.units] == ["test_meta", "TestX"] and parsed.rejected == []
    assert "def inside:" in parsed.units[0].source  # text inside a string is left alone


def test_spaces_inside_a_def_name_become_underscores_outside_strings():
    reply = ('parse\n\ndef test_a with_b():\n    text = """\ndef keep this(x):\n"""\n    assert parse(text)\n\n'
             "async def  test_c  d e (x):\n    assert x\n")
    parsed = parse_reply(reply, frozenset({"parse"}))
    assert [u.name for u in parsed.units] == ["test_a_with_b", "test_c_d_e"] and parsed.rejected == []
    assert "def keep this(x):" in parsed.units[0].source


def test_salvage_whole_module_parses():
    body, rejected = salvage("a = 1\n\ndef test_a():\n    assert a\n")
    assert rejected == []
    assert [type(n).__name__ for n in body] == ["Assign", "FunctionDef"]


def test_salvage_keeps_complete_functions_when_last_is_truncated():
    code = (
        "import pytest\n\n"
        "def test_one():\n    assert 1 + 1 == 2\n\n"
        "@pytest.mark.parametrize('x', [1, 2])\n"
        "def test_two(x):\n    assert x > 0\n\n"
        "def test_three():\n    assert sorted([3, 1]) == [1,"
    )
    body, rejected = salvage(code)
    names = [n.name for n in body if isinstance(n, ast.FunctionDef)]
    assert names == ["test_one", "test_two"]
    assert body[0].__class__ is ast.Import
    assert body[2].decorator_list, "the decorator stays attached to its function"
    assert [(r.name, r.reason) for r in rejected] == [("test_three", "syntax")]


def test_salvage_trims_a_truncated_tail_that_still_parses():
    code = "def test_one():\n    assert 1\n\ndef test_two():\n    x = 2\n    assert x == 2\n    assert foo(x,"
    body, rejected = salvage(code)
    assert [n.name for n in body] == ["test_one", "test_two"]
    assert rejected == []
    assert count_asserts(body[1]) == 1  # only the complete assert survives


def test_salvage_broken_middle_chunk_is_rejected_others_kept():
    code = "def test_a():\n    assert 1\n\ndef test_b(:\n    assert 2\n\ndef test_c():\n    assert 3\n"
    body, rejected = salvage(code)
    assert [n.name for n in body] == ["test_a", "test_c"]
    assert [(r.name, r.reason) for r in rejected] == [("test_b", "syntax")]


def test_salvage_try_except_is_one_chunk():
    code = "try:\n    import numpy\nexcept ImportError:\n    numpy = None\n\ndef test_a(:\n"
    body, rejected = salvage(code)
    assert len(body) == 1 and isinstance(body[0], ast.Try)
    assert len(rejected) == 1


# -- parse_reply -------------------------------------------------------------------------------

def test_parse_reply_drops_redefinitions_of_target_names():
    reply = (
        "from calc import add\n\n"
        "def add(a, b):\n    return a + b\n\n"
        "LIMIT = 99\n\n"
        "class Account:\n    pass\n\n"
        "def test_add():\n    assert add(1, 2) == 3\n"
    )
    parsed = parse_reply(reply, CALC_NAMES)
    reasons = {(r.name, r.reason) for r in parsed.rejected}
    assert reasons == {("add", "redefines-target"), ("LIMIT", "redefines-target"), ("Account", "redefines-target")}
    assert parsed.support == {}
    assert [u.name for u in parsed.units] == ["test_add"]
    assert parsed.imports == ["from calc import add"]


def test_parse_reply_drops_tests_without_assertions():
    reply = (
        "def test_nothing():\n    add(1, 2)\n\n"
        "class TestEmpty:\n    def test_x(self):\n        print('hi')\n\n"
        "def test_real():\n    assert add(1, 2) == 3\n"
    )
    parsed = parse_reply(reply, CALC_NAMES)
    assert {(r.name, r.reason) for r in parsed.rejected} == {("test_nothing", "no-assertion"), ("TestEmpty", "no-assertion")}
    assert [u.name for u in parsed.units] == ["test_real"]


def test_parse_reply_support_and_needs():
    reply = (
        "import pytest\n\n"
        "BIG = 10 ** 6\n\n"
        "@pytest.fixture\ndef account():\n    return Account(5)\n\n"
        "def make_pair(n):\n    return (n, -n)\n\n"
        "class Helper:\n    value = 3\n\n"
        "def test_account(account):\n    assert account.balance == 5\n\n"
        "def test_pair():\n    a, b = make_pair(BIG)\n    assert add(a, b) == 0\n\n"
        "def test_plain():\n    assert sign(2) == 1\n\n"
        "class TestGroup:\n    def test_helper(self, account):\n        assert Helper.value == 3\n"
    )
    parsed = parse_reply(reply, CALC_NAMES)
    assert set(parsed.support) == {"BIG", "account", "make_pair", "Helper"}
    assert parsed.support["account"].startswith("@pytest.fixture")
    needs = {u.name: u.needs for u in parsed.units}
    assert needs == {
        "test_account": frozenset({"account"}),
        "test_pair": frozenset({"make_pair", "BIG"}),
        "test_plain": frozenset(),
        "TestGroup": frozenset({"account", "Helper"}),
    }
    assert parsed.rejected == []


def test_parse_reply_counts_asserts_including_pytest_raises():
    reply = (
        "import pytest\n\n"
        "def test_mixed():\n"
        "    assert add(1, 1) == 2\n"
        "    with pytest.raises(TypeError):\n        add(1, None)\n"
        "    with pytest.warns(UserWarning):\n        pass\n"
        "    pytest.raises(ZeroDivisionError, lambda: 1 / 0)\n\n"
        "def test_only_raises():\n    with pytest.raises(ValueError):\n        int('x')\n\n"
        "class TestTwo:\n    def test_a(self):\n        assert 1\n    def test_b(self):\n        assert 2\n"
    )
    parsed = parse_reply(reply, CALC_NAMES)
    asserts = {u.name: u.asserts for u in parsed.units}
    assert asserts == {"test_mixed": 4, "test_only_raises": 1, "test_a": 1, "test_b": 1}
    assert parsed.rejected == []


def test_parse_reply_ignores_main_guard_and_bare_expressions():
    reply = (
        '"""docstring"""\n'
        "import pytest\n\n"
        "def test_a():\n    assert add(2, 2) == 4\n\n"
        "print('running')\n\n"
        'if __name__ == "__main__":\n    test_a()\n    pytest.main([__file__])\n'
    )
    parsed = parse_reply(reply, CALC_NAMES)
    assert [u.name for u in parsed.units] == ["test_a"]
    assert parsed.support == {}
    assert parsed.rejected == []
    assert all("__main__" not in u.source for u in parsed.units)


def test_parse_reply_of_garbage_yields_nothing_usable():
    parsed = parse_reply("I'm sorry, I can't write tests for this module. Please provide more context!",
                         CALC_NAMES)
    assert parsed.units == [] and parsed.support == {} and parsed.imports == []
    assert parsed.rejected and all(r.reason == "syntax" for r in parsed.rejected)


def test_parse_reply_prefilled_engine_text():
    """What the engine parses: prefill (minus its fence) + the model's continuation."""
    code = "import pytest\nfrom calc import " + "add, sign\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    parsed = parse_reply(code, CALC_NAMES)
    assert parsed.imports == ["import pytest", "from calc import add, sign"]
    assert [u.name for u in parsed.units] == ["test_add"]


# -- repair ------------------------------------------------------------------------------------

def test_undefined_names_in_order_of_first_use():
    source = "import os\n\ndef test_a(tmp_path):\n    assert helper(os.sep) == Thing\n    assert helper(1)\n"
    assert undefined_names(source) == ["helper", "Thing"]


def test_undefined_names_clean_module():
    assert undefined_names("import pytest\n\ndef test_a():\n    x = 1\n    assert x\n") == []


def test_repair_adds_target_imports_for_used_names(calc_ctx):
    body = "def test_a():\n    assert add(1, 2) == 3\n    assert Account().balance == 0\n    assert LIMIT == 10\n"
    imports = repair_imports([], body, calc_ctx)
    assert imports[0] == "import pytest"
    bound = _bindings(imports)
    assert bound["add"] == "calc:add" and bound["Account"] == "calc:Account" and bound["LIMIT"] == "calc:LIMIT"
    assert undefined_names("\n".join(imports) + "\n\n" + body) == []


def test_repair_redirects_wrong_module_to_target(calc_ctx):
    body = "def test_a():\n    assert add(1, 2) == 3\n"
    imports = repair_imports(["from solution import add"], body, calc_ctx)
    assert _bindings(imports)["add"] == "calc:add"
    assert not any("solution" in i for i in imports)


def test_keep_import_redirect_keeps_only_target_names(calc_ctx):
    assert keep_import("from solution import add, frobnicate", calc_ctx) == "from calc import add"
    assert keep_import("from solution import frobnicate", calc_ctx) is None
    assert keep_import("from os import path", calc_ctx) == "from os import path"
    assert keep_import("from calc import sign", calc_ctx) == "from calc import sign"
    assert keep_import("from . import add", calc_ctx) is None


def test_keep_import_drops_names_the_target_does_not_bind(calc_ctx):
    assert keep_import("from calc import add, NONCE_BYTES", calc_ctx) == "from calc import add"
    assert keep_import("from calc import NONCE_BYTES", calc_ctx) is None
    unknowable = Context("m", analyse("from os import *\n", "m"), frozenset({"m"}))
    assert keep_import("from m import anything", unknowable) == "from m import anything"
    package = Context("pkg", analyse("X = 1\n", "pkg"), frozenset({"pkg"}), is_package=True)
    assert keep_import("from pkg import submodule", package) == "from pkg import submodule"


def test_module_exports_follow_blocks_but_not_function_bodies():
    import ast

    from fleet.analysis import module_exports

    source = ("import os\nif os.name:\n    def f():\n        LOCAL = 1\nelse:\n    B = 2\n"
              "try:\n    import json\nexcept ImportError as err:\n    json = None\n"
              "class C:\n    ATTR = 3\n(W := 5)\n")
    assert module_exports(ast.parse(source)) == {"os", "f", "B", "json", "err", "C", "W"}
    assert module_exports(ast.parse("def __getattr__(name):\n    return 1\n")) is None
    assert module_exports(ast.parse("globals()['x'] = 1\n")) is None


def test_repair_drops_unimportable_module(calc_ctx):
    body = "def test_a():\n    assert add(1, 2) == 3\n    assert os.sep\n"
    imports = repair_imports(["import totally_not_a_module_xyz", "import os"], body, calc_ctx)
    assert not any("totally_not_a_module_xyz" in i for i in imports)
    bound = _bindings(imports)
    assert bound["os"] == "os" and bound["add"] == "calc:add"
    assert "totally_not_a_module_xyz" not in bound


def test_repair_adds_common_stdlib_names(calc_ctx):
    body = (
        "def test_a():\n    assert date(2020, 1, 1).year == 2020\n    assert Decimal('1.5') > 1\n"
        "    assert isinstance(defaultdict(int), dict)\n    assert json.loads('1') == 1\n"
    )
    imports = repair_imports([], body, calc_ctx)
    bound = _bindings(imports)
    assert bound["date"] == "datetime:date"  # the target's own import, same as the table's
    assert bound["Decimal"] == "decimal:Decimal"
    assert bound["defaultdict"] == "collections:defaultdict"
    assert bound["json"] == "json"
    assert undefined_names("\n".join(imports) + "\n\n" + body) == []


def test_repair_date_without_target_import():
    ctx = Context("m", analyse("def f():\n    return 1\n", "m"), frozenset({"m"}))
    assert repair_imports([], "def test_a():\n    assert date.today()\n", ctx) == ["import pytest", "from datetime import date"]


def test_repair_always_imports_pytest_once(calc_ctx):
    body = "def test_a():\n    with pytest.raises(ValueError):\n        int('x')\n"
    imports = repair_imports(["import pytest", "import pytest"], body, calc_ctx)
    assert imports.count("import pytest") == 1
    assert repair_imports([], body, calc_ctx) == ["import pytest"]


def test_repair_leaves_unknown_names_undefined(calc_ctx):
    body = "def test_a():\n    assert no_such_thing_anywhere() == 1\n"
    assert repair_imports([], body, calc_ctx) == ["import pytest"]


def test_repair_target_module_name_used_as_module(calc_ctx):
    body = "def test_a():\n    assert calc.add(1, 2) == 3\n"
    assert _bindings(repair_imports([], body, calc_ctx))["calc"] == "calc"


PKG_MOD = "from .util import helper\nfrom . import consts\n\n\ndef double(x):\n    return helper(x) * 2\n"


def test_repair_makes_targets_relative_import_absolute():
    ctx = Context("pkg.mod", analyse(PKG_MOD, "pkg.mod"), frozenset({"pkg"}))
    body = "def test_helper():\n    assert helper(2) == double(1)\n    assert consts\n"
    imports = repair_imports([], body, ctx)
    bound = _bindings(imports)  # also asserts no relative import is left
    assert bound["helper"] == "pkg.util:helper"
    assert bound["double"] == "pkg.mod:double"
    assert bound["consts"] == "pkg:consts"


def test_repair_drops_models_relative_import():
    ctx = Context("pkg.mod", analyse(PKG_MOD, "pkg.mod"), frozenset({"pkg"}))
    imports = repair_imports(["from .util import helper"], "def test_a():\n    assert helper(1)\n", ctx)
    assert imports == ["import pytest", "from pkg.util import helper"]


def test_repair_relative_import_of_nested_module():
    ctx = Context("pkg.sub.mod", analyse("from ..util import helper\n", "pkg.sub.mod"), frozenset({"pkg"}))
    assert import_for("helper", ctx) == "from pkg.util import helper"


def test_repair_relative_import_of_package_init():
    src = "from .util import helper\n\n\ndef double(x):\n    return helper(x) * 2\n"
    ctx = Context("pkg", analyse(src, "pkg"), frozenset({"pkg"}), is_package=True)  # pkg/__init__.py
    assert import_for("helper", ctx) == "from pkg.util import helper"


# -- Suite -------------------------------------------------------------------------------------

def _parsed(reply: str):
    return parse_reply(reply, CALC_NAMES)


def test_suite_absorb_renames_colliding_units():
    suite = Suite(units=[Unit("test_a", "def test_a():\n    assert 1", asserts=1)])
    out = suite.absorb(_parsed("def test_a():\n    assert add(1, 2) == 3\n\ndef test_b():\n    assert 2\n"))
    assert [u.name for u in out] == ["test_a_2", "test_b"]
    assert out[0].source.startswith("def test_a_2():")
    assert out[0].asserts == 1
    assert out[1].source.startswith("def test_b():")


def test_suite_absorb_renames_repeatedly_and_within_one_reply():
    suite = Suite(units=[Unit("test_a", "def test_a():\n    assert 1", asserts=1),
                         Unit("test_a_2", "def test_a_2():\n    assert 1", asserts=1)])
    reply = "def test_a():\n    assert 1\n\ndef test_a():\n    assert 2\n"
    out = suite.absorb(_parsed(reply))
    assert [u.name for u in out] == ["test_a_3", "test_a_4"]
    for unit in out:
        assert ast.parse(unit.source).body[0].name == unit.name


def test_suite_absorb_renames_test_classes():
    suite = Suite(units=[Unit("TestCalc", "class TestCalc:\n    def test_x(self):\n        assert 1", asserts=1)])
    out = suite.absorb(_parsed("class TestCalc:\n    def test_y(self):\n        assert sign(1) == 1\n"))
    assert [u.name for u in out] == ["TestCalc_2"]
    assert ast.parse(out[0].source).body[0].name == "TestCalc_2"


def test_suite_absorb_collects_imports_and_a_later_support_replaces_one_no_kept_test_needs():
    suite = Suite()
    first = suite.absorb(_parsed("import os\nimport os\nK = 1\n\ndef test_a():\n    assert K\n"))
    suite.absorb(_parsed("import os\nimport sys\nK = 2\n\ndef test_b():\n    assert K\n"))
    assert suite.imports == ["import os", "import sys"]
    assert suite.support == {"K": "K = 2"}
    assert suite.units == []  # absorb does not keep units; the judge does
    suite.units.append(first[0])  # once a kept test needs K, K stays as it is
    suite.absorb(_parsed("K = 3\n\ndef test_c():\n    assert K\n"))
    assert suite.support == {"K": "K = 2"}


def test_suite_render_is_runnable(calc_ctx, tmp_path):
    suite = Suite()
    units = suite.absorb(_parsed(
        "from solution import add\n\n@pytest.fixture\ndef account():\n    return Account(7)\n\n"
        "def test_add():\n    assert add(1, 2) == 3\n\n"
        "def test_account(account):\n    assert account.balance == 7\n    assert date(2020, 1, 2).day == 2\n"
    ))
    module = suite.render(units, calc_ctx)
    assert "solution" not in module
    (tmp_path / "calc.py").write_text(CALC)
    (tmp_path / "test_rendered.py").write_text(module)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_rendered.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, module + "\n" + done.stdout
    assert "2 passed" in done.stdout


def test_suite_render_only_includes_needed_support(calc_ctx):
    suite = Suite()
    units = suite.absorb(_parsed(
        "UNUSED = 1\nUSED = 2\n\ndef test_a():\n    assert add(USED, 0) == 2\n"
    ))
    module = suite.render(units, calc_ctx)
    assert "USED = 2" in module
    assert "UNUSED" not in module


def test_suite_render_includes_support_of_support(calc_ctx, tmp_path):
    suite = Suite()
    units = suite.absorb(_parsed(
        "import pytest\n\n@pytest.fixture\ndef base():\n    return 1\n\n"
        "@pytest.fixture\ndef doubled(base):\n    return add(base, base)\n\n"
        "def test_doubled(doubled):\n    assert doubled == 2\n"
    ))
    module = suite.render(units, calc_ctx)
    (tmp_path / "calc.py").write_text(CALC)
    (tmp_path / "test_rendered.py").write_text(module)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_rendered.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, module + "\n" + done.stdout


def test_tests_and_helpers_with_unsafe_calls_are_rejected_through_aliases():
    reply = (
        "import os\nimport subprocess as sp\nfrom shutil import rmtree\n\n"
        "def cleanup():\n    rmtree('/somewhere')\n\n"
        "def test_shell():\n    os.system('touch /tmp/x')\n    assert True\n\n"
        "def test_run():\n    sp.run(['ls'])\n    assert True\n\n"
        "def test_fine():\n    assert os.path.join('a', 'b') == 'a/b'\n"
    )
    parsed = parse_reply(reply, frozenset())
    assert [u.name for u in parsed.units] == ["test_fine"]
    why = {r.name: (r.reason, r.detail.split(":")[0]) for r in parsed.rejected}
    assert why == {"cleanup": ("unsafe-call", "calls shutil.rmtree"), "test_shell": ("unsafe-call", "calls os.system"),
                   "test_run": ("unsafe-call", "calls subprocess.run")}
    assert "cleanup" not in parsed.support


def test_a_test_class_is_split_into_one_unit_per_method():
    reply = (
        "class TestPlain:\n"
        "    def test_a(self):\n        assert add(1, 1) == 2\n"
        "    @staticmethod\n    def test_b():\n        assert sign(1) == 1\n"
        "    def test_c(self):\n        add(1, 1)\n\n"
        "class TestState:\n"
        "    value = 3\n"
        "    def test_d(self):\n        assert self.value == 3\n"
        "    def test_e(self):\n        assert sign(-1) == -1\n\n"
        "class TestSelf:\n"
        "    def helper(self):\n        return 1\n"
        "    def test_f(self):\n        assert self.helper() == 1\n"
        "    def test_g(self):\n        assert sign(0) == 0\n"
    )
    parsed = parse_reply(reply, CALC_NAMES)
    units = {u.name: u.source for u in parsed.units}
    assert list(units) == ["test_a", "test_b", "TestState_d", "TestState_e", "TestSelf_f", "TestSelf_g"]
    assert units["test_a"].startswith("def test_a():") and units["test_b"].startswith("def test_b():")
    assert units["TestState_d"] == "class TestState_d:\n    value = 3\n\n    def test_d(self):\n        assert self.value == 3"
    assert "def helper(self)" in units["TestSelf_g"]
    assert [(r.name, r.reason) for r in parsed.rejected] == [("test_c", "no-assertion")]

