"""Sibling clones: a kept test re-aimed at an uncovered callable of the same shape, without the model.

Code often has families of callables that take the same parameters: ``add(self, other)``,
``subtract(self, other)`` and ``lt(self, other)`` on one class, or ``encode(data)`` and
``decode(data)`` in one module. A kept test that calls one member already builds valid receivers
and arguments, so re-aiming its calls at an uncovered sibling (``m.add(n)`` → ``m.subtract(n)``)
usually runs the sibling. Its expectations were worked out for the other callable, so each
``assert`` on a re-aimed call is made an oracle site, ``assert <value> == None``, and the loop
mends the clone like a model's test: the oracle asserts the observed value (or the raise is
expected, or the test is cut). It is then judged like any other test: kept only if it passes
every rerun and adds coverage.

Sibling callables are callables of one class, or both at module level, with the same parameter
names in the same order (``self``/``cls`` aside) and at least one parameter; dunder methods are
left out. A clone renames every call of the member the test uses (``x.add(...)`` or
``add(...)``) and is named ``<test>__<sibling>``.

Sibling classes are top-level classes constructed alike (the same ``__init__`` parameters, or
the same ``NamedTuple``/``dataclass`` fields, their own or inherited from a class of the module)
that are related (one inherits from the other, or both from a common class of the module:
``Section`` and ``ParamSection``) or parallel (sharing at least half of the smaller one's method
names: ``SomeMoney``/``SomePrice``, ``NoneMoney``/``NonePrice``). A
clone renames the class, and a module-level instance of it (``NoMoney = NoneMoney()``) to the
sibling's, and is named ``<test>__<Class>``.

For each uncovered callable, at most one clone is made per loop pass: from a sibling callable
if a kept test calls one, else from a sibling class of its owner; never from the same test to the
same sibling twice.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Callable

from fleet.analysis import functions
from fleet.trm.parse import Unit

_BOUND = ("self", "cls")


def _shape(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[str, ...]:
    """Parameter names in order, ``self``/``cls`` left out, ``*args``/``**kw`` marked."""
    args = fn.args
    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    if names and names[0] in _BOUND and fn.name != "__new__":
        names = names[1:]
    names += [f"*{args.vararg.arg}"] if args.vararg else []
    names += [f"**{args.kwarg.arg}"] if args.kwarg else []
    return tuple(names)


def families(source: str) -> dict[str, list[str]]:
    """Qualified name → the qualified names of its siblings (itself excluded), for every callable
    that has at least one sibling."""
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = defaultdict(list)
    for qualname, fn in functions(ast.parse(source)):
        shape = _shape(fn)
        if shape and not (fn.name.startswith("__") and fn.name.endswith("__")):
            groups[(qualname.rpartition(".")[0], shape)].append(qualname)
    return {q: [o for o in members if o != q] for members in groups.values() if len(members) > 1 for q in members}


def callee(node: ast.expr) -> str:
    """The name a call (or a callable expression) invokes: ``f`` of ``f(...)`` and ``x.f(...)``, else ""."""
    func = node.func if isinstance(node, ast.Call) else node
    return getattr(func, "attr", None) or getattr(func, "id", "")


def _fields(node: ast.ClassDef) -> tuple[str, ...] | None:
    """The fields of a ``NamedTuple("X", [("a", T), …])``/``namedtuple("X", "a b")`` base or of a
    ``@dataclass`` (its annotated attributes); None for other classes."""
    for base in node.bases:
        if isinstance(base, ast.Call) and callee(base) in ("NamedTuple", "namedtuple") and len(base.args) >= 2:
            spec = base.args[1]
            if isinstance(spec, ast.Constant) and isinstance(spec.value, str):
                return tuple(spec.value.replace(",", " ").split())
            items = [e.elts[0] if isinstance(e, ast.Tuple) and e.elts else e for e in getattr(spec, "elts", [])]
            return tuple(str(getattr(e, "value", "?")) for e in items)
    if any(callee(d) == "dataclass" for d in node.decorator_list):
        return tuple(a.target.id for a in node.body if isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name))
    return None


def _own_shape(node: ast.ClassDef) -> tuple[str, ...] | None:
    """How the class body says it is constructed: its ``__init__`` parameters, or its fields."""
    init = next((f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None)
    if init is not None:
        return ("__init__", *_shape(init))
    fields = _fields(node)
    return ("fields", *fields) if fields is not None else None


def _methods(node: ast.ClassDef) -> set[str]:
    return {f.name for f in node.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
            and not (f.name.startswith("__") and f.name.endswith("__"))}


@dataclass(frozen=True)
class _Class:
    shape: tuple[str, ...]  # its own, else inherited from a base in the module, else ()
    methods: set[str]
    ancestors: frozenset[str]  # classes of the module it inherits from


def _classes(tree: ast.Module) -> dict[str, _Class]:
    nodes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}

    def bases(name: str) -> list[str]:
        return [b.id for b in nodes[name].bases if isinstance(b, ast.Name) and b.id in nodes and b.id != name]

    def ancestors(name: str, seen: frozenset[str] = frozenset()) -> frozenset[str]:
        direct = [b for b in bases(name) if b not in seen]
        return frozenset(direct).union(*(ancestors(b, seen | {name, *direct}) for b in direct))

    def shape(name: str, seen: frozenset[str] = frozenset()) -> tuple[str, ...]:
        own = _own_shape(nodes[name])
        if own is not None:
            return own
        inherited = [b for b in bases(name) if b not in seen]
        return shape(inherited[0], seen | {name}) if inherited else ()

    return {name: _Class(shape(name), _methods(node), ancestors(name)) for name, node in nodes.items()}


def _kin(name_a: str, a: _Class, name_b: str, b: _Class) -> bool:
    """Built alike, and either related in the module (one inherits from the other, or both from
    a common class) or sharing at least half of the smaller one's method names, and at least two."""
    related = name_a in b.ancestors or name_b in a.ancestors or bool(a.ancestors & b.ancestors)
    shared = len(a.methods & b.methods)
    return a.shape == b.shape and (related or shared >= max(2, min(len(a.methods), len(b.methods)) / 2))


def class_families(source: str) -> dict[str, list[str]]:
    """Class → its sibling classes among the module's top-level classes (:func:`_kin`)."""
    info = _classes(ast.parse(source))
    out: dict[str, list[str]] = {}
    for a, about_a in info.items():
        for b, about_b in info.items():
            if a != b and _kin(a, about_a, b, about_b):
                out.setdefault(a, []).append(b)
    return out


def instances(source: str) -> dict[str, list[str]]:
    """Class → the module-level names bound to an instance made without arguments
    (``NoMoney = NoneMoney()``)."""
    out: dict[str, list[str]] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and not node.value.args \
                and not node.value.keywords and isinstance(node.value.func, ast.Name):
            out.setdefault(node.value.func.id, []).extend(t.id for t in node.targets if isinstance(t, ast.Name))
    return out


def _short(qualname: str) -> str:
    return qualname.rpartition(".")[2]


@lru_cache(maxsize=4096)
def called(source: str) -> frozenset[str]:
    """Names the test calls, as ``f(...)`` or ``x.f(...)`` (remembered per source: clones ask it
    of every kept test for every uncovered name)."""
    return frozenset(callee(node) for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)) - {""}


class _Retarget(ast.NodeTransformer):
    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def visit_Call(self, node: ast.Call) -> ast.Call:
        self.generic_visit(node)
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == self.old:
            func.attr = self.new
        elif isinstance(func, ast.Name) and func.id == self.old:
            func.id = self.new
        return node


def _calls(node: ast.AST, name: str) -> bool:
    return any(isinstance(n, ast.Call) and callee(n) == name for n in ast.walk(node))


def _names(node: ast.AST, names: set[str]) -> bool:
    return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(node))


def _method_call(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) for n in ast.walk(node))


class Unexpect(ast.NodeTransformer):
    """Each ``assert`` that any of ``marks`` holds for becomes ``assert <value> == None``: an
    oracle site whose expectation (worked out for other code) the observed value replaces. The
    value is, for a one-operator comparison, the one side that the first mark able to tell the
    sides apart holds for; else the whole test."""

    def __init__(self, *marks: Callable[[ast.AST], bool]) -> None:
        self.marks = marks

    def _value(self, test: ast.expr) -> ast.expr:
        if isinstance(test, ast.Compare) and len(test.ops) == 1:
            for mark in self.marks:
                sides = [side for side in (test.left, test.comparators[0]) if mark(side)]
                if len(sides) == 1:
                    return sides[0]
        return test

    def visit_Assert(self, node: ast.Assert) -> ast.Assert:
        if not any(mark(node.test) for mark in self.marks):
            return node
        return ast.Assert(ast.Compare(self._value(node.test), [ast.Eq()], [ast.Constant(None)]), None)


class _Rename(ast.NodeTransformer):
    """Names read in the test, renamed by ``mapping``."""

    def __init__(self, mapping: dict[str, str]) -> None:
        self.mapping = mapping

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if isinstance(node.ctx, ast.Load) and node.id in self.mapping:
            node.id = self.mapping[node.id]
        return node


def _clone(unit: Unit, tree: ast.Module, suffix: str) -> Unit:
    name = f"{unit.name}__{suffix}"
    tree.body[0].name = name
    return replace(unit, name=name, source=ast.unparse(ast.fix_missing_locations(tree)) + "\n", origin="clone")


def retarget(unit: Unit, old: str, new: str) -> Unit:
    """``unit`` with every call of ``old`` made a call of ``new``, its assertions on such calls
    turned into oracle sites (:class:`Unexpect`), named ``<name>__<new>``."""
    tree = _Retarget(old, new).visit(ast.parse(unit.source))
    return _clone(unit, Unexpect(lambda node: _calls(node, new)).visit(tree), new)


def swap(unit: Unit, mapping: dict[str, str], new: str) -> Unit:
    """``unit`` with the names of ``mapping`` (a class and its module-level instances) replaced by
    their siblings', each assertion that calls a method or names them turned into an oracle site
    (:class:`Unexpect`: the side that calls a method, else the side that names them), named
    ``<name>__<new>``."""
    tree = _Rename(mapping).visit(ast.parse(unit.source))
    swapped = set(mapping.values())
    return _clone(unit, Unexpect(_method_call, lambda node: _names(node, swapped)).visit(tree), new)


@dataclass
class Siblings:
    """The target's callable and class families, and the clones made in this job, as (test,
    sibling callable) and (test, sibling class) pairs."""

    family: dict[str, list[str]]
    kin: dict[str, list[str]] = field(default_factory=dict)
    instances: dict[str, list[str]] = field(default_factory=dict)
    tried: set[tuple[str, str]] = field(default_factory=set)

    @classmethod
    def of(cls, source: str) -> "Siblings":
        return cls(families(source), class_families(source), instances(source))

    def clones(self, kept: list[Unit], uncovered: list[str], limit: int) -> list[Unit]:
        """At most ``limit`` clones, one for each of the ``uncovered`` qualified names in order:
        re-aimed from the shortest kept test that calls a sibling callable (:func:`retarget`),
        else swapped from a kept test that uses a sibling class, preferring one that calls the
        same method, then the shortest (:func:`swap`). Never the same pair twice."""
        tests = [u for u in kept if u.name.startswith("test")]
        out: list[Unit] = []
        for target in uncovered:
            clone = self._by_callable(target, tests) or self._by_class(target, tests)
            if clone is not None:
                out.append(clone)
            if len(out) == limit:
                break
        return out

    def _by_callable(self, target: str, tests: list[Unit]) -> Unit | None:
        new = _short(target)
        sources = [(len(u.source), u, _short(s)) for u in tests for s in self.family.get(target, ())
                   if _short(s) in called(u.source) and (u.name, new) not in self.tried]
        if not sources:
            return None
        _, unit, old = min(sources, key=lambda item: item[0])
        self.tried.add((unit.name, new))
        return retarget(unit, old, new)

    def _by_class(self, target: str, tests: list[Unit]) -> Unit | None:
        owner, _, method = target.rpartition(".")
        for sibling in self.kin.get(owner, ()):
            mapping = {sibling: owner}
            mine, theirs = self.instances.get(sibling, []), self.instances.get(owner, [])
            if len(mine) == 1 and len(theirs) == 1:
                mapping[mine[0]] = theirs[0]
            sources = [u for u in tests if (u.name, owner) not in self.tried and _names(ast.parse(u.source), set(mapping))]
            if sources:
                unit = min(sources, key=lambda u: (method not in called(u.source), len(u.source)))
                self.tried.add((unit.name, owner))
                return swap(unit, mapping, owner)
        return None
