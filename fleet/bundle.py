"""Build the bundle a worker needs to import a target: the target module and its package's files.

The project root is ``--project`` when given, else the directory above the target's top-most
package (the highest ancestor directory that still has an ``__init__.py``). The module name is
the target's path relative to that root, dotted. The bundle carries every ``.py`` file under the
top-level package (or just the target when it is a plain module), each checked for size and
text encoding; nothing is executed here.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from fleet.errors import BadInput

SKIP_DIRS = {"__pycache__", ".git", ".venv", "venv", "node_modules", ".tox", "build", "dist"}


@dataclass(frozen=True)
class Limits:
    """Size limits of a bundle, in bytes and files."""

    max_file_bytes: int
    max_bundle_bytes: int
    max_files: int


@dataclass(frozen=True)
class Bundle:
    """The target's module name, its path inside the bundle, and the bundled files (path → text)."""

    module: str
    target_path: str
    files: dict[str, str]


def read_source(path: Path, limit: int) -> str:
    """Read ``path`` as UTF-8 Python source, refusing binary, oversized or undecodable files."""
    size = path.stat().st_size
    if size > limit:
        raise BadInput(f"{path}: {size} bytes is over the limit of {limit} bytes (jobs.max_file_bytes)")
    raw = path.read_bytes()
    if b"\x00" in raw:
        raise BadInput(f"{path}: binary content (NUL bytes); expected Python source")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def check_syntax(source: str, label: str) -> None:
    """Parse ``source`` (never run it); a syntax error becomes BadInput naming line and column."""
    try:
        ast.parse(source, filename=label)
    except SyntaxError as exc:
        raise BadInput(f"{label}:{exc.lineno}:{exc.offset}: syntax error: {exc.msg}") from exc
    except ValueError as exc:  # e.g. NUL bytes
        raise BadInput(f"{label}: cannot be parsed: {exc}") from exc
    except (MemoryError, RecursionError) as exc:
        raise BadInput(f"{label}: nested too deeply to parse") from exc


def _package_top(target: Path) -> Path:
    """The highest ancestor directory of ``target`` that is still a package, or its own dir."""
    top = target.parent
    while (top / "__init__.py").exists() and (top.parent / "__init__.py").exists():
        top = top.parent
    return top


def _root_and_scope(target: Path, project: Path | None) -> tuple[Path, Path | None]:
    """The import root and the directory whose files are bundled (None: target alone)."""
    if project is not None:
        root = project.resolve()
        if not target.is_relative_to(root):
            raise BadInput(f"{target} is not inside --project {root}")
        rel = target.relative_to(root)
        scope = root / rel.parts[0] if len(rel.parts) > 1 else None
        return root, scope
    if (target.parent / "__init__.py").exists():
        top = _package_top(target)
        return top.parent, top
    return target.parent, None


def module_name(rel_path: str) -> str:
    """``pkg/sub/mod.py`` → ``pkg.sub.mod``; ``pkg/__init__.py`` → ``pkg``."""
    parts = list(Path(rel_path).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    if not parts or not all(p.isidentifier() for p in parts):
        raise BadInput(f"{rel_path}: not an importable module path (each part must be an identifier)")
    return ".".join(parts)


def _collect(root: Path, scope: Path | None, target: Path) -> list[Path]:
    if scope is None:
        return [target]
    found = [p for p in sorted(scope.rglob("*.py")) if not SKIP_DIRS.intersection(p.relative_to(root).parts)]
    return found


def build_bundle(target: Path, limits: Limits, project: Path | None = None) -> Bundle:
    """Check the target and bundle its package; raises BadInput with a clear message."""
    if not target.exists():
        raise BadInput(f"{target}: no such file")
    if not target.is_file():
        raise BadInput(f"{target}: not a file")
    if target.suffix != ".py":
        raise BadInput(f"{target}: not a .py file")
    target = target.resolve()
    source = read_source(target, limits.max_file_bytes)
    check_syntax(source, str(target))
    root, scope = _root_and_scope(target, project)
    rel_target = target.relative_to(root).as_posix()
    name = module_name(rel_target)
    files: dict[str, str] = {rel_target: source}
    total = len(source.encode())
    if total > limits.max_bundle_bytes:
        raise BadInput(f"{target}: {total} bytes is over the bundle limit of {limits.max_bundle_bytes} bytes "
                       "(jobs.max_bundle_bytes)")
    for path in _collect(root, scope, target):
        rel = path.relative_to(root).as_posix()
        if rel in files:
            continue
        text = read_source(path, limits.max_file_bytes)
        total += len(text.encode())
        files[rel] = text
        if total > limits.max_bundle_bytes:
            raise BadInput(
                f"bundle of {scope} is over the limit of {limits.max_bundle_bytes} bytes "
                "(jobs.max_bundle_bytes); pass --project to a smaller directory or raise the limit"
            )
        if len(files) > limits.max_files:
            raise BadInput(f"bundle of {scope} has more than {limits.max_files} .py files (jobs.max_files)")
    return Bundle(module=name, target_path=rel_target, files=files)
