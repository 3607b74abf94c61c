"""A pytest plugin, run inside the sandbox, that adds the facts a model needs to fix an API misuse.

A small model that calls ``Docstring(short=...)`` or ``date.from_isoformat`` reads
``TypeError: ... unexpected keyword argument`` and guesses again. The runtime knows the answer,
so when a test fails this plugin appends a ``[hint]`` to the exception's message (which is what
pytest reports and the engine feeds back), an API fact:

- ``AttributeError`` with ``obj`` and ``name`` (Python ≥ 3.10): the closest attribute names of
  that object (:func:`difflib.get_close_matches`), else its first public attributes;
- ``TypeError`` from binding a call (``f() got an unexpected keyword argument``, ``missing N
  required``, ``takes N positional``): ``inspect.signature`` of the callable, resolved by its
  qualified name in the failing frame's locals and globals, and the members of each parameter's
  Enum annotation;
- ``NameError``: the already-imported module that defines the name, as an import line;
- a test parameter that is no fixture: define it as a fixture or build the value in the test
  (instead of pytest's list of every available fixture);
- else, for an exception raised inside the code under test, a ``[where]``: the function, line,
  source line and the values of that line's local names (``with args=()``), so the model sees
  which of its inputs the code could not handle;
- ``assert a == b`` between two instances of a class without ``__eq__`` (identity comparison,
  always false): the attributes to compare instead, and those that differ
  (``pytest_assertrepr_compare``).

The file is copied into the sandbox's ``site`` directory and loaded with ``-p fleet_hints``; it
uses only the standard library and pytest. Any failure while building a hint leaves the error as
it was. A hint is at most ``MAX_HINT`` characters.
"""

from __future__ import annotations

import builtins
import difflib
import enum
import inspect
import linecache
import os
import re
import sys
import types
from typing import Any

import pytest
from _pytest.fixtures import FixtureLookupError

MAX_HINT = 240
MAX_LISTED = 12
MAX_VALUES, MAX_VALUE = 4, 40
_IDENT = re.compile(r"[A-Za-z_]\w*")
BINDING_FAILURE = (r"(?:got an unexpected keyword|got multiple values|missing \d+ required"
                   r"|takes \d+ positional|takes from \d+ to \d+ positional|takes no arguments)")  # after "f() "
_CALL = re.compile(r"^([A-Za-z_][\w.]*)\(\) " + BINDING_FAILURE)
_NAME = re.compile(r"name '(\w+)' is not defined")


def _public(obj: Any) -> list[str]:
    return [n for n in dir(obj) if not n.startswith("_")]


def _squash(name: str) -> str:
    return name.replace("_", "").lower()


def similarity(a: str, b: str) -> float:
    """``r + (p / len(a))·(1 − r)``: difflib's ratio r of ``a`` and ``b`` raised by their common
    prefix p, as Winkler does for Jaro (identifiers that start alike are usually the intended one:
    ``fromisostring`` is closer to ``fromisoformat`` than to ``fromordinal``)."""
    ratio = difflib.SequenceMatcher(None, a, b).ratio()
    prefix = len(os.path.commonprefix([a, b]))
    return ratio + prefix / max(1, len(a)) * (1 - ratio)


def close_names(name: str, names: list[str], cutoff: float = 0.6) -> list[str]:
    """Up to 3 of ``names`` most similar to ``name`` (:func:`similarity` ≥ ``cutoff``), compared
    without underscores and case (``from_iso_string`` finds ``fromisoformat``)."""
    wanted = _squash(name)
    scored = sorted(((similarity(wanted, _squash(n)), n) for n in set(names)), key=lambda sn: (-sn[0], sn[1]))
    return [n for score, n in scored if score >= cutoff][:3]


def attribute_hint(exc: AttributeError) -> str:
    """Closest names to ``exc.name`` on ``exc.obj``; else its public attributes."""
    obj, name = getattr(exc, "obj", None), getattr(exc, "name", None)
    if obj is None or not name:
        return ""
    names = _public(obj)
    close = close_names(name, names)
    if close:
        return "did you mean " + " or ".join(f"`{n}`" for n in close) + "?"
    return "its public attributes: " + ", ".join(names[:MAX_LISTED]) if names else ""


def _resolve(qualname: str, frame: types.FrameType | None) -> Any:
    """The object named ``a.b.c`` in ``frame`` (``__init__`` resolves to its class)."""
    if frame is None:
        return None
    parts = qualname.split(".")
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    scope = {**frame.f_globals, **frame.f_locals}
    obj = scope.get(parts[0], getattr(builtins, parts[0], None))
    for part in parts[1:]:
        obj = getattr(obj, part, None)
    return obj


def call_hint(exc: TypeError, tb: types.TracebackType | None) -> str:
    """``inspect.signature`` of the callable a binding TypeError names, looked up where it was called."""
    match = _CALL.match(str(exc))
    if not match:
        return ""
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        obj = _resolve(match.group(1), frame)
        if callable(obj):
            try:
                signature = inspect.signature(obj)
            except (TypeError, ValueError):
                return ""
            return f"the signature is {match.group(1).removesuffix('.__init__')}{signature}{enum_choices(obj, signature)}"
    return ""


def enum_choices(obj: Any, signature: inspect.Signature) -> str:
    """``; ctype is one of CurrencyType.MONEY, …`` for each parameter annotated with an Enum
    (a string annotation is looked up in the callable's module), at most 4 members each."""
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    out = []
    for param in signature.parameters.values():
        annotation = param.annotation
        if isinstance(annotation, str) and module is not None:
            annotation = getattr(module, annotation.rsplit(".", 1)[-1], None)
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            members = ", ".join(f"{annotation.__name__}.{m}" for m in list(annotation.__members__)[:4])
            out.append(f"{param.name} is one of {members}")
    return "; " + "; ".join(out) if out else ""


def name_hint(exc: NameError) -> str:
    """An import line for a missing name that an already-imported module defines."""
    match = _NAME.search(str(exc))
    if not match:
        return ""
    name = match.group(1)
    for modname, module in list(sys.modules.items()):
        spec_file = getattr(module, "__file__", None) or ""
        if "site-packages" in spec_file or modname.startswith(("_", "pytest", "pluggy")):
            continue
        if name in vars(module) and getattr(vars(module)[name], "__module__", modname) == modname:
            return f"import it: from {modname} import {name}"
    return ""


def _under_test(frame: types.FrameType) -> bool:
    """A frame of the code under test: a file in the sandbox's ``src`` directory."""
    parts = frame.f_code.co_filename.replace("\\", "/").split("/")
    return "src" in parts[:-1] and "site-packages" not in parts


def line_values(source: str, frames: list[types.FrameType]) -> str:
    """`` with a=1, b=()``: the values of the names in ``source``, each from the first of ``frames``
    (innermost first) that binds it as a local; not ``self``/``cls``, modules, classes or callables;
    at most ``MAX_VALUES``, each repr cut to ``MAX_VALUE`` characters."""
    shown = []
    for name in dict.fromkeys(_IDENT.findall(source)):
        scope = next((f.f_locals for f in frames if name in f.f_locals), {})
        value = scope.get(name, shown)
        if value is shown or name in ("self", "cls") or isinstance(value, (types.ModuleType, type)) or callable(value):
            continue
        shown.append(f"{name}={repr(value)[:MAX_VALUE]}")
    return " with " + ", ".join(shown[:MAX_VALUES]) if shown else ""


def location_hint(tb: types.TracebackType | None) -> str:
    """Where the code under test raised: its innermost frame's function, line, source line and
    :func:`line_values` (looked up from that frame outwards, so a generator expression's line
    shows its function's arguments)."""
    frames, lineno = [], 0
    while tb is not None:
        if _under_test(tb.tb_frame):
            frames.insert(0, tb.tb_frame)
            lineno = tb.tb_lineno
        tb = tb.tb_next
    if not frames:
        return ""
    code = frames[0].f_code
    source = linecache.getline(code.co_filename, lineno).strip()
    name = getattr(code, "co_qualname", code.co_name).split(".<locals>")[0]
    return f"raised in `{name}` at line {lineno}: `{source}`{line_values(source, frames)}"


def hint_for(exc: BaseException, tb: types.TracebackType | None) -> str:
    """`` [hint] <API fact>`` for ``exc``, else `` [where] <location in the code under test>``, or ""."""
    hint = ""
    if isinstance(exc, AttributeError):
        hint = attribute_hint(exc)
    elif isinstance(exc, TypeError):
        hint = call_hint(exc, tb)
    elif isinstance(exc, NameError):
        hint = name_hint(exc)
    if hint:
        return f" [hint] {hint[:MAX_HINT]}"
    where = "" if isinstance(exc, AssertionError) else location_hint(tb)
    return f" [where] {where[:MAX_HINT]}" if where else ""


def _fields(obj: Any) -> dict[str, Any]:
    """An instance's public attributes (``__dict__`` or ``__slots__``)."""
    if hasattr(obj, "__dict__"):
        return {k: v for k, v in vars(obj).items() if not k.startswith("_")}
    slots = [s for cls in type(obj).__mro__ for s in getattr(cls, "__slots__", ())]
    return {s: getattr(obj, s) for s in slots if not s.startswith("_") and hasattr(obj, s)}


def pytest_assertrepr_compare(op: str, left: Any, right: Any) -> list[str] | None:
    """For ``==`` between instances of one class that has no ``__eq__``: say so, name the
    attributes to compare instead and show those that differ (at most ``MAX_LISTED``)."""
    try:
        cls = type(left)
        if op != "==" or type(right) is not cls or cls.__eq__ is not object.__eq__:
            return None
        fields_left, fields_right = _fields(left), _fields(right)
        names = ", ".join(list(fields_left)[:MAX_LISTED]) or "its public methods"
        lines = [f"`{cls.__name__}` has no __eq__, so == compares identity [hint] compare attributes instead: {names}"]
        for name in list(fields_left)[:MAX_LISTED]:
            if name in fields_right and fields_left[name] != fields_right[name]:
                lines.append(f"{name}: {fields_left[name]!r:.80} != {fields_right[name]!r:.80}")
        return lines
    except Exception:  # noqa: BLE001 - a hint must never change the outcome
        return None


def fixture_hint(exc: FixtureLookupError) -> None:
    """A test parameter that is no fixture: say what to do instead of listing pytest's fixtures."""
    if exc.msg is None and exc.argname:
        exc.msg = (f"fixture '{exc.argname}' not found [hint] a test's parameters must be fixtures: define "
                   f"`@pytest.fixture` `def {exc.argname}(): ...` or build the value inside the test")


def annotate(exc: BaseException, tb: types.TracebackType | None) -> None:
    """Append the hint to the first argument of ``exc`` (what ``str(exc)`` shows), once."""
    try:
        if isinstance(exc, FixtureLookupError):
            fixture_hint(exc)
            return
        hint = hint_for(exc, tb)
        first = exc.args[0] if exc.args else None
        if hint and isinstance(first, str) and " [hint] " not in first and " [where] " not in first:
            exc.args = (first + hint, *exc.args[1:])
    except Exception:  # noqa: BLE001 - a hint must never change the outcome
        return


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Annotate the exception before pytest renders it into the report."""
    if call.excinfo is not None and call.excinfo.type is not None:
        annotate(call.excinfo.value, call.excinfo.tb)
    yield
