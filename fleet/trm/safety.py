"""Kept tests end up in the user's repository and run there unsandboxed, so a test (or helper)
that runs commands, deletes or moves files, opens sockets or evaluates strings is never kept, even
when the sandbox contained it and it passed (a prompt-injected docstring can ask for exactly that).

A call is unsafe when its dotted name, with import aliases resolved (``import subprocess as sp``,
``from os import system``), starts with one of UNSAFE_PREFIXES or equals one of UNSAFE_NAMES.
"""

from __future__ import annotations

import ast

UNSAFE_PREFIXES = ("subprocess.", "socket.", "shutil.rmtree", "shutil.move", "urllib.request.", "http.client.",
                   "requests.", "ctypes.", "pty.", "os.exec", "os.spawn", "os.posix_spawn", "multiprocessing.",
                   "asyncio.create_subprocess")
UNSAFE_NAMES = {"os.system", "os.popen", "os.fork", "os.forkpty", "os.kill", "os.killpg", "os.remove", "os.unlink",
                "os.rmdir", "os.removedirs", "os.rename", "os.renames", "os.replace", "os.chmod", "os.chown",
                "os._exit", "os.truncate", "eval", "exec", "__import__", "importlib.import_module"}


def aliases(statements: list[ast.stmt]) -> dict[str, str]:
    """Local name → dotted name for every import among ``statements``."""
    out: dict[str, str] = {}
    for node in statements:
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


def _dotted(func: ast.expr) -> str | None:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        return None
    return ".".join([func.id, *reversed(parts)])


def unsafe_call(node: ast.AST, names: dict[str, str]) -> str | None:
    """The first unsafe call's dotted name inside ``node``, else None (module docstring)."""
    for call in ast.walk(node):
        if not isinstance(call, ast.Call):
            continue
        dotted = _dotted(call.func)
        if dotted is None:
            continue
        head, _, rest = dotted.partition(".")
        full = f"{names.get(head, head)}.{rest}" if rest else names.get(head, head)
        if full in UNSAFE_NAMES or full.startswith(UNSAFE_PREFIXES):
            return full
    return None
