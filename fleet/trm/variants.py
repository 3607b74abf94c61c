"""Input variants: a kept test with one input literal changed, without the model.

A kept test already builds inputs the code accepts; a branch it misses often wants that input
changed a little (an empty text or collection, zero, the next or the negated number, the other
boolean: test amplification by literal mutation, as DSpot does for Java) or of the wrong kind
(``None``, a number as text, a text where a list was), which reaches the guards code keeps for
bad input. An *input literal* of a test is a literal (number, string, boolean, or a
list/tuple/set/dict display) that is an argument of a call of the target's code (a top-level
name of the target, or one of its methods), or the value assigned to a name the test passes to
such a call (``text = "..."`` then ``parse(text)``), or a literal inside one of these: an item
of a display, an argument of a call that builds the input (``OrderedDict([("a", 1)])``), three
levels deep at most. A variant replaces one input literal by one of its :func:`replacements`,
feeds a call's output back as its first argument (``f(x)`` → ``f(f(x))``), or reads an
attribute of an object of the test's own class through the class (:func:`sites`);
each assertion becomes an oracle site (``assert <value> == None``, the value being the side that
is not a constant), so the loop mends it with the observed values like a sibling clone
(:mod:`fleet.trm.siblings`), or expects the exception the target raises on purpose, and judges
it like any test: kept only if it passes every rerun and adds coverage. Variants are named
``<test>__v<n>`` and the report marks kept ones ``variant``.

Tests are taken in the order of the first uncovered segment whose name (or public entry) they
call; each pass takes the next untried variant of each test in turn, up to the pass's limit.
A kept variant is a seed like the model's tests (it reached code they did not, as a fuzzer
keeps an input that adds coverage), down to :data:`MAX_DEPTH` changes from the model's test.
"""

from __future__ import annotations

import ast
import copy
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from fleet.analysis import Segment, functions
from fleet.trm.parse import Unit
from fleet.trm.oracle import NOT_LITERAL, is_literal, literal_value
from fleet.trm.siblings import Unexpect, callee, called

_CONTAINERS = (ast.List, ast.Tuple, ast.Set, ast.Dict)


def replacements(node: ast.expr) -> list[ast.expr]:
    """The variants of one input literal, in order: the *least* value of its kind (False for
    True, 0, 0.0, "", an empty display), then ``None``, then one value of *another kind* (a
    number's text ``str(v)``, a text ``s`` in a list ``[s]``, ``""`` for a display), then the
    other values of its kind (an int ``v`` → v + 1, v − 1, −v; a float → −v, v / 2; a text → ``s``
    without its last character, ``s`` twice, then its :func:`token_edits`; a display of n > 1
    items → its first item alone).
    None and another kind reach the guards code keeps for wrong input (``if x is None``,
    ``isinstance``, a dispatch on the type). Each differs from the original; none for other
    literals (None, bytes)."""
    value = literal_value(node)
    if isinstance(node, _CONTAINERS):
        return _shrunk(node) if value is not NOT_LITERAL else []
    if isinstance(value, bool):
        options: list[Any] = [not value, None]
    elif isinstance(value, int):
        options = [0, None, str(value), value + 1, value - 1, -value]
    elif isinstance(value, float):
        options = [0.0, None, str(value), -value, value / 2]
    elif isinstance(value, str):
        options = ["", None, [value], value[:-1], value + value, *token_edits(value)]
    else:
        return []
    unique = [v for i, v in enumerate(options) if _differs(v, value) and all(_differs(v, w) for w in options[:i])]
    return [_constant(v) for v in unique]


_TOKEN = re.compile(r"\w+|[^\w\s]+")
MAX_TOKEN_EDITS = 8
MAX_DEPTH = 2  # literal changes from a model's test to a variant


def token_edits(text: str) -> list[str]:
    """Texts one token away from ``text`` (a token is a run of word characters or of
    punctuation): each punctuation run deleted, each word doubled (``w`` → ``w w``), in the order
    they occur, at most :data:`MAX_TOKEN_EDITS`; none for a text of fewer than two tokens. A
    parser's other paths lie a token away from an input it accepts: a marker gone (``:param``
    → ``param``: no field list), a field with one more word (``:returns:`` → ``:returns
    returns:``)."""
    runs = list(_TOKEN.finditer(text))
    if len(runs) < 2:
        return []
    edits = []
    for run in runs[:MAX_TOKEN_EDITS]:
        start, end, token = run.start(), run.end(), run.group()
        edits.append(text[:start] + text[end:] if not token[0].isalnum() and token[0] != "_"
                     else text[:end] + " " + token + text[end:])
    return edits


def _differs(a: Any, b: Any) -> bool:
    return type(a) is not type(b) or a != b


def _constant(value: Any) -> ast.expr:
    """The expression of a replacement value (a one-text list is a display)."""
    return ast.List([ast.Constant(value[0])], ast.Load()) if isinstance(value, list) else ast.Constant(value)


def _shrunk(node: ast.expr) -> list[ast.expr]:
    """A display emptied, None, the empty text, and the display cut to its first item when it
    has more than one."""
    if isinstance(node, ast.Dict):
        count = len(node.keys)
        first = ast.Dict(node.keys[:1], node.values[:1])
        empty: ast.expr = ast.Dict([], [])
    elif isinstance(node, ast.Set):
        count = len(node.elts)
        first = ast.Set(node.elts[:1])
        empty = ast.Call(ast.Name("set", ast.Load()), [], [])
    else:
        count = len(node.elts)
        first = type(node)(node.elts[:1], ast.Load())
        empty = type(node)([], ast.Load())
    if count == 0:
        return [ast.Constant(None), ast.Constant("")]
    return [empty, ast.Constant(None), ast.Constant("")] + ([first] if count > 1 else [])


def callables(source: str, names: frozenset[str]) -> set[str]:
    """The short names a test may call the target's code by: its top-level names and methods."""
    return set(names) | {qualname.rpartition(".")[2] for qualname, _ in functions(ast.parse(source))}


def _is_input(node: ast.expr) -> bool:
    return is_literal(node) and not (isinstance(node, ast.Constant) and node.value is None)


def _within(node: ast.expr, depth: int = 3) -> list[ast.expr]:
    """``node`` when it is an input literal, and the input literals inside it, ``depth`` levels
    down: the items (keys and values) of a display, the arguments of a call that builds an
    input (``OrderedDict([("a", 1)])``, ``Decimal("1.5")``)."""
    found = [node] if _is_input(node) else []
    if depth <= 0:
        return found
    if isinstance(node, ast.Dict):
        inner: list[ast.expr] = [k for k in node.keys if k is not None] + node.values
    elif isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        inner = node.elts
    elif isinstance(node, ast.Call):
        inner = node.args + [k.value for k in node.keywords]
    else:
        inner = []
    return found + [n for item in inner for n in _within(item, depth - 1)]


def input_literals(tree: ast.AST, targets: set[str]) -> list[ast.expr]:
    """The test's input literals (see the module docstring) and those inside them
    (:func:`_within`), in source order."""
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and callee(n) in targets]
    args = [a for call in calls for a in call.args + [k.value for k in call.keywords]]
    passed = {a.id for a in args if isinstance(a, ast.Name)}
    values = [node.value for node in ast.walk(tree) if isinstance(node, ast.Assign) and len(node.targets) == 1
              and isinstance(node.targets[0], ast.Name) and node.targets[0].id in passed]
    found = [n for a in args + values if not (isinstance(a, ast.Call) and callee(a) in targets) for n in _within(a)]
    return sorted(found, key=lambda n: (n.lineno, n.col_offset))


Position = tuple[Any, Any, type]


def position(node: ast.AST) -> Position:
    """The key of a node in its tree: (line, column, node type)."""
    return getattr(node, "lineno", None), getattr(node, "col_offset", None), type(node)


class Replace(ast.NodeTransformer):
    """Replace each expression at one of the ``at`` positions (:func:`position`) by
    ``convert(expression)``, innermost first; a replacement is not visited again."""

    def __init__(self, at: set[Position], convert: Callable[[ast.expr], ast.expr]) -> None:
        self.at, self.convert = at, convert

    def generic_visit(self, node: ast.AST) -> ast.AST:
        node = super().generic_visit(node)
        return self.convert(node) if position(node) in self.at else node  # type: ignore[arg-type]


def compositions(tree: ast.AST, targets: set[str]) -> list[ast.Call]:
    """The test's calls of the target's code that have a positional argument, each distinct
    call once, in source order."""
    return _distinct([n for n in ast.walk(tree) if isinstance(n, ast.Call) and callee(n) in targets and n.args])


def _distinct(nodes: list) -> list:
    """``nodes`` in source order, the first of each text only."""
    unique = {ast.unparse(n): n for n in sorted(nodes, key=lambda n: (n.lineno, n.col_offset), reverse=True)}
    return sorted(unique.values(), key=lambda n: (n.lineno, n.col_offset))


def class_reads(tree: ast.AST, targets: set[str]) -> list[ast.Attribute]:
    """The attributes the test reads (not calls) of an object it builds by calling a class of its
    own (``obj = MyClass()`` then ``obj.y``; the callee is no name of the target's), each
    distinct read once, in source order."""
    built = {node.targets[0].id for node in ast.walk(tree) if isinstance(node, ast.Assign) and len(node.targets) == 1
             and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Call)
             and isinstance(node.value.func, ast.Name) and node.value.func.id not in targets}
    called_funcs = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return _distinct([n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Load)
                      and isinstance(n.value, ast.Name) and n.value.id in built and id(n) not in called_funcs])


def _through_class(read: ast.Attribute) -> ast.expr:
    """``obj.y`` → ``type(obj).y``."""
    return ast.Attribute(ast.Call(ast.Name("type", ast.Load()), [copy.deepcopy(read.value)], []), read.attr, ast.Load())


def sites(tree: ast.AST, targets: set[str]) -> list[tuple[ast.expr, list[ast.expr]]]:
    """Each place a variant may change, with its replacements in order: every input literal with
    its :func:`replacements`; the first argument of each of :func:`compositions` with the call
    itself: the output fed back as the input (``f(x)`` → ``f(f(x))``), which reaches the paths
    code keeps for values of its own making (a converter given what it returns, a parser given
    its result); each of :func:`class_reads` read through the class (``obj.y`` →
    ``type(obj).y``), which reaches a descriptor's class-level path (a property or decorator of
    the target's given no instance: ``__get__(None, cls)``)."""
    literal = [(node, replacements(node)) for node in input_literals(tree, targets)]
    composed = [(call.args[0], [copy.deepcopy(call)]) for call in compositions(tree, targets)]
    return literal + composed + [(read, [_through_class(read)]) for read in class_reads(tree, targets)]


def variant(unit: Unit, targets: set[str], index: int, choice: int, number: int) -> Unit | None:
    """``unit`` with its ``index``-th site (:func:`sites`) replaced by the site's ``choice``-th
    replacement and its assertions made oracle sites, named ``<name>__v<number>``; None when
    there is no such."""
    tree = ast.parse(unit.source)
    places = sites(tree, targets)
    if index >= len(places) or choice >= len(places[index][1]):
        return None
    node, options = places[index]
    tree = Replace({position(node)}, lambda _: options[choice]).visit(tree)
    return observed_copy(unit, tree, f"{unit.name}__v{number}", "variant")


def observed_copy(unit: Unit, tree: ast.Module, name: str, origin: str) -> Unit:
    """``unit`` as ``tree`` (its changed test), named ``name``, with every assertion on a
    non-literal made an oracle site, marked ``origin``."""
    tree = Unexpect(lambda node: not is_literal(node)).visit(tree)
    tree.body[0].name = name
    return replace(unit, name=name, source=ast.unparse(ast.fix_missing_locations(tree)) + "\n", origin=origin)


def _plan(unit: Unit, targets: set[str]) -> list[tuple[int, int]]:
    """Every (site index, replacement index) of ``unit``, the first replacement of each site
    first, then the second of each, and so on."""
    try:
        counts = [len(options) for _, options in sites(ast.parse(unit.source), targets)]
    except SyntaxError:
        return []
    return [(i, c) for c in range(max(counts, default=0)) for i, n in enumerate(counts) if c < n]


@dataclass
class Variants:
    """The target's callable names, and the variants made in this job."""

    targets: set[str]
    tried: set[tuple[str, int, int]] = field(default_factory=set)
    made: int = 0

    @classmethod
    def of(cls, source: str, names: frozenset[str]) -> "Variants":
        return cls(callables(source, names))

    def variants(self, kept: list[Unit], uncovered: list[Segment], limit: int,
                 support: Callable[[Unit], list[str]] = lambda unit: []) -> list[Unit]:
        """At most ``limit`` untried variants of the kept tests (variants of fewer than
        :data:`MAX_DEPTH` changes among them) that use an ``uncovered`` segment or its entry
        (themselves or through the ``support`` code they need: a class of the test's decorated
        by the target's), the tests of the first such segment first; one per test in turn."""
        queue = self._ordered([u for u in kept if u.name.startswith("test") and u.name.count("__v") < MAX_DEPTH],
                              uncovered, support)
        plans = {u.name: [p for p in _plan(u, self.targets) if (u.name, *p) not in self.tried] for u in queue}
        out: list[Unit] = []
        while len(out) < limit and any(plans.values()):
            for unit in queue:
                if plans[unit.name] and len(out) < limit:
                    index, choice = plans[unit.name].pop(0)
                    self.tried.add((unit.name, index, choice))
                    self.made += 1
                    made = variant(unit, self.targets, index, choice, self.made)
                    if made is not None:
                        out.append(made)
        return out

    @staticmethod
    def _ordered(tests: list[Unit], uncovered: list[Segment], support: Callable[[Unit], list[str]]) -> list[Unit]:
        """The tests that use an uncovered segment (:func:`reached_by`, :func:`used`), by the
        first such segment."""
        rank: dict[str, int] = {}
        for unit in tests:
            try:
                names = used("\n\n".join([*support(unit), unit.source]))
            except SyntaxError:
                continue
            for i, seg in enumerate(uncovered):
                if names & reached_by(seg):
                    rank[unit.name] = i
                    break
        return sorted((u for u in tests if u.name in rank), key=lambda u: rank[u.name])


def used(source: str) -> set[str]:
    """Names a test calls (``f(...)``, ``x.f(...)``) or otherwise names (a decorator, a base class)."""
    return called(source) | {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)}


def reached_by(seg: Segment) -> set[str]:
    """Names through which a test reaches ``seg``: its short name, its entries' and, for a special
    method (``__get__``, run by Python, never called by name), its class's."""
    owner, _, short = seg.name.rpartition(".")
    names = {short, *(e.rpartition(".")[2] for e in seg.entry)}
    if owner and short.startswith("__") and short.endswith("__"):
        names.add(owner.rpartition(".")[2])
    return names
