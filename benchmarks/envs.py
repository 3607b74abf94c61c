"""Isolated environments for benchmark targets: one venv per pip requirement, reused."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

SANDBOX_TOOLS = ["pytest>=8.3", "pytest-timeout>=2.3", "pytest-cov>=5.0", "coverage>=7.6"]


def env_for(requirement: str, root: Path) -> Path:
    """The python of a venv holding ``requirement`` plus the sandbox's tools (created once)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", requirement)
    env = root / name
    python = env / "bin" / "python"
    stamp = env / f".ready-{hashlib.sha256(' '.join(SANDBOX_TOOLS).encode()).hexdigest()[:12]}"
    if not stamp.exists():
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", requirement, *SANDBOX_TOOLS], check=True)
        stamp.touch()
    return python


def module_file(python: Path, module: str) -> Path:
    """Where ``module`` lives in that environment (imports its parent packages: trusted pins only)."""
    code = f"import importlib.util as u; print(u.find_spec({module!r}).origin)"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())
