"""Keep the part of a failing test that ran: its statements before the one that failed.

A test whose body fails at top-level statement k ran statements 0 … k−1 without an error. When
those hold at least one check (``assert``, ``pytest.raises`` …), the test cut before statement k
keeps what the model got right: its setup, its correct checks and their coverage. The cut test
is judged like any other (it must pass every rerun and add coverage), so a prefix that only
passed by chance, or depends on a later statement, is rejected there. The failing line comes
from pytest's report (``tests/test_generated.py:<line>:``, the test file's frame) and is mapped
onto the module that ran. Test functions and one-method test classes are cut; nothing else.
"""

from __future__ import annotations

import ast
import re

from fleet.sandbox import TEST_FILE
from fleet.trm.parse import Unit, count_asserts

_LINE = re.compile(re.escape(TEST_FILE) + r":(\d+):")
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


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


def before_failure(unit: Unit, module: str, message: str) -> Unit | None:
    """``unit`` cut before the statement it failed at in ``module`` (the text that ran), or None
    when the failure is not inside its body, is in its first statement, or leaves no check."""
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
    if not index:
        return None
    asserts = sum(count_asserts(stmt) for stmt in fn.body[:index])
    if asserts == 0:
        return None
    fn.body = fn.body[:index]  # the tree was parsed for this call alone
    return Unit(unit.name, ast.unparse(top), unit.needs, asserts, origin="cut")
