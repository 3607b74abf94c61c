"""Deterministic import repair of a generated test module, before anything runs.

Small models import the target under a wrong name (``from solution import f``), forget imports
(``date``, ``pytest``, a class of the target) or copy the target's own relative imports. Feedback
rarely fixes these, so they are fixed in code:

1. an import whose top-level module is neither the standard library, nor a bundled package, nor
   installed here is dropped (its names then count as undefined);
2. every name pyflakes reports undefined is imported from, in order: the target module (its own
   definitions), the target's own import of that name (relative imports made absolute), ``pytest``,
   a standard-library module of that name, or a small table of common standard-library names.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from dataclasses import dataclass, field

from pyflakes import api as pyflakes_api
from pyflakes import messages as pyflakes_messages
from pyflakes.reporter import Reporter

from fleet.analysis import Analysis

COMMON = {
    "date": "from datetime import date",
    "timedelta": "from datetime import timedelta",
    "timezone": "from datetime import timezone",
    "Decimal": "from decimal import Decimal",
    "Fraction": "from fractions import Fraction",
    "OrderedDict": "from collections import OrderedDict",
    "defaultdict": "from collections import defaultdict",
    "namedtuple": "from collections import namedtuple",
    "deque": "from collections import deque",
    "Counter": "from collections import Counter",
    "partial": "from functools import partial",
    "Path": "from pathlib import Path",
    "StringIO": "from io import StringIO",
    "BytesIO": "from io import BytesIO",
    "mock": "from unittest import mock",
    "Mock": "from unittest.mock import Mock",
    "MagicMock": "from unittest.mock import MagicMock",
    "patch": "from unittest.mock import patch",
    "Enum": "from enum import Enum",
    "dataclass": "from dataclasses import dataclass",
    "Any": "from typing import Any",
    "Optional": "from typing import Optional",
}


@dataclass(frozen=True)
class Context:
    """What repair needs to know: the target's module name and analysis, the bundled top-level
    packages, and ``elsewhere``: public names defined by other bundled modules → their module."""

    module: str
    analysis: Analysis
    bundled: frozenset[str]
    elsewhere: dict[str, str] = field(default_factory=dict)
    is_package: bool = False

    @property
    def package(self) -> str:
        return self.module.rpartition(".")[0]


class _Collector(Reporter):
    def __init__(self) -> None:
        self.undefined: list[str] = []

    def flake(self, message) -> None:
        if isinstance(message, pyflakes_messages.UndefinedName):
            self.undefined.append(message.message_args[0])

    def unexpectedError(self, filename, msg) -> None:  # noqa: N802 (pyflakes API)
        pass

    def syntaxError(self, filename, msg, lineno, offset, text) -> None:  # noqa: N802
        pass


def bundle_index(files: dict[str, str], target_path: str) -> dict[str, str]:
    """Public top-level names of the bundled modules other than the target → the module defining
    them (the module with the shortest dotted name wins a tie: usually the package's own API)."""
    from fleet.analysis import defined_names
    from fleet.bundle import module_name
    from fleet.errors import BadInput

    index: dict[str, str] = {}
    for rel in sorted(files, key=lambda r: (r.count("/"), len(r))):
        if rel == target_path:
            continue
        try:
            module = module_name(rel)
        except BadInput:
            continue
        for name in defined_names(files[rel]):
            if not name.startswith("_"):
                index.setdefault(name, module)
    return index


def undefined_names(source: str) -> list[str]:
    """Names pyflakes reports as undefined in ``source``, in order of first use."""
    collector = _Collector()
    pyflakes_api.check(source, "test_generated.py", collector)
    return list(dict.fromkeys(collector.undefined))


def _importable(top: str, ctx: Context) -> bool:
    if top in sys.stdlib_module_names or top in ctx.bundled:
        return True
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def absolute_import(statement: str, ctx: Context) -> str:
    """Rewrite a relative ``from .x import y`` of the target into an absolute import."""
    node = ast.parse(statement).body[0]
    if isinstance(node, ast.ImportFrom) and node.level:
        package = ctx.module.split(".") if ctx.is_package else ctx.module.split(".")[:-1]
        base = package[: len(package) - (node.level - 1)] if node.level - 1 <= len(package) else []
        node.module = ".".join(base + ([node.module] if node.module else [])) or None
        node.level = 0
        if node.module is None:
            return ""
    return ast.unparse(node)


def absolute_imports(ctx: Context) -> dict[str, str]:
    """The target's imported names → their absolute import statements; a relative import that
    climbs above the top package (``from . import x`` in a top-level module) is left out."""
    pairs = ((name, absolute_import(statement, ctx)) for name, statement in ctx.analysis.imports.items())
    return {name: statement for name, statement in pairs if statement}


def _from_target(node: ast.ImportFrom, ctx: Context) -> str | None:
    """``from <target> import ...`` without the names the target does not bind (a model inventing
    a constant would break the whole test module's collection); None when none is left."""
    exports = ctx.analysis.exports
    if exports is None or ctx.is_package:  # a package's submodules are importable unbound
        return ast.unparse(node)
    names = [alias for alias in node.names if alias.name in exports]
    return ast.unparse(ast.ImportFrom(module=node.module, names=names, level=0)) if names else None


def keep_import(statement: str, ctx: Context) -> str | None:
    """The import if its module can be imported here (from the target: only names it binds);
    target-name imports from a wrong module are redirected to the target; others dropped (None)."""
    node = ast.parse(statement).body[0]
    if isinstance(node, ast.ImportFrom) and node.level:
        return None
    if isinstance(node, ast.ImportFrom) and node.module == ctx.module:
        return _from_target(node, ctx)
    modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
    if all(_importable(m.split(".")[0], ctx) for m in modules):
        return statement
    if isinstance(node, ast.ImportFrom):
        names = [a.name for a in node.names if a.name in ctx.analysis.names]
        if names:
            return f"from {ctx.module} import {', '.join(names)}"
    return None


def import_for(name: str, ctx: Context) -> str | None:
    """The import statement that defines ``name`` for a test of the target, if one is known."""
    if name in ctx.analysis.names:
        return f"from {ctx.module} import {name}"
    if name in ctx.analysis.imports:
        return absolute_import(ctx.analysis.imports[name], ctx) or None
    if name in ctx.elsewhere:
        return f"from {ctx.elsewhere[name]} import {name}"
    if name == ctx.module.rpartition(".")[2]:
        return f"import {ctx.module} as {name}" if ctx.package else f"import {name}"
    if name == "pytest" or name in sys.stdlib_module_names:
        return f"import {name}"
    return COMMON.get(name)


def merge_imports(statements: list[str]) -> list[str]:
    """One ``from M import a, b`` per module (names deduplicated, first-seen order kept)."""
    merged: dict[str, list[str]] = {}
    out: list[str] = []
    for statement in statements:
        node = ast.parse(statement).body[0]
        if isinstance(node, ast.ImportFrom) and not node.level and node.module and node.names[0].name != "*":
            if node.module not in merged:
                merged[node.module] = []
                out.append(node.module)
            names = [ast.unparse(a) for a in node.names]
            merged[node.module].extend(n for n in names if n not in merged[node.module])
        elif statement not in out:
            out.append(statement)
    return [f"from {s} import {', '.join(merged[s])}" if s in merged else s for s in out]


def repair_imports(imports: list[str], body: str, ctx: Context) -> list[str]:
    """Imports for a test module with ``body``: the model's usable imports plus those it forgot."""
    kept = [s for s in (keep_import(i, ctx) for i in imports) if s]
    kept = list(dict.fromkeys(["import pytest", *kept]))
    for _ in range(3):
        missing = undefined_names("\n".join(kept) + "\n\n" + body)
        added = [s for s in (import_for(n, ctx) for n in missing) if s and s not in kept]
        if not added:
            break
        kept.extend(dict.fromkeys(added))
    return merge_imports(kept)
