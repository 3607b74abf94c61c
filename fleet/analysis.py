"""Static analysis of the target module (AST only; nothing is imported or run).

Segments are the units a prompt focuses on: each top-level function, each method of a top-level
class, and the module body itself. ``complexity`` is McCabe's cyclomatic number of a segment:
``1 + number of decision points`` (if/elif, for, while, except, with-less boolean operators,
comprehension ifs, ternaries, match cases, assert).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

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


def _function_segments(node: ast.AST, owner: str | None) -> list[Segment]:
    out = []
    for child in getattr(node, "body", []):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([d.lineno for d in child.decorator_list] + [child.lineno])
            name = f"{owner}.{child.name}" if owner else child.name
            out.append(
                Segment(name, start, child.end_lineno or child.lineno, _signature(child, owner),
                        complexity(child), owner is not None)
            )
    return out


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
    segments = _function_segments(tree, None)
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    for cls in classes:
        segments.extend(_function_segments(cls, cls.name))
    names = _defined_names(tree)
    public = tuple(sorted(n for n in names if not n.startswith("_")))
    return Analysis(
        module=module,
        names=frozenset(names),
        public=public,
        segments=tuple(sorted(segments, key=lambda s: s.start)),
        imports=_imported_names(tree),
        exports=module_exports(tree),
        lines=len(source.splitlines()),
        classes=len(classes),
    )
