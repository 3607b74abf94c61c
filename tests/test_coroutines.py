"""fleet.trm.coroutines: coroutine tests run under asyncio.run, so pytest needs no plugin."""

from __future__ import annotations

import ast

import pytest

from fleet.trm.coroutines import is_coroutine_test, synchronous
from fleet.trm.parse import parse_reply
from tests.scripted_job import run_job


def _first(code: str) -> ast.stmt:
    return ast.parse(code).body[0]


def _run(code: str, **names) -> dict:
    """Execute ``code`` (a converted test and its call) with ``names`` defined; its namespace."""
    namespace = {"asyncio": __import__("asyncio"), **names}
    exec(compile(code, "<test>", "exec"), namespace)  # noqa: S102 (test code written here)
    return namespace


@pytest.mark.parametrize("code, expected", [
    ("async def test_a():\n    assert await f() == 1\n", True),
    ("def test_a():\n    assert await f() == 1\n", True),
    ("def test_a():\n    async with f() as x:\n        assert x\n", True),
    ("def test_a():\n    assert f() == 1\n", False),
    ("def test_a():\n    async def g():\n        return await f()\n    assert g\n", False),
    ("async def test_a():\n    yield 1\n", False),
    ("async def helper():\n    return await f()\n", False),
])
def test_what_counts_as_a_coroutine_test(code, expected):
    assert is_coroutine_test(_first(code)) is expected


def test_an_async_test_runs_its_body_and_its_failures_surface():
    code = "async def test_double(n=2):\n    assert await double(n) == 4\n"
    converted = synchronous(_first(code))
    assert isinstance(converted, ast.FunctionDef) and converted.name == "test_double"
    source = ast.unparse(converted)

    async def double(x):
        return 2 * x

    async def wrong(x):
        return x

    _run(source, double=double)["test_double"]()
    with pytest.raises(AssertionError):
        _run(source, double=wrong)["test_double"]()


def test_plugin_marks_are_dropped_and_other_decorators_kept():
    code = ("@pytest.mark.asyncio\n@pytest.mark.parametrize('n', [1])\n@pytest.mark.anyio()\n"
            "async def test_x(n):\n    assert await f(n)\n")
    converted = synchronous(_first(code))
    assert [ast.unparse(d) for d in converted.decorator_list] == ["pytest.mark.parametrize('n', [1])"]
    assert [a.arg for a in converted.args.args] == ["n"]


def test_a_test_class_keeps_its_methods_and_converts_only_coroutine_tests():
    code = ("class TestA:\n    def setup_method(self):\n        self.v = 3\n"
            "    async def test_v(self):\n        assert await ident(self.v) == 3\n"
            "    def test_plain(self):\n        assert self.v == 3\n")
    converted = synchronous(_first(code))

    async def ident(x):
        return x

    cls = _run(ast.unparse(converted), ident=ident)["TestA"]
    case = cls()
    case.setup_method()
    case.test_v()
    assert [m.name for m in converted.body] == ["setup_method", "test_v", "test_plain"]
    assert ast.dump(converted.body[2]) == ast.dump(_first(code).body[2])


def test_parse_reply_turns_coroutine_tests_into_plain_units():
    text = ("```python\nimport pytest\n\n@pytest.mark.asyncio\nasync def test_fetch():\n"
            "    assert await fetch(1) == 2\n\n\ndef test_awaits():\n    assert await fetch(2) == 3\n```")
    parsed = parse_reply(text, frozenset({"fetch"}))
    assert [u.name for u in parsed.units] == ["test_fetch", "test_awaits"]
    for unit in parsed.units:
        assert unit.source.startswith(f"def {unit.name}():") and "asyncio.run(_body())" in unit.source
        assert "mark.asyncio" not in unit.source


SRC = """\
import asyncio


async def fetch(key):
    await asyncio.sleep(0)
    if key < 0:
        raise KeyError(key)
    return key + 1
"""


def test_coroutine_tests_are_kept_in_the_real_sandbox():
    """The model's coroutine tests, as pytest alone cannot run them, are judged and kept."""
    reply = ("@pytest.mark.asyncio\nasync def test_fetch():\n    assert await fetch(1) == 2\n\n\n"
             "def test_fetch_missing():\n    with pytest.raises(KeyError):\n        await fetch(-1)\n")
    report, _ = run_job("aio", SRC, [reply], ablate=("oracle",))
    assert [t["name"] for t in report["tests"]] == ["test_fetch", "test_fetch_missing"]
    assert report["final_runs_passed"] == report["reruns"]
    assert report["coverage_after"]["line"] == 1.0
