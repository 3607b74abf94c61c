"""Definitions the target uses from elsewhere in its bundle, summarised for the prompt.

A small model cannot build arguments for a class it has never seen (``Currency`` imported from
a sibling module). For each name the target imports from a bundled module, this gives the
definition's signature: a function's ``def`` line, or a class's ``__init__`` arguments and its
public classmethods / staticmethods, plus up to ``EXAMPLES`` doctest lines (``>>>``) from the
docstring; for a name the module binds by an import or an assignment (``Date``, re-exported
from ``datetime``), that line. Everything is read statically from the bundle; nothing is imported.
"""

from __future__ import annotations

import ast

from fleet.bundle import module_name
from fleet.errors import BadInput

EXAMPLES = 4
MAX_LINES = 40
MAX_BINDING = 120


def _args(fn: ast.FunctionDef | ast.AsyncFunctionDef, drop_first: bool) -> str:
    """The argument list; without its first argument (self / cls) when ``drop_first``."""
    text = ast.unparse(fn.args)
    if drop_first and fn.args.args:
        first = ast.unparse(fn.args.args[0])
        text = text.removeprefix(first).removeprefix(", ")
    return text


def _examples(node: ast.AST) -> list[str]:
    doc = ast.get_docstring(node) or ""
    return [f"    # {line.strip()}" for line in doc.splitlines() if line.strip().startswith(">>>")][:EXAMPLES]


def _class_summary(cls: ast.ClassDef) -> list[str]:
    bases = ", ".join(ast.unparse(b) for b in cls.bases)
    lines = [f"class {cls.name}({bases}):" if bases else f"class {cls.name}:"]
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            decorators = {ast.unparse(d) for d in node.decorator_list}
            if node.name == "__init__":
                lines.append(f"    def __init__(self, {_args(node, True)})")
            elif not node.name.startswith("_") and decorators & {"classmethod", "staticmethod"}:
                kind = "classmethod" if "classmethod" in decorators else "staticmethod"
                lines.append(f"    @{kind} def {node.name}({_args(node, kind == 'classmethod')})")
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            lines.append(f"    {ast.unparse(node)}")
    return lines + _examples(cls)


def _binding(node: ast.stmt, name: str) -> str:
    """The line that binds ``name`` by an import (only that name: ``from datetime import date as
    Date``) or a one-line assignment (``Numeric = TypeVar(...)``), at most ``MAX_BINDING``
    characters; "" for any other statement."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        names = [a for a in node.names if (a.asname or a.name.split(".")[0]) == name]
        if not names:
            return ""
        line = ast.unparse(ast.ImportFrom(node.module, names, node.level) if isinstance(node, ast.ImportFrom)
                           else ast.Import(names))
    elif isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == [name]:
        line = ast.unparse(node)
    else:
        return ""
    return line if len(line) <= MAX_BINDING else ""


def definition(tree: ast.Module, name: str) -> ast.stmt | None:
    """The top-level statement of ``tree`` that defines ``name``: its class or function, or the
    import or one-line assignment that binds it (:func:`_binding`); None when there is none."""
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return node
        if _binding(node, name):
            return node
    return None


def _summary(tree: ast.Module, name: str) -> list[str]:
    node = definition(tree, name)
    if isinstance(node, ast.ClassDef):
        return _class_summary(node)
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return [f"def {name}({_args(node, False)})", *_examples(node)]
    return [_binding(node, name)] if node is not None else []


def bundled_modules(files: dict[str, str]) -> dict[str, str]:
    """Module name → path of each bundled module."""
    out = {}
    for rel in files:
        try:
            out[module_name(rel)] = rel
        except BadInput:
            continue
    return out


def related_definitions(files: dict[str, str], target_path: str, imports: dict[str, str]) -> str:
    """Summaries of imported bundled definitions (``imports``: name → absolute import
    statement). Empty when there are none."""
    modules = bundled_modules(files)
    lines: list[str] = []
    for name, statement in sorted(imports.items()):
        node = ast.parse(statement).body[0]
        if not isinstance(node, ast.ImportFrom) or node.module not in modules:
            continue
        rel = modules[node.module]
        if rel == target_path:
            continue
        original = next((a.name for a in node.names if (a.asname or a.name) == name), name)
        try:
            summary = _summary(ast.parse(files[rel]), original)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        if summary:
            lines += [f"# from {node.module}", *summary]
    return "\n".join(lines[:MAX_LINES])
