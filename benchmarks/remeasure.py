"""Re-measure a kept suite from scratch, independently of the engine's own bookkeeping:
plain ``coverage run --branch -m pytest`` in a fresh directory, ``reruns`` times, then
``coverage json``. line+branch % is CoverUp's combined figure:
``(covered lines + covered branches) / (statements + branches)``."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
from pathlib import Path

from fleet.sandbox import Limits, namespace_available, set_limits

_CONFINE = functools.partial(set_limits, Limits(cpu_seconds=600))


def remeasure(python: Path, files: dict[str, str], target_path: str, test_module: str, reruns: int = 5) -> dict:
    with tempfile.TemporaryDirectory(prefix="fleet-remeasure-") as tmp:
        root = Path(tmp)
        for rel, text in files.items():
            (root / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / "src" / rel).write_text(text)
        (root / "test_kept.py").write_text(test_module)
        target = root / "src" / target_path
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(root / "src"), "HOME": tmp}
        passes = 0
        for _ in range(reruns):
            prefix = ["unshare", "-n"] if namespace_available() else []
            done = subprocess.run([*prefix, str(python), "-m", "coverage", "run", "--branch", f"--include={target}", "-m",
                                   "pytest", "-q", "-p", "no:cacheprovider", "test_kept.py"],
                                  cwd=root, env=env, capture_output=True, text=True, timeout=600,
                                  preexec_fn=_CONFINE)
            passes += done.returncode == 0
        subprocess.run([str(python), "-m", "coverage", "json", "-o", "cov.json"], cwd=root, env=env,
                       capture_output=True, timeout=120)
        try:
            totals = json.loads((root / "cov.json").read_text())["totals"]
        except (OSError, ValueError, KeyError):
            return {"passes": passes, "reruns": reruns, "line_branch": 0.0}
        covered = totals["covered_lines"] + totals.get("covered_branches", 0)
        total = totals["num_statements"] + totals.get("num_branches", 0)
        return {"passes": passes, "reruns": reruns, "line_branch": round(100 * covered / total, 1) if total else 100.0,
                "line": round(100 * totals["covered_lines"] / max(1, totals["num_statements"]), 1),
                "branch": round(100 * totals.get("covered_branches", 0) / max(1, totals.get("num_branches", 0)), 1)}
