"""Static analysis of the target module (AST only; nothing is imported or run).

Segments are the units a prompt focuses on: each top-level function, each method of a top-level
class, and the module body itself. ``complexity`` is McCabe's cyclomatic number of a segment:
``1 + number of decision points`` (if/elif, for, while, except, with-less boolean operators,
comprehension ifs, ternaries, match cases, assert).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

_LINE_END = re.compile(r"\r\n|\r|\n")


def source_lines(source: str) -> list[str]:
    r"""The lines of ``source`` as Python numbers them: only ``\n``, ``\r\n`` and ``\r`` end a
    line (``str.splitlines`` also splits at a form feed or ``\x1c``, which Python keeps inside a
    line, and line ``n`` would no longer be item ``n - 1``)."""
    lines = _LINE_END.split(source)
    return lines[:-1] if lines[-1] == "" else lines


_DECISIONS = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.ExceptHandler, ast.IfExp, ast.Assert, ast.match_case)


@dataclass(frozen=True)
class Segment:
    """A function or method of the target: qualified name, line span, signature text, complexity."""

    name: str
    start: int
    end: int
    signature: str
    complexity: int
    is_method: bool = False
    entry: tuple[str, ...] = ()  # public functions through which a private one is reached

    def lines(self) -> range:
        return range(self.start, self.end + 1)


@dataclass(frozen=True)
class Analysis:
    """What the engine knows about the target before any test runs."""

    module: str
    names: frozenset[str]
    public: tuple[str, ...]
    segments: tuple[Segment, ...]
    imports: dict[str, str] = field(default_factory=dict)
    lines: int = 0
    classes: int = 0
    exports: frozenset[str] | None = None  # every name `from <module> import` can get; None = unknowable

    def segment_at(self, line: int) -> Segment | None:
        """The innermost segment spanning ``line``."""
        best = None
        for seg in self.segments:
            if seg.start <= line <= seg.end and (best is None or seg.start >= best.start):
                best = seg
        return best


def complexity(node: ast.AST) -> int:
    """McCabe: 1 + decision points (+ each extra operand of ``and``/``or``, + comprehension ifs)."""
    score = 1
    for child in ast.walk(node):
        if isinstance(child, _DECISIONS):
            score += 1
        elif isinstance(child, ast.BoolOp):
            score += len(child.values) - 1
        elif isinstance(child, ast.comprehension):
            score += len(child.ifs)
    return score


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef, owner: str | None) -> str:
    prefix = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
    args = ast.unparse(node.args)
    returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
    qual = f"{owner}.{node.name}" if owner else node.name
    return f"{prefix} {qual}({args}){returns}"


def _is_private(qualname: str) -> bool:
    """A name a test should not call directly: some part starts with ``_`` and is no dunder."""
    return any(p.startswith("_") and not (p.startswith("__") and p.endswith("__")) for p in qualname.split("."))


def functions(tree: ast.Module) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Top-level functions and methods, with their qualified names, in source order."""
    out = []
    for node in tree.body:
        owner = node.name if isinstance(node, ast.ClassDef) else None
        for child in node.body if owner else [node]:
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((f"{owner}.{child.name}" if owner else child.name, child))
    return out


def _start(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """A function's first line, its decorators included."""
    return min([d.lineno for d in fn.decorator_list] + [fn.lineno])


def _references(fn: ast.AST) -> set[str]:
    """Names and attribute names used in a function (its decorators excluded)."""
    body = [n for stmt in getattr(fn, "body", []) for n in ast.walk(stmt)]
    return {n.id for n in body if isinstance(n, ast.Name)} | {n.attr for n in body if isinstance(n, ast.Attribute)}


def _dispatcher(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Names a decorator registers the function with (``@_convert.register(list)`` → ``_convert``)."""
    out = set()
    for deco in fn.decorator_list:
        node = deco.func if isinstance(deco, ast.Call) else deco
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            out.add(node.value.id)
    return out


def entry_points(references: list[tuple[str, set[str]]], qualname: str, fn: ast.FunctionDef | ast.AsyncFunctionDef,
                 limit: int = 3) -> tuple[str, ...]:
    """Public functions or methods that reach private ``qualname``: those whose body names it (or
    what it is registered with), following private callers up to three levels. At most ``limit``.
    ``references``: each function's qualified name and :func:`_references`."""
    wanted = {qualname.rsplit(".", 1)[-1], *_dispatcher(fn)} - {"_"}
    found: set[str] = set()
    seen = {qualname}
    for _ in range(3):
        callers = [q for q, refs in references if q not in seen and wanted & refs]
        seen.update(callers)
        found.update(q for q in callers if not _is_private(q))
        wanted = {q.rsplit(".", 1)[-1] for q in callers if _is_private(q)} - {"_"}
        if not wanted:
            break
    return tuple(sorted(found)[:limit])


def _imported_names(tree: ast.Module) -> dict[str, str]:
    """Names the target imports anywhere (top level first, then inside functions) → the import
    statement that binds them."""
    names: dict[str, str] = {}
    nested = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and n not in tree.body]
    for node in [*tree.body, *nested]:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                if bound != "*" and bound not in names:
                    names[bound] = ast.unparse(type(node)(**{**node.__dict__, "names": [alias]}))
    return names


def _defined_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


_BLOCKS = (ast.If, ast.Try, ast.With, ast.For, ast.While, ast.AsyncWith, ast.AsyncFor)


def _bound_here(node: ast.stmt) -> set[str]:
    """Names one module-level statement binds (not those bound inside function or class bodies)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {alias.asname or alias.name.split(".")[0] for alias in node.names}
    targets: list[ast.AST] = []
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    elif isinstance(node, (ast.For, ast.AsyncFor)):
        targets = [node.target]
    elif isinstance(node, (ast.With, ast.AsyncWith)):
        targets = [item.optional_vars for item in node.items if item.optional_vars is not None]
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}


def module_exports(tree: ast.Module) -> frozenset[str] | None:
    """Every name bound at module scope, through if/try/with/for/while blocks (walrus and
    ``except ... as`` names included). None when that cannot be known statically: a star import,
    a module ``__getattr__``, or writes through ``globals()``."""
    names: set[str] = set()
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
            return None
        names |= _bound_here(node)
        if isinstance(node, _BLOCKS):
            for block in ("body", "orelse", "finalbody", "handlers"):
                stack.extend(getattr(node, block, []))
        if isinstance(node, ast.ExceptHandler):
            names |= {node.name} if node.name else set()
            stack.extend(node.body)
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names |= {n.target.id for n in ast.walk(node) if isinstance(n, ast.NamedExpr)
                      and isinstance(n.target, ast.Name)}
            if any(isinstance(n, ast.Name) and n.id in ("globals", "vars") for n in ast.walk(node)):
                return None
    return None if "__getattr__" in names else frozenset(names)


def defined_names(source: str) -> set[str]:
    """Top-level names a module defines (functions, classes, assignments); empty if it does not parse."""
    try:
        return _defined_names(ast.parse(source))
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return set()


def analyse(source: str, module: str) -> Analysis:
    """Segments, names and size facts of ``source`` (already syntax-checked)."""
    tree = ast.parse(source)
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    defined = functions(tree)
    references = [(q, _references(fn)) for q, fn in defined]
    segments = []
    for qualname, fn in defined:
        owner = qualname.rpartition(".")[0] or None
        entry = entry_points(references, qualname, fn) if _is_private(qualname) else ()
        segments.append(Segment(qualname, _start(fn), fn.end_lineno or fn.lineno, _signature(fn, owner),
                                complexity(fn), owner is not None, entry))
    names = _defined_names(tree)
    public = tuple(sorted(n for n in names if not n.startswith("_")))
    return Analysis(
        module=module,
        names=frozenset(names),
        public=public,
        segments=tuple(sorted(segments, key=lambda s: s.start)),
        imports=_imported_names(tree),
        exports=module_exports(tree),
        lines=len(source_lines(source)),
        classes=len(classes),
    )
