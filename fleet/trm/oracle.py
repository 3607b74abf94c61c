"""Oracle repair: fix a failing test's expected values from the target's observed behaviour.

Small models often call the code correctly but guess the expected value wrong. For a test that
failed on an assertion, each ``assert <expr> == <constant>`` (either side; a constant is a
literal or arithmetic on literals, and a name assigned once to one, ``expected = [1, 2]``, counts
as one) and each ``with pytest.raises(E): <expr>`` that did not raise is turned into an
observation of ``<expr>``; the probe runs ``PROBE_RUNS`` times in the sandbox (each run with its
own hash seed) and writes ``repr(value)`` per site to ``$HOME/observed.jsonl``. A site is
repaired when, within each run, every observation of it gave the same repr of at most
``MAX_REPR`` characters. If the runs agree, a repr that is a Python literal replaces the
constant side (the ``raises`` block becomes ``assert <expr> == <literal>``, and statements that
read its ``as e`` are dropped); any other repr (``NamedTuple(a=1)``, ``Just[3]``) is asserted as
text, ``assert repr(<expr>) == '<repr>'``. If the runs differ only in some numbers (a cached
string hash, an id, a time), the repr is asserted with those numbers masked,
``assert re.fullmatch('Money\\(qty=5, hash=-?\\d+\\)', repr(<expr>))`` (:func:`masked`); else
the site is not repaired. A repr showing a memory address is never used as text; when it is
an object's default repr (``<pkg.mod.Rate object at 0x7f…>`` in every run) its class is
asserted instead, ``assert type(<expr>).__name__ == 'Rate'``. A test is
repaired when all its sites were and its probe passed, or when its probe failed after at least
one site was observed (``assert len(r) == 1`` observed as 0, then ``r[0]`` raised): the
observed sites are repaired, the others left, and the loop may mend the test once more before
the statement that still fails. The repaired test is then judged like any other (5 reruns,
coverage gain). Such tests pin down the current behaviour (regression oracles), and the report
marks them ``oracle: observed``.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fleet.sandbox import OBSERVED_FILE, Sandbox
from fleet.trm.parse import Unit
from fleet.trm.repair import Context
from fleet.trm.suite import Suite

MAX_REPR = 300
PROBE_RUNS = 2  # a value that differs between runs (hash seed, time, id) is masked or not used
_NUMBER = re.compile(r"(-?\d+)")
_DEFAULT_REPR = re.compile(r"<(?:[\w.]+\.)?(\w+) object at 0x[0-9a-fA-F]+>")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+|0x[0-9a-fA-F]{8,}")  # default reprs, ids: differ per run
OBSERVE = "__fleet_observe__"
_HELPER = f'''
def {OBSERVE}(key, value):
    import json, os
    with open(os.path.join(os.environ["HOME"], "{OBSERVED_FILE}"), "a") as fh:
        fh.write(json.dumps([key, repr(value)]) + "\\n")
    return value
'''


@dataclass(frozen=True)
class Observation:
    """What a site's expression gave: a literal to compare with, or (``by_repr``) its repr text."""

    value: ast.expr
    by_repr: bool = False
    pattern: bool = False  # ``value`` is a regular expression the repr must match in full
    by_type: bool = False  # ``value`` is the name of the value's class (its repr showed an address)


NOT_LITERAL = object()


def literal_value(node: ast.AST) -> Any:
    """The value of a literal expression, else ``NOT_LITERAL``."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return NOT_LITERAL


def is_literal(node: ast.AST) -> bool:
    return literal_value(node) is not NOT_LITERAL


_CONSTANT_NODES = (ast.Constant, ast.BinOp, ast.UnaryOp, ast.Tuple, ast.List, ast.Set, ast.Dict,
                   ast.operator, ast.unaryop, ast.expr_context)


def _is_constant(node: ast.AST) -> bool:
    """A literal, or arithmetic on literals only (``(16 // 16 + 7) * 16``): a value the model
    worked out, which the observed one may replace."""
    return all(isinstance(n, _CONSTANT_NODES) for n in ast.walk(node))


def literal_names(tree: ast.AST) -> set[str]:
    """Names assigned exactly once in ``tree``, to a constant (``expected = [1, 2]``, ``n = 4 * 8``)."""
    counts: dict[str, int] = {}
    literal: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            counts[node.id] = counts.get(node.id, 0) + 1
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if _is_constant(node.value):
                literal.add(node.targets[0].id)
    return {name for name in literal if counts.get(name) == 1}


def _observed_side(node: ast.Assert, literals: set[str]) -> tuple[ast.expr, str] | None:
    """For ``assert a == b`` with exactly one constant side (:func:`_is_constant`, or a name bound
    once to one): (the other side, which side is constant)."""
    test = node.test
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return None
    left, right = test.left, test.comparators[0]

    def fixed(side: ast.expr) -> bool:
        return _is_constant(side) or (isinstance(side, ast.Name) and side.id in literals)

    if fixed(right) and not fixed(left):
        return left, "right"
    if fixed(left) and not fixed(right):
        return right, "left"
    return None


def _raises_expr(node: ast.With) -> ast.expr | None:
    """``with pytest.raises(...): <single expression>`` → that expression."""
    if len(node.items) != 1 or len(node.body) != 1 or not isinstance(node.body[0], ast.Expr):
        return None
    call = node.items[0].context_expr
    if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "raises":
        return node.body[0].value
    return None


class _Sites(ast.NodeTransformer):
    """Numbers the repairable sites; in probe mode replaces each by an observation call, in
    repair mode by an assertion of the observed literal."""

    def __init__(self, unit: str, literals: set[str], values: dict[str, Observation] | None = None) -> None:
        self.unit, self.literals, self.values, self.count, self.missing = unit, literals, values, 0, 0
        self.captured: set[str] = set()

    def _key(self) -> str:
        self.count += 1
        return f"{self.unit}:{self.count}"

    def _observe(self, key: str, expr: ast.expr) -> ast.stmt:
        call = ast.Call(ast.Name(OBSERVE, ast.Load()), [ast.Constant(key), expr], [])
        return ast.Expr(call)

    def _assert_equal(self, expr: ast.expr, seen: Observation, literal_side: str) -> ast.stmt:
        if seen.by_type:
            name = ast.Attribute(ast.Call(ast.Name("type", ast.Load()), [expr], []), "__name__", ast.Load())
            return ast.Assert(ast.Compare(name, [ast.Eq()], [seen.value]))
        if seen.pattern:
            shown = ast.Call(ast.Name("repr", ast.Load()), [expr], [])
            match = ast.Attribute(ast.Name("re", ast.Load()), "fullmatch", ast.Load())
            return ast.Assert(ast.Call(match, [seen.value, shown], []))
        if seen.by_repr:
            expr = ast.Call(ast.Name("repr", ast.Load()), [expr], [])
        pair = (expr, seen.value) if literal_side == "right" else (seen.value, expr)
        return ast.Assert(ast.Compare(pair[0], [ast.Eq()], [pair[1]]))

    def _site(self, node: ast.stmt, expr: ast.expr, literal_side: str) -> ast.stmt:
        key = self._key()
        if self.values is None:
            return self._observe(key, expr)
        if key not in self.values:
            self.missing += 1
            return node
        return self._assert_equal(expr, self.values[key], literal_side)

    def visit_Assert(self, node: ast.Assert) -> ast.stmt:
        found = _observed_side(node, self.literals)
        return self._site(node, *found) if found else node

    def visit_With(self, node: ast.With) -> ast.stmt:
        expr = _raises_expr(node)
        if expr is None:
            return self.generic_visit(node)
        out = self._site(node, expr, "right")
        captured = node.items[0].optional_vars
        if out is not node and isinstance(captured, ast.Name):
            self.captured.add(captured.id)  # ``as e``: there is no exception to inspect any more
        return out


def _without_uses(tree: ast.Module, names: set[str]) -> ast.Module:
    """Drop the statements of each function in ``tree`` that read any of ``names``."""
    if not names:
        return tree
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            fn.body = [stmt for stmt in fn.body
                       if not any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(stmt))] or [ast.Pass()]
    return tree


@dataclass(frozen=True)
class Probe:
    """A failed unit, and its probe version (None when it has no repairable site)."""

    unit: Unit
    probe: Unit | None


def make_probe(unit: Unit) -> Probe:
    tree = ast.parse(unit.source)
    sites = _Sites(unit.name, literal_names(tree))
    probed = ast.fix_missing_locations(_without_uses(sites.visit(tree), sites.captured))
    if sites.count == 0:
        return Probe(unit, None)
    return Probe(unit, Unit(unit.name, ast.unparse(probed), unit.needs | {OBSERVE}, unit.asserts))


def as_observation(text: str) -> Observation | None:
    """The observation a repr stands for: a literal, else its text; None when it is longer than
    ``MAX_REPR`` or shows a memory address (it would differ in the next run)."""
    if len(text) > MAX_REPR or _ADDRESS.search(text):
        return None
    try:
        node = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        node = None
    if node is not None and is_literal(node):
        return Observation(node)
    return Observation(ast.Constant(text), by_repr=True)


def masked(reprs: Sequence[str]) -> str | None:
    """A regular expression that ``reprs`` all match in full when they differ only in integer
    runs: the text between numbers escaped, a number equal in all kept, the others ``-?\\d+``.
    None when the text between numbers differs, or when nothing but numbers would be left."""
    pieces = [_NUMBER.split(text) for text in reprs]
    if len({len(p) for p in pieces}) != 1 or len({tuple(p[0::2]) for p in pieces}) != 1:
        return None
    if not "".join(pieces[0][0::2]).strip():
        return None
    out = []
    for i, column in enumerate(zip(*pieces)):
        same = len(set(column)) == 1
        out.append(re.escape(column[0]) if same or i % 2 == 0 else r"-?\d+")
    return "".join(out)


def _agreed(text: str) -> dict[str, str]:
    """Site key → the repr observed in one run, for sites whose observations in that run agree."""
    seen: dict[str, set[str]] = {}
    for line in text.splitlines():
        try:
            key, value = json.loads(line)
        except (ValueError, TypeError):
            continue
        if isinstance(key, str) and isinstance(value, str):
            seen.setdefault(key, set()).add(value)
    return {key: next(iter(values)) for key, values in seen.items() if len(values) == 1}


def parse_observations(*runs: str) -> dict[str, Observation]:
    """Site key → its observation, from the observed text of each run: for a site each run saw
    with one agreeing repr, the value when all runs agree (:func:`as_observation`), else the
    repr with the numbers that differ masked (:func:`masked`) when it fits ``MAX_REPR``; the
    class name when every run saw a default object repr of one class."""
    per_run = [_agreed(text) for text in runs]
    out: dict[str, Observation] = {}
    for key in set.intersection(*(set(seen) for seen in per_run)) if per_run else ():
        values = [seen[key] for seen in per_run]
        classes = {m.group(1) if m else None for m in (_DEFAULT_REPR.fullmatch(v) for v in values)}
        if len(classes) == 1 and None not in classes:
            found = Observation(ast.Constant(classes.pop()), by_type=True)
        elif len(set(values)) == 1:
            found = as_observation(values[0])
        else:
            pattern = None if any(len(v) > MAX_REPR or _ADDRESS.search(v) for v in values) else masked(values)
            found = Observation(ast.Constant(pattern), by_repr=True, pattern=True) if pattern else None
        if found is not None:
            out[key] = found
    return out


def _repairable(passed: bool, missing: int, count: int) -> bool:
    """A probe that passed needs every site observed; one that failed, at least one."""
    return missing == 0 if passed else missing < count


def repair(sandbox: Sandbox, suite: Suite, ctx: Context, failed: list[Unit]) -> list[Unit]:
    """Repaired versions of ``failed`` (see the module docstring); ``PROBE_RUNS`` sandbox runs for all."""
    probes = [p for p in map(make_probe, failed) if p.probe is not None]
    if not probes:
        return []
    support = {**suite.support, OBSERVE: _HELPER.strip()}
    probe_suite = Suite(units=[], imports=list(suite.imports), support=support)
    module = probe_suite.render([p.probe for p in probes], ctx)
    runs = [sandbox.run(module) for _ in range(PROBE_RUNS)]
    run = runs[0]
    values = parse_observations(*(r.observed for r in runs))
    repaired = []
    for probe in probes:
        outcome = run.outcomes.get(probe.unit.name)
        if outcome is None:
            continue
        tree = ast.parse(probe.unit.source)
        sites = _Sites(probe.unit.name, literal_names(tree), values)
        fixed = ast.fix_missing_locations(_without_uses(sites.visit(tree), sites.captured))
        if not _repairable(outcome.passed, sites.missing, sites.count):
            continue
        unit = probe.unit
        repaired.append(Unit(unit.name, ast.unparse(fixed), unit.needs, unit.asserts, origin="observed"))
    return repaired
