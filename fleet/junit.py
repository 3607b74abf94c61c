"""Read pytest's JUnit XML into one outcome per test unit (top-level function or Test class).

A unit passes when every test case under it passed (parametrized cases and class methods are
folded into their unit); skipped counts as not passing. A collection error is reported under
the unit ``<collection>``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

COLLECTION = "<collection>"
_STATUS_RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3, "collection-error": 4}


@dataclass(frozen=True)
class Outcome:
    """``status`` is passed / skipped / failed / error / collection-error; ``message`` is trimmed."""

    status: str
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _unit_of(case: ET.Element) -> str | None:
    name = re.sub(r"\[.*\]$", "", case.get("name", ""))
    classname = case.get("classname", "")
    parts = classname.split(".")
    if not classname:
        return None  # pytest reports a module that fails to import with an empty classname
    if parts[-1] == "test_generated":
        return name or None
    if parts[-1].startswith("Test") and "test_generated" in parts:
        return parts[-1]
    return None


def _case_outcome(case: ET.Element) -> Outcome:
    for tag in ("failure", "error"):
        node = case.find(tag)
        if node is not None:
            text = (node.get("message") or "") + "\n" + (node.text or "")
            return Outcome("failed" if tag == "failure" else "error", text.strip())
    skipped = case.find("skipped")
    if skipped is not None:
        return Outcome("skipped", skipped.get("message") or "")
    return Outcome("passed")


def _merge(old: Outcome | None, new: Outcome) -> Outcome:
    if old is None or _STATUS_RANK[new.status] > _STATUS_RANK[old.status]:
        return new
    return old


def parse_junit(path: Path) -> dict[str, Outcome]:
    """Outcomes by unit name; empty when the file is missing or unreadable."""
    try:
        return parse_junit_bytes(path.read_bytes())
    except OSError:
        return {}


def parse_junit_bytes(data: bytes) -> dict[str, Outcome]:
    """Outcomes by unit name from JUnit XML text; empty when it is not valid XML."""
    try:
        root = ET.fromstring(data) if data else None
    except ET.ParseError:
        return {}
    if root is None:
        return {}
    outcomes: dict[str, Outcome] = {}
    for case in root.iter("testcase"):
        outcome = _case_outcome(case)
        unit = _unit_of(case)
        if unit is None:
            if not outcome.passed:
                outcomes[COLLECTION] = Outcome("collection-error", outcome.message)
            continue
        outcomes[unit] = _merge(outcomes.get(unit), outcome)
    return outcomes
