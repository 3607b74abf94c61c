"""Typed arguments: a test with every argument the code cannot use replaced by a value of the
parameter's annotated type, without the model.

A small model fills an argument it cannot build with ``None`` or a text: ``Money.of('USD', 10,
None)`` where the signature reads ``of(ccy: Optional[Currency], qty: Optional[Decimal], dov:
Optional[Date])``. The test passes, through the code's guard for missing values, and the model
copies it from then on; the code behind the guard stays uncovered. Here each call of the
target's code (a function, a method by its short name, a class by its ``__init__``; not a
method called on a class from elsewhere) has its arguments matched to the parameters, and an
argument is replaced by a :class:`Sample` of the parameter's annotation when it is ``None`` or
a literal that is not of that type (a text for a ``Currency``, an int for a ``Decimal``:
``Decimal('10')``, a number's value kept). An annotation is unwrapped from ``Optional[X]``,
``Union[X, None]``, ``X | None`` and a string, and resolved through the target's imports and
the bundled module they name, down to a class of the bundle or a standard type (``Date`` →
``from datetime import date as Date`` → ``datetime.date``).

Each test is retyped once: every call at once (the calls of one test build values for each
other), as ``<test>__t<n>`` (origin ``typed``) whose assertions become oracle sites, mended with
the observed values and judged like any test: kept only if it passes every rerun and adds
coverage. Names a sample uses (``datetime``, ``Currency``) are imported when the test module
is rendered (:func:`fleet.trm.repair.repair_imports`).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from fleet.analysis import functions
from fleet.trm.context import bundled_modules, definition
from fleet.trm.oracle import NOT_LITERAL, is_literal, literal_value
from fleet.trm.parse import Unit
from fleet.trm.siblings import callee
from fleet.trm.variants import observed_copy

BUILTIN = {"int": "1", "float": "1.5", "str": "'a'", "bytes": "b'a'", "bool": "True"}
FITS = {"int": (int,), "float": (int, float), "str": (str,), "bytes": (bytes,), "bool": (bool,)}
STANDARD = {
    "datetime.date": "datetime.date(2024, 1, 31)",
    "datetime.datetime": "datetime.datetime(2024, 1, 31, 12, 30)",
    "datetime.time": "datetime.time(12, 30)",
    "datetime.timedelta": "datetime.timedelta(days=1)",
    "decimal.Decimal": "decimal.Decimal('1.5')",
    "fractions.Fraction": "fractions.Fraction(1, 3)",
    "pathlib.Path": "pathlib.Path('a.txt')",
}
VALUED = {"decimal.Decimal", "fractions.Fraction"}  # built from a number's or a text's value


def unwrap(annotation: ast.expr | None) -> str:
    """The dotted name an annotation stands for, ``Optional``/``Union`` with ``None`` and string
    quotes removed; "" for anything else (a union of two types, a generic, no annotation)."""
    node = annotation
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            node = ast.parse(node.value, mode="eval").body
        except SyntaxError:
            return ""
    if isinstance(node, ast.Subscript) and ast.unparse(node.value).rpartition(".")[2] in ("Optional", "Union"):
        inner = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        rest = [n for n in inner if not (isinstance(n, ast.Constant) and n.value is None)]
        return unwrap(rest[0]) if len(rest) == 1 else ""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        rest = [n for n in (node.left, node.right) if not (isinstance(n, ast.Constant) and n.value is None)]
        return unwrap(rest[0]) if len(rest) == 1 else ""
    text = ast.unparse(node) if isinstance(node, (ast.Name, ast.Attribute)) else ""
    return text if all(part.isidentifier() for part in text.split(".")) else ""


@dataclass(frozen=True)
class Sample:
    """How to build a value of one type: ``expr``; ``valued``: from a literal's value instead
    (``decimal.Decimal``); ``fits``: the literal kinds already of the type."""

    expr: str
    valued: str = ""
    fits: tuple[type, ...] = ()

    def of(self, node: ast.expr) -> ast.expr | None:
        """The replacement of argument ``node``; None when it already fits."""
        value = literal_value(node) if is_literal(node) else NOT_LITERAL
        if value is NOT_LITERAL or (value is not None and isinstance(value, self.fits)):
            return None
        if self.valued and _numeric(value):
            return ast.parse(f"{self.valued}({str(value)!r})", mode="eval").body
        return ast.parse(self.expr, mode="eval").body


def _numeric(value: object) -> bool:
    """An int or float (not a bool), or a text that reads as one."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def _doctest_call(cls: ast.ClassDef) -> str:
    """The first call building ``cls`` in its docstring's examples (``>>> USD = Currency.of(…)``)."""
    for line in (ast.get_docstring(cls) or "").splitlines():
        text = line.strip().removeprefix(">>>").strip() if line.strip().startswith(">>>") else ""
        try:
            body = ast.parse(text).body if text else []
        except SyntaxError:
            continue
        node = body[0] if body else None  # a comment-only example parses to nothing
        expr = node.value if isinstance(node, (ast.Assign, ast.Expr)) else None
        if isinstance(expr, ast.Call) and ast.unparse(expr.func).split(".")[0] == cls.name:
            return ast.unparse(expr)
    return ""


def _class_sample(cls: ast.ClassDef) -> Sample | None:
    """A doctest's call building the class, else ``Cls()`` when its ``__init__`` needs no argument."""
    if call := _doctest_call(cls):
        return Sample(call)
    init = next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    if init is None:
        return Sample(f"{cls.name}()") if not cls.bases else None
    required = len(init.args.args) - 1 - len(init.args.defaults) + sum(d is None for d in init.args.kw_defaults)
    return Sample(f"{cls.name}()") if required <= 0 else None


@dataclass
class Resolver:
    """Resolves annotation names of the target (``tree``) through its imports
    (``imports``: name → absolute import statement) and the bundled ``files``."""

    tree: ast.Module
    imports: dict[str, str]
    files: dict[str, str]
    _trees: dict[str, ast.Module] = field(default_factory=dict)
    _paths: dict[str, str] | None = None

    def sample(self, dotted: str) -> Sample | None:
        """How to build a value of the type named ``dotted`` in the target; None for an unknown
        type or no name ("")."""
        if not dotted:
            return None
        if dotted in BUILTIN:
            return Sample(BUILTIN[dotted], fits=FITS[dotted])
        root, _, rest = dotted.partition(".")
        node = definition(self.tree, root)
        if isinstance(node, ast.ClassDef) and not rest:
            return _class_sample(node)
        statement = self.imports.get(root)
        return self._imported(statement, root, rest, depth=2) if statement else None

    def _imported(self, statement: str, name: str, rest: str, depth: int) -> Sample | None:
        node = ast.parse(statement).body[0]
        if isinstance(node, ast.Import):
            return self._standard(".".join(filter(None, [name, rest])))
        if not isinstance(node, ast.ImportFrom) or not node.module:
            return None
        original = next((a.name for a in node.names if (a.asname or a.name) == name), name)
        tree = self._tree(node.module)
        if tree is None:
            return self._standard(".".join(filter(None, [node.module, original, rest])))
        found = definition(tree, original)
        if isinstance(found, ast.ClassDef) and not rest:
            return _class_sample(found)
        if isinstance(found, (ast.Import, ast.ImportFrom)) and depth > 0:
            return self._imported(ast.unparse(found), original, rest, depth - 1)
        return None

    @staticmethod
    def _standard(qualified: str) -> Sample | None:
        if qualified not in STANDARD:
            return None
        return Sample(STANDARD[qualified], valued=qualified if qualified in VALUED else "")

    def _tree(self, module: str) -> ast.Module | None:
        if self._paths is None:
            self._paths = bundled_modules(self.files)
        path = self._paths.get(module)
        if path is None:
            return None
        if module not in self._trees:
            try:
                self._trees[module] = ast.parse(self.files[path])
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                return None
        return self._trees.get(module)


def _parameters(fn: ast.FunctionDef | ast.AsyncFunctionDef, is_method: bool) -> list[ast.arg]:
    """The parameters a call passes: without ``self``/``cls`` for a method (not a staticmethod)."""
    params = fn.args.posonlyargs + fn.args.args
    static = any(ast.unparse(d) == "staticmethod" for d in fn.decorator_list)
    return (params[1:] if is_method and not static else params) + fn.args.kwonlyargs


def signatures(resolver: Resolver) -> dict[str, list[tuple[str, Sample | None]]]:
    """Call name → its parameters with the :class:`Sample` of each annotation (None: unknown),
    for every function, method (by its short name; the first of a name wins) and class (by its
    ``__init__``) of the target with at least one known sample."""
    table: dict[str, list[tuple[str, Sample | None]]] = {}
    for qualname, fn in functions(resolver.tree):
        owner, _, short = qualname.rpartition(".")
        name = owner if short == "__init__" and owner else short
        if name in table:
            continue
        params = [(a.arg, resolver.sample(unwrap(a.annotation))) for a in _parameters(fn, bool(owner))]
        if any(sample for _, sample in params):
            table[name] = params
    return table


def _foreign(call: ast.Call, names: frozenset[str]) -> bool:
    """A method called on a class the target does not define (``Currency.of(...)`` in a test of
    ``Money.of``): a name alike, another signature."""
    receiver = call.func.value if isinstance(call.func, ast.Attribute) else None
    return isinstance(receiver, ast.Name) and receiver.id[:1].isupper() and receiver.id not in names


class _Retype(ast.NodeTransformer):
    """Replace the arguments of calls in ``table`` that their parameter's sample does not fit;
    not in calls of classes other than the target's ``names``."""

    def __init__(self, table: dict[str, list[tuple[str, Sample | None]]], names: frozenset[str]) -> None:
        self.table, self.names, self.changed = table, names, 0

    def visit_Call(self, node: ast.Call) -> ast.Call:
        self.generic_visit(node)
        params = self.table.get(callee(node))
        if not params or _foreign(node, self.names) or any(isinstance(a, ast.Starred) for a in node.args):
            return node
        samples = dict(params)
        node.args = [self._fit(arg, params[i][1] if i < len(params) else None) for i, arg in enumerate(node.args)]
        for kw in node.keywords:
            kw.value = self._fit(kw.value, samples.get(kw.arg or ""))
        return node

    def _fit(self, arg: ast.expr, sample: Sample | None) -> ast.expr:
        new = sample.of(arg) if sample else None
        self.changed += new is not None
        return new if new is not None else arg


def typed(unit: Unit, table: dict[str, list[tuple[str, Sample | None]]], names: frozenset[str],
          number: int) -> Unit | None:
    """``unit`` with every unfit argument of its calls replaced (see the module docstring), named
    ``<test>__t<number>``; None when no argument changes. ``names``: the target's top-level names."""
    try:
        tree = ast.parse(unit.source)
    except SyntaxError:
        return None
    retype = _Retype(table, names)
    tree = retype.visit(tree)
    if not retype.changed:
        return None
    return observed_copy(unit, tree, f"{unit.name}__t{number}", "typed")


@dataclass
class TypedArguments:
    """The target's call signatures with samples, its top-level names, and the tests retyped in
    this job."""

    table: dict[str, list[tuple[str, Sample | None]]]
    names: frozenset[str] = frozenset()
    tried: set[str] = field(default_factory=set)
    made: int = 0

    @classmethod
    def of(cls, source: str, imports: dict[str, str], files: dict[str, str], names: frozenset[str]) -> "TypedArguments":
        """``imports``: the target's imported names → absolute import statements; ``names``: the
        names it defines."""
        return cls(signatures(Resolver(ast.parse(source), imports, files)), names)

    def typed(self, units: list[Unit], limit: int) -> list[Unit]:
        """At most ``limit`` retyped tests of ``units`` (each test's source once)."""
        out: list[Unit] = []
        for unit in units:
            if len(out) >= limit or unit.source in self.tried or not self.table:
                continue
            self.tried.add(unit.source)
            made = typed(unit, self.table, self.names, self.made + 1)
            if made is not None:
                self.made += 1
                out.append(made)
        return out
