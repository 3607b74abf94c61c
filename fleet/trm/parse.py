"""Model reply → test units, tolerantly.

Steps, each deterministic: take the code out of fences; strip line-number prefixes copied from a
prompt; add the parentheses of a ``def test_x:``; parse, or salvage the top-level chunks that
parse on their own (a reply cut at max_tokens loses only its last, unfinished function); split into imports, test units (``def test_*``,
``class Test*``, and each method of a test class with several: :func:`split_test_class`; a
coroutine test made to run under ``asyncio.run``: :mod:`fleet.trm.coroutines`) and support code (fixtures, helpers, constants); drop copies of the target's own definitions (small
models paste the code under test); drop tests without an assertion. Import
repair happens later, in :mod:`fleet.trm.repair`, when the whole suite is known.
"""

from __future__ import annotations

import ast
import copy
import re
from dataclasses import dataclass, field

from fleet.trm.coroutines import synchronous
from fleet.trm.safety import aliases, unsafe_call

_FENCE = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.S)
_LINENO = re.compile(r"^ {0,3}(\d+)\s*[:|] ?")
_CONTINUATION = ("else", "elif", "except", "finally", ")", "]", "}", "case")
_EMPTY_IMPORT = re.compile(r"^\s*from\s+[\w.]+\s+import\s*(?:#.*)?$")
_TRIPLE = re.compile(r'"""|\'\'\'')
_BARE_DEF = re.compile(r"^(\s*(?:async\s+)?def\s+\w+)\s*:(\s*(?:#.*)?)$")
_SPACED_DEF = re.compile(r"^(\s*(?:async\s+)?def\s+)(\w+(?:[ \t]+\w+)+)(\s*\()")


@dataclass(frozen=True)
class Rejection:
    """A test (or piece of a reply) that was not kept, and why."""

    name: str
    reason: str
    detail: str = ""
    path: str = ""  # where the test's path left the uncovered code (:mod:`fleet.trm.divergence`), when known


@dataclass(frozen=True)
class Unit:
    """One test function or Test class, judged on its own; ``needs`` names support code it uses."""

    name: str
    source: str
    needs: frozenset[str] = frozenset()
    asserts: int = 0
    origin: str = "model"


@dataclass
class Parsed:
    """What a reply held: import lines, support definitions by name, units, and rejections."""

    imports: list[str] = field(default_factory=list)
    support: dict[str, str] = field(default_factory=dict)
    units: list[Unit] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def extract_code(text: str) -> str:
    """The code of a reply. Text before the first fence that looks like code is a reply whose
    opening fence was prefilled (what follows its closing fence is prose); otherwise the fenced
    blocks joined; otherwise the whole text."""
    head = text.split("```")[0]
    if re.search(r"^(?:def |class |import |from |@)", head, re.M):
        return strip_line_numbers(head)
    blocks = _FENCE.findall(text)
    return strip_line_numbers("\n\n".join(blocks) if blocks else head)


def strip_line_numbers(code: str) -> str:
    """Remove ``12: `` prefixes copied from a numbered listing: only when at least 60% of the
    non-blank lines start (indented at most 3 spaces, as right-aligned numbers are) with a number
    and those numbers strictly increase (an indented int-keyed table is left alone)."""
    lines = code.splitlines()
    filled = [ln for ln in lines if ln.strip()]
    numbers = [int(m.group(1)) for m in (_LINENO.match(ln) for ln in filled) if m]
    increasing = all(a < b for a, b in zip(numbers, numbers[1:]))
    if filled and increasing and len(numbers) >= 0.6 * len(filled):
        lines = [_LINENO.sub("", ln, count=1) for ln in lines]
    return "\n".join(lines)


def drop_empty_imports(code: str) -> str:
    """Remove ``from x import`` lines that name nothing (the model completed the prefilled import
    with a comment); the names it uses are imported by repair later."""
    return "\n".join(ln for ln in code.splitlines() if not _EMPTY_IMPORT.match(ln))


def repair_def_lines(code: str) -> str:
    """Slips small models make in a ``def`` line, mended outside string literals:
    ``def test_x:`` → ``def test_x():`` and ``def test_x with_y():`` → ``def test_x_with_y():``."""
    lines = code.splitlines()
    inside = _inside_strings(lines)
    return "\n".join(ln if inside[i] else _repair_def(ln) for i, ln in enumerate(lines))


def _repair_def(line: str) -> str:
    line = _BARE_DEF.sub(r"\1():\2", line)
    return _SPACED_DEF.sub(lambda m: m.group(1) + "_".join(m.group(2).split()) + m.group(3), line)


def _inside_strings(lines: list[str]) -> list[bool]:
    """For each line, whether it starts inside a triple-quoted string (delimiters are counted per
    line; a heuristic for code that does not parse, where tokenize cannot be used)."""
    inside, out, quote = False, [], ""
    for line in lines:
        out.append(inside)
        for match in _TRIPLE.finditer(line):
            if not inside:
                inside, quote = True, match.group()
            elif match.group() == quote:
                inside = False
    return out


def _chunk_starts(lines: list[str]) -> list[int]:
    starts = []
    in_string = _inside_strings(lines)
    for i, line in enumerate(lines):
        if not line or line[0].isspace() or line.startswith("#") or in_string[i]:
            continue
        if line.startswith(_CONTINUATION):
            continue
        if starts and lines[i - 1].startswith("@"):
            continue
        starts.append(i)
    return starts


def _parse_trimmed(chunk: list[str]) -> ast.Module | None:
    """Parse ``chunk``, dropping trailing lines (at most 15) until it parses."""
    for cut in range(len(chunk), max(0, len(chunk) - 15), -1):
        try:
            return ast.parse("\n".join(chunk[:cut]))
        except (SyntaxError, ValueError):
            continue
    return None


def salvage(code: str) -> tuple[list[ast.stmt], list[Rejection]]:
    """Top-level statements of ``code``; chunks that do not parse are rejected as syntax errors."""
    try:
        return ast.parse(code).body, []
    except (SyntaxError, ValueError):
        pass
    lines = code.splitlines()
    starts = _chunk_starts(lines) + [len(lines)]
    body: list[ast.stmt] = []
    rejected: list[Rejection] = []
    for a, b in zip(starts, starts[1:]):
        tree = _parse_trimmed(lines[a:b])
        if tree is None:
            head = lines[a].strip()
            rejected.append(Rejection(_chunk_name(head), "syntax", f"does not parse: {head[:80]}"))
        else:
            body.extend(tree.body)
    return body, rejected


def _chunk_name(head: str) -> str:
    match = re.match(r"(?:async\s+)?(?:def|class)\s+(\w+)", head)
    return match.group(1) if match else "<fragment>"


def count_asserts(node: ast.AST) -> int:
    """``assert`` statements plus ``pytest.raises``/``pytest.warns`` context managers and calls."""
    count = 0
    for child in ast.walk(node):
        if isinstance(child, ast.Assert):
            count += 1
        elif isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute):
            if child.func.attr in {"raises", "warns", "assertEqual", "assertTrue", "assertRaises", "assertIn"}:
                count += 1
    return count


def _is_test(node: ast.stmt) -> bool:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return node.name.startswith("test")
    return isinstance(node, ast.ClassDef) and node.name.startswith("Test")


def _uses(fn: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name for stmt in fn.body for n in ast.walk(stmt))


def _as_function(method: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.stmt | None:
    """A test method as a module-level function: ``self`` (or a ``@staticmethod``) dropped. None
    when the method needs its instance (it reads ``self``) or is a classmethod."""
    fn = copy.deepcopy(method)
    decorators = [ast.unparse(d) for d in fn.decorator_list]
    if "classmethod" in decorators:
        return None
    if "staticmethod" in decorators:
        fn.decorator_list = [d for d in fn.decorator_list if ast.unparse(d) != "staticmethod"]
    elif not fn.args.args or _uses(fn, fn.args.args[0].arg):
        return None
    else:
        fn.args.args = fn.args.args[1:]
    return fn


def split_test_class(node: ast.ClassDef) -> list[ast.stmt]:
    """A ``class Test*`` with several test methods → one unit per method, so one failing method
    does not cost its siblings. A method becomes a plain function when the class has nothing else
    (no fixtures, helpers, attributes or decorators) and the method does not read ``self``;
    otherwise a one-test copy of the class, ``<Class>_<method>``, with the other members."""
    tests = [m for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and m.name.startswith("test")]
    if len(tests) < 2:
        return [node]
    members = [m for m in node.body if m not in tests and not isinstance(m, (ast.Pass, ast.Expr))]
    out: list[ast.stmt] = []
    for method in tests:
        fn = None if members or node.decorator_list else _as_function(method)
        if fn is None:
            fn = ast.ClassDef(name=f"{node.name}_{method.name.removeprefix('test_')}", bases=node.bases,
                              keywords=node.keywords, body=[*members, method], decorator_list=node.decorator_list,
                              type_params=[])
        out.append(ast.fix_missing_locations(fn))
    return out


def _is_main_guard(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "__name__" in ast.unparse(node.test)


def _bound_names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    return []


def used_names(node: ast.AST) -> set[str]:
    """Every plain name read (or used as an argument default / fixture parameter) in ``node``."""
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    for fn in (n for n in ast.walk(node) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
        names.update(a.arg for a in fn.args.args)
    return names


def _unsafe(node: ast.stmt, imported: dict[str, str], parsed: Parsed) -> bool:
    """Reject a test or helper with an unsafe call (:mod:`fleet.trm.safety`); True if rejected."""
    call = unsafe_call(node, imported)
    if call is None:
        return False
    name = getattr(node, "name", None) or next(iter(_bound_names(node)), "module code")
    parsed.rejected.append(Rejection(name, "unsafe-call", f"calls {call}: a kept test runs unsandboxed in the "
                                     "user's repository, so tests that run commands, delete files or open sockets are not kept"))
    return True


def parse_reply(text: str, target_names: frozenset[str]) -> Parsed:
    """Split a model reply into imports, support code and test units (see module docstring)."""
    body, rejected = salvage(repair_def_lines(drop_empty_imports(extract_code(text))))
    parsed = Parsed(rejected=rejected)
    tests: list[ast.stmt] = []
    imported = aliases(body)
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            parsed.imports.append(ast.unparse(node))
        elif _unsafe(node, imported, parsed):
            continue
        elif _is_test(node):
            node = synchronous(node)
            tests.extend(split_test_class(node) if isinstance(node, ast.ClassDef) else [node])
        elif _is_main_guard(node) or isinstance(node, ast.Expr):
            continue
        else:
            names = _bound_names(node)
            copied = [n for n in names if n in target_names]
            if copied:
                parsed.rejected.append(Rejection(copied[0], "redefines-target", "a copy of the code under test; the real one is imported"))
                continue
            for name in names:
                parsed.support[name] = ast.unparse(node)
    for node in tests:
        asserts = count_asserts(node)
        if asserts == 0:
            parsed.rejected.append(Rejection(node.name, "no-assertion", "the test checks nothing"))
            continue
        needs = frozenset(used_names(node) & parsed.support.keys())
        parsed.units.append(Unit(node.name, ast.unparse(node), needs, asserts))
    return parsed
