"""API facts a job learns from its failures, kept for every later prompt of the job.

The sandbox's hints plugin (:mod:`fleet.hints_plugin`) appends ``[hint] ...`` to an API misuse
error: a signature, a close attribute name, an import. Error feedback shows only the last
attempt's failures, so a fact learned in attempt 1 would be lost by attempt 3 and the mistake
repeated. Each hinted error line becomes a fact ``<error> → <hint>`` (exception type dropped);
facts are deduplicated by their hint and the newest ``MAX_FACTS`` are kept.
"""

from __future__ import annotations

import re

MAX_FACTS = 8
MAX_FACT_CHARS = 220
MARK = " [hint] "
WHERE = " [where] "
_TYPE = re.compile(r"^(?:E\s+)?(?:[A-Za-z_][\w.]*(?:Error|Exception): |assert )")


def fact_of(detail: str) -> tuple[str, str] | None:
    """(key, fact) from a rejection's detail when a line of it carries a hint; key is the hint."""
    line = next((ln for ln in detail.splitlines() if MARK in ln), None)
    if line is None:
        return None
    error, hint = _TYPE.sub("", line.strip()).split(MARK, 1)
    return hint, f"{error} → {hint}"[:MAX_FACT_CHARS]


def without_hints(text: str) -> str:
    """``text`` with every ``[hint] ...`` and ``[where] ...`` tail removed (the ablation of hints)."""
    return "\n".join(ln.split(MARK, 1)[0].split(WHERE, 1)[0] for ln in text.splitlines())


class Facts:
    """The job's facts, oldest first, at most ``MAX_FACTS``."""

    def __init__(self) -> None:
        self._facts: dict[str, str] = {}

    def learn(self, details: list[str]) -> None:
        for detail in details:
            found = fact_of(detail)
            if found is None:
                continue
            key, fact = found
            self._facts.pop(key, None)
            self._facts[key] = fact
        while len(self._facts) > MAX_FACTS:
            self._facts.pop(next(iter(self._facts)))

    def __iter__(self):
        return iter(self._facts.values())

    def __len__(self) -> int:
        return len(self._facts)
