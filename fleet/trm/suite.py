"""The test suite under construction: kept units, their support code, and the module text."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Callable

from fleet.trm.parse import Parsed, Unit, used_names
from fleet.trm.repair import Context, repair_imports

_WORD = re.compile(r"\w+")


@dataclass
class Suite:
    """Kept units in order, the model's imports seen so far, and support code by name."""

    units: list[Unit] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)
    support: dict[str, str] = field(default_factory=dict)
    fresh_imports: list[str] = field(default_factory=list)  # added by the last absorb

    @property
    def names(self) -> set[str]:
        return {u.name for u in self.units}

    def absorb(self, parsed: Parsed) -> list[Unit]:
        """Take a reply's imports and support; return its units renamed to not collide. A support
        definition replaces an earlier one of that name unless kept units need the earlier one."""
        self.fresh_imports = list(dict.fromkeys(i for i in parsed.imports if i not in self.imports))
        self.imports.extend(self.fresh_imports)
        pinned = self._closure(self.units)
        for name, src in parsed.support.items():
            if name not in pinned:
                self.support[name] = src
        taken = set(self.names)
        out = []
        for unit in parsed.units:
            name = unit.name
            n = 2
            while name in taken:
                name, n = f"{unit.name}_{n}", n + 1
            taken.add(name)
            if name != unit.name:
                unit = Unit(name, unit.source.replace(unit.name, name, 1), unit.needs, unit.asserts)
            out.append(unit)
        return out

    def examples(self, words: set[str], limit: int) -> list[str]:
        """Kept units (with the support they need) that mention most of ``words``, most first,
        then shortest; as many as fit in ``limit`` characters. None mention any: []."""
        scored = []
        for unit in self.units:
            hits = len(words & set(_WORD.findall(unit.source)))
            if hits:
                scored.append((-hits, len(unit.source), unit))
        out, size = [], 0
        for _, _, unit in sorted(scored, key=lambda item: item[:2]):
            text = "\n\n".join([*self.support_of([unit]), unit.source])
            if size + len(text) > limit:
                break
            out.append(text)
            size += len(text)
        return out

    def rewrite_support(self, rewrite: Callable[[str], str | None]) -> set[str]:
        """Apply ``rewrite`` (None: unchanged) to the support no kept unit needs; the changed names."""
        pinned, changed = self._closure(self.units), set()
        for name, src in self.support.items():
            fixed = None if name in pinned else rewrite(src)
            if fixed is not None:
                self.support[name] = fixed
                changed.add(name)
        return changed

    def needs_any(self, unit: Unit, names: set[str]) -> bool:
        """Whether ``unit`` uses any of the support ``names``, directly or through other support."""
        return bool(names & self._closure([unit]))

    def drop_fresh_imports(self) -> bool:
        """Forget the imports the last reply added (they broke collection); True if there were any."""
        dropped = bool(self.fresh_imports)
        self.imports = [i for i in self.imports if i not in self.fresh_imports]
        self.fresh_imports = []
        return dropped

    def _closure(self, units: list[Unit]) -> set[str]:
        """Support names the units need, directly or through other support code."""
        needed = set().union(*(u.needs for u in units)) if units else set()
        frontier = set(needed)
        while frontier:
            name = frontier.pop()
            uses = used_names(ast.parse(self.support[name])) & self.support.keys()
            frontier |= uses - needed
            needed |= uses
        return needed

    def support_of(self, units: list[Unit]) -> list[str]:
        """The support definitions ``units`` need, in definition order, each text once."""
        needed = self._closure(units)
        return list(dict.fromkeys(self.support[n] for n in self.support if n in needed))

    def render(self, units: list[Unit], ctx: Context, *, model_imports: bool = True) -> str:
        """A complete test module of ``units`` with repaired imports and the support they need."""
        body = "\n\n\n".join(self.support_of(units) + [u.source for u in units])
        imports = repair_imports(self.imports if model_imports else [], body, ctx)
        return "\n".join(imports) + "\n\n\n" + body + "\n"
