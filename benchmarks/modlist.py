"""Module-list files: ``<pip requirement> <module>`` per line, ``#`` comments, and the published
per-module figures in a comment line ``#   name cov/cov name cov/cov …`` (CoverUp / CodaMosa)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_FIGURES = re.compile(r"(\w+)\s+([\d.]+)/([\d.]+)")


@dataclass(frozen=True)
class Target:
    requirement: str
    module: str
    coverup: float | None = None
    codamosa: float | None = None


def read(path: Path) -> list[Target]:
    """The targets of a list file, with published figures matched by the module's last name."""
    figures: dict[str, tuple[float, float]] = {}
    rows: list[tuple[str, str]] = []
    for line in path.read_text().splitlines():
        text = line.strip()
        if text.startswith("#"):
            if text.startswith("#  ") and "/" in text:
                figures.update({m[0]: (float(m[1]), float(m[2])) for m in _FIGURES.findall(text)})
            continue
        if text:
            requirement, module = text.split()[:2]
            rows.append((requirement, module))
    out = []
    for requirement, module in rows:
        pub = figures.get(module.rpartition(".")[2])
        out.append(Target(requirement, module, *(pub or (None, None))))
    return out
