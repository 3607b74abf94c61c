"""A pytest plugin, run inside the sandbox, that adds the facts a model needs to fix an API misuse.

A small model that calls ``Docstring(short=...)`` or ``date.from_isoformat`` reads
``TypeError: ... unexpected keyword argument`` and guesses again. The runtime knows the answer,
so when a test fails this plugin appends one ``[hint]`` line to the exception's message (which is
what pytest reports and the engine feeds back):

- ``AttributeError`` with ``obj`` and ``name`` (Python ≥ 3.10): the closest attribute names of
  that object (:func:`difflib.get_close_matches`), else its first public attributes;
- ``TypeError`` from binding a call (``f() got an unexpected keyword argument``, ``missing N
  required``, ``takes N positional``): ``inspect.signature`` of the callable, resolved by its
  qualified name in the failing frame's locals and globals;
- ``NameError``: the already-imported module that defines the name, as an import line.

The file is copied into the sandbox's ``site`` directory and loaded with ``-p fleet_hints``; it
uses only the standard library and pytest. Any failure while building a hint leaves the error as
it was. A hint is at most ``MAX_HINT`` characters.
"""

from __future__ import annotations

import difflib
import inspect
import re
import sys
import types
from typing import Any

import pytest

MAX_HINT = 240
MAX_LISTED = 12
_CALL = re.compile(r"^([A-Za-z_][\w.]*)\(\) (?:got an unexpected keyword|got multiple values|missing \d+ required"
                   r"|takes \d+ positional|takes from \d+ to \d+ positional|takes no arguments)")
_NAME = re.compile(r"name '(\w+)' is not defined")


def _public(obj: Any) -> list[str]:
    return [n for n in dir(obj) if not n.startswith("_")]


def attribute_hint(exc: AttributeError) -> str:
    """Closest names to ``exc.name`` on ``exc.obj``; else its public attributes."""
    obj, name = getattr(exc, "obj", None), getattr(exc, "name", None)
    if obj is None or not name:
        return ""
    names = _public(obj)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
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
    obj = scope.get(parts[0], getattr(__import__("builtins"), parts[0], None))
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
                return f"the signature is {match.group(1).removesuffix('.__init__')}{inspect.signature(obj)}"
            except (TypeError, ValueError):
                return ""
    return ""


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


def hint_for(exc: BaseException, tb: types.TracebackType | None) -> str:
    """The hint for ``exc``, or ""."""
    if isinstance(exc, AttributeError):
        return attribute_hint(exc)
    if isinstance(exc, TypeError):
        return call_hint(exc, tb)
    if isinstance(exc, NameError):
        return name_hint(exc)
    return ""


def annotate(exc: BaseException, tb: types.TracebackType | None) -> None:
    """Append `` [hint] ...`` to the first argument of ``exc`` (what ``str(exc)`` shows)."""
    try:
        hint = hint_for(exc, tb)[:MAX_HINT]
        if hint and exc.args and isinstance(exc.args[0], str) and "[hint]" not in exc.args[0]:
            exc.args = (f"{exc.args[0]} [hint] {hint}", *exc.args[1:])
    except Exception:  # noqa: BLE001 - a hint must never change the outcome
        return


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Annotate the exception before pytest renders it into the report."""
    if call.excinfo is not None and call.excinfo.type is not None:
        annotate(call.excinfo.value, call.excinfo.tb)
    yield
