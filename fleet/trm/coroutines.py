"""Coroutine tests made runnable without a pytest plugin.

Pytest runs an ``async def test_*`` only through a plugin (pytest-asyncio, anyio); without one it
fails every such test ("async def functions are not natively supported"), and a plain
``def test_*`` that uses ``await`` does not even compile. Small models write both for any target
with coroutines, so each such test becomes::

    def test_x(<the same parameters>):
        async def _body():
            <the original body>
        asyncio.run(_body())

Its parameters (fixtures) and ``self`` reach the body as closure variables; the plugins' marks
(``pytest.mark.asyncio``, ``pytest.mark.anyio``) are dropped. A test whose body yields (an async
generator) is left as it is. ``asyncio`` is imported later by import repair, like any forgotten
standard-library module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from typing import TypeGuard

_PLUGIN_MARKS = {"pytest.mark.asyncio", "pytest.mark.anyio", "mark.asyncio", "mark.anyio"}
_NESTED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _own_nodes(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[ast.AST]:
    """The nodes of ``fn``'s body, not descending into nested functions, lambdas or classes."""
    stack: list[ast.AST] = list(fn.body)
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, _NESTED):
            stack.extend(ast.iter_child_nodes(node))


def is_coroutine_test(node: ast.stmt) -> TypeGuard[ast.FunctionDef | ast.AsyncFunctionDef]:
    """A test function pytest cannot run as written: ``async def test_*``, or ``def test_*`` whose
    own body awaits; False when its body yields."""
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or not node.name.startswith("test"):
        return False
    own = list(_own_nodes(node))
    if any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in own):
        return False
    return isinstance(node, ast.AsyncFunctionDef) or any(isinstance(n, (ast.Await, ast.AsyncFor, ast.AsyncWith)) for n in own)


def _plugin_mark(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return ast.unparse(target) in _PLUGIN_MARKS


def run_with_asyncio(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.FunctionDef:
    """``fn`` as a plain test whose body runs in ``asyncio.run`` (see the module docstring)."""
    no_args = ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[])
    body = ast.AsyncFunctionDef(name="_body", args=no_args, body=fn.body, decorator_list=[], returns=None,
                                type_params=[])
    run = ast.Expr(ast.Call(func=ast.Attribute(ast.Name("asyncio", ast.Load()), "run", ast.Load()),
                            args=[ast.Call(ast.Name("_body", ast.Load()), [], [])], keywords=[]))
    plain = ast.FunctionDef(name=fn.name, args=fn.args, body=[body, run],
                            decorator_list=[d for d in fn.decorator_list if not _plugin_mark(d)],
                            returns=None, type_params=[])
    return ast.fix_missing_locations(ast.copy_location(plain, fn))


def synchronous(node: ast.stmt) -> ast.stmt:
    """``node`` with every coroutine test in it (itself, or a method of a test class) run by
    :func:`run_with_asyncio`; any other node unchanged."""
    if isinstance(node, ast.ClassDef):
        if not any(is_coroutine_test(m) for m in node.body):
            return node
        body = [run_with_asyncio(m) if is_coroutine_test(m) else m for m in node.body]
        return ast.copy_location(ast.ClassDef(name=node.name, bases=node.bases, keywords=node.keywords, body=body,
                                              decorator_list=node.decorator_list, type_params=[]), node)
    return run_with_asyncio(node) if is_coroutine_test(node) else node
