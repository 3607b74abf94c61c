"""Keep the part of a failing test that ran: its statements before the one that failed.

Two mends of a test that failed at top-level statement k, both judged like any other test:

A test whose body fails at top-level statement k ran statements 0 … k−1 without an error. When
those hold at least one check (``assert``, ``pytest.raises`` …), the test cut before statement k
keeps what the model got right: its setup, its correct checks and their coverage. The cut test
is judged like any other (it must pass every rerun and add coverage), so a prefix that only
passed by chance, or depends on a later statement, is rejected there. The failing line comes
from pytest's report (``tests/test_generated.py:<line>:``, the test file's frame) and is mapped
onto the module that ran. Test functions and one-method test classes are cut; nothing else.

**Expecting the exception.** When statement k made the code under test execute a ``raise`` of
an exception the test can name (a builtin, or a name of the target or its package), the test
becomes statements 0 … k−1 and ``with pytest.raises(<Type>): <statement k>`` (an ``assert e``
becomes ``e``): the code deliberately rejects the input the model chose, and the test pins that
down. The report marks it ``raises``. An exception the code did not raise on purpose (a
``TypeError`` or ``IndexError`` from input of the wrong shape) is a mistake of the test and stays
a failure, so its error is fed back; so is a failure raised in the test's own code, and a call
that does not fit its callable's signature.
"""

from __future__ import annotations

import ast
import re
from typing import Callable

from fleet.hints_plugin import BINDING_FAILURE
from fleet.sandbox import SOURCE_DIR, TEST_FILE
from fleet.trm.parse import Unit, count_asserts

_LINE = re.compile(re.escape(TEST_FILE) + r":(\d+):")
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_RAISED_AT = re.compile(r"^(\S+):\d+: (\w+)\s*$", re.M)
_WRAPPABLE = (ast.Expr, ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Assert)
_NEVER_EXPECTED = {"RecursionError", "MemoryError", "SystemExit", "KeyboardInterrupt", "AssertionError"}
_BAD_CALL = re.compile(r"TypeError: \S+\(\) " + BINDING_FAILURE)


def failing_line(message: str) -> int | None:
    """The line of the test file where the test failed (pytest's first ``file:line:`` of it)."""
    match = _LINE.search(message)
    return int(match.group(1)) if match else None


def _test_function(module: ast.Module, name: str) -> tuple[ast.stmt, ast.FunctionDef | ast.AsyncFunctionDef] | None:
    """The unit's top-level node in the rendered module and its test function: a top-level
    ``def name``, or ``class name`` and its single test method."""
    for node in module.body:
        if isinstance(node, _FUNCTIONS) and node.name == name:
            return node, node
        if isinstance(node, ast.ClassDef) and node.name == name:
            tests = [m for m in node.body if isinstance(m, _FUNCTIONS) and m.name.startswith("test")]
            return (node, tests[0]) if len(tests) == 1 else None
    return None


def raised_in_target(message: str) -> str | None:
    """The exception's class name when the code under test raised it with a ``raise`` statement
    (pytest's last ``<file>:<line>: <Type>`` lies in the code under test and its last ``>`` line,
    the failing source line, is a ``raise``), else None."""
    found = _RAISED_AT.findall(message)
    if not found or not found[-1][0].startswith(SOURCE_DIR + "/"):
        return None
    marked = [ln[1:].strip() for ln in message.splitlines() if ln.startswith(">")]
    return found[-1][1] if marked and marked[-1].startswith("raise") else None


def _failed_at(unit: Unit, module: str, message: str) -> tuple[ast.stmt, ast.FunctionDef | ast.AsyncFunctionDef, int] | None:
    """(the unit's top-level node, its test function, the index of the failing statement) in a
    fresh parse of ``module``, or None when the failure is not inside the function's body."""
    line = failing_line(message)
    if line is None:
        return None
    try:
        tree = ast.parse(module)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    found = _test_function(tree, unit.name)
    if found is None:
        return None
    top, fn = found
    index = next((i for i, stmt in enumerate(fn.body) if stmt.lineno <= line <= (stmt.end_lineno or stmt.lineno)), None)
    return None if index is None else (top, fn, index)


def before_failure(unit: Unit, module: str, message: str) -> Unit | None:
    """``unit`` cut before the statement it failed at in ``module`` (the text that ran), or None
    when the failure is not inside its body, is in its first statement, or leaves no check."""
    found = _failed_at(unit, module, message)
    if found is None or found[2] == 0:
        return None
    top, fn, index = found
    asserts = sum(count_asserts(stmt) for stmt in fn.body[:index])
    if asserts == 0:
        return None
    fn.body = fn.body[:index]  # the tree was parsed for this call alone
    return Unit(unit.name, ast.unparse(top), unit.needs, asserts, origin="cut")


def expecting_failure(unit: Unit, module: str, message: str, nameable: Callable[[str], bool]) -> Unit | None:
    """``unit`` up to its failing statement, which is wrapped in ``pytest.raises`` of the exception
    the code under test raised (see the module docstring), or None."""
    name = raised_in_target(message)
    if name is None or name in _NEVER_EXPECTED or _BAD_CALL.search(message) or not nameable(name):
        return None
    found = _failed_at(unit, module, message)
    if found is None or not isinstance(found[1].body[found[2]], _WRAPPABLE):
        return None
    top, fn, index = found
    stmt = fn.body[index]
    body = ast.Expr(stmt.test) if isinstance(stmt, ast.Assert) else stmt
    raises = ast.Call(ast.Attribute(ast.Name("pytest", ast.Load()), "raises", ast.Load()), [ast.Name(name, ast.Load())], [])
    fn.body = [*fn.body[:index], ast.With([ast.withitem(raises)], [body])]
    asserts = sum(count_asserts(s) for s in fn.body)
    return Unit(unit.name, ast.unparse(ast.fix_missing_locations(top)), unit.needs, asserts, origin="raises")
