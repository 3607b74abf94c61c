"""Run untrusted tests against the bundled target in a limited subprocess, and measure coverage.

Each run happens in a fresh private directory (``src/`` holds the bundle, ``tests/`` the tests)
in a child process with a scrubbed environment, wall-clock timeout, RLIMIT_CPU / AS / FSIZE /
NPROC, its own session (the whole process group is killed on timeout), output capped, and the
network cut: a network namespace (``unshare -n``) where the OS allows, else a socket guard that
``sitecustomize`` installs before any test is imported. With the network namespace comes, where
mounting is permitted, a mount namespace in which /tmp, /var/tmp and /dev/shm are fresh, size-capped
private tmpfs mounts (the run directory bound back at its own path): what the tests write there
never reaches the host and is gone with the run. Coverage is coverage.py line + branch,
of the target file only (pytest-cov), with one context per test and phase (``nodeid|setup``,
``|run``, ``|teardown``), so each test's own lines and branch arcs, fixtures included, can be
read back. The coverage data file is read here without running any code.
"""

from __future__ import annotations

import functools
import os
import pwd
import re
import resource
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet import hints_plugin
from fleet.errors import BadInput
from fleet.junit import Outcome, parse_junit_bytes

TEST_FILE = "tests/test_generated.py"
SOURCE_DIR = "src"  # the bundled code under test, relative to a run's directory
# A file the tests may write in their run directory ($HOME); its text comes back in RunResult.observed.
OBSERVED_FILE = "observed.jsonl"
RESULT_CAP = 64 << 20  # most bytes read back from a run's junit.xml or coverage data
_GUARD = '''\
import socket as _s
def _blocked(*a, **k):
    raise OSError("network access is blocked in the fleet sandbox")
class _GuardedSocket(_s.socket):
    def connect(self, address):
        if self.family != getattr(_s, "AF_UNIX", None):
            _blocked()
        return super().connect(address)
    connect_ex = connect
    def sendto(self, *a):
        _blocked()
    def sendmsg(self, *a):
        if self.family != getattr(_s, "AF_UNIX", None):
            _blocked()
        return super().sendmsg(*a)
_s.socket = _GuardedSocket
_s.create_connection = _blocked
'''
_HINTS = Path(hints_plugin.__file__).read_text(encoding="utf-8")  # loaded in the sandbox as -p fleet_hints
_RCFILE = """\
[run]
branch = True
data_file = {data}
include = {target}
"""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed run (see ``[sandbox]`` in config/default.toml)."""

    timeout: float = 60
    cpu_seconds: int = 60
    memory_bytes: int = 2 * 1024**3
    file_bytes: int = 16 * 1024**2
    max_processes: int = 256
    output_cap: int = 65536
    network: str = "auto"
    python: str = ""
    user: str = "nobody"
    tmpfs_bytes: int = 64 * 1024**2

    @classmethod
    def from_settings(cls, settings: Any) -> "Limits":
        return cls(**{k: settings["sandbox"][k] for k in cls.__dataclass_fields__})


@dataclass
class RunResult:
    """What one run produced: per-test outcomes, coverage per test context, and process facts."""

    outcomes: dict[str, Outcome]
    lines_by_context: dict[str, set[int]]
    arcs_by_context: dict[str, set[tuple[int, int]]]
    returncode: int | None
    timed_out: bool
    output: str
    seconds: float
    collected: bool = True
    observed: str = ""


@dataclass(frozen=True)
class Measure:
    """Coverage of the target: statements, possible branch arcs, and what was covered."""

    statements: frozenset[int]
    branches: frozenset[tuple[int, int]]
    lines: frozenset[int] = frozenset()
    arcs: frozenset[tuple[int, int]] = frozenset()

    @property
    def line_rate(self) -> float:
        return len(self.lines & self.statements) / len(self.statements) if self.statements else 1.0

    @property
    def branch_rate(self) -> float:
        return len(self.arcs & self.branches) / len(self.branches) if self.branches else 1.0

    @property
    def missing_lines(self) -> list[int]:
        return sorted(self.statements - self.lines)

    @property
    def missing_branches(self) -> list[tuple[int, int]]:
        return sorted(self.branches - self.arcs)

    def with_covered(self, lines: set[int], arcs: set[tuple[int, int]]) -> "Measure":
        return Measure(self.statements, self.branches, frozenset(lines), frozenset(arcs & self.branches))

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": round(self.line_rate, 4),
            "branch": round(self.branch_rate, 4),
            "lines_covered": len(self.lines & self.statements),
            "lines_total": len(self.statements),
            "branches_covered": len(self.arcs & self.branches),
            "branches_total": len(self.branches),
        }


UNSHARE = ["unshare", "--net", "--pid", "--fork", "--kill-child"]
UNSHARE_MOUNT = ["--mount", "--propagation", "private"]  # never propagates a mount back to the host
TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")  # world-writable on any host: private tmpfs in the sandbox


@functools.lru_cache(maxsize=1)
def namespace_available() -> bool:
    """True when ``unshare`` can make network + PID namespaces here (root or user namespaces).
    In a PID namespace every process of the run dies with it, even one that left the session."""
    if shutil.which("unshare") is None:
        return False
    try:
        done = subprocess.run([*UNSHARE, "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def unshare_command(mount: bool) -> list[str]:
    """``UNSHARE`` (network + PID namespaces), with a private mount namespace as well when ``mount``."""
    return [UNSHARE[0], *(UNSHARE_MOUNT if mount else []), *UNSHARE[1:]]


@functools.lru_cache(maxsize=1)
def private_tmp_dirs() -> tuple[Path, ...]:
    """``TMP_DIRS`` as real paths, those that are directories here, each once (one may link to
    another). Nested ones are not handled; the probe of ``private_tmp_available`` then fails."""
    found: list[Path] = []
    for name in TMP_DIRS:
        real = Path(os.path.realpath(name))
        if real.is_dir() and real not in found:
            found.append(real)
    return tuple(found)


@functools.lru_cache(maxsize=4)
def private_tmp_available(python: str) -> bool:
    """True when, besides the network + PID namespace, ``unshare`` may make a mount namespace, a
    tmpfs may be mounted on every ``private_tmp_dirs()`` in it (root, no LSM profile that denies
    mount), and ``python`` still imports pytest and its plugins under those mounts (not so when it
    or its packages live in /tmp). Probed by those very mounts, in a throwaway namespace."""
    if not namespace_available():
        return False
    script = tmpfs_script(None, None, 1)
    check = "import pytest, coverage, pytest_cov, pytest_timeout"
    try:
        done = subprocess.run([*unshare_command(mount=True), "sh", "-c", script, "sh", python, "-c", check],
                              capture_output=True, timeout=30, cwd="/")
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def tmpfs_script(run_dir: Path | None, stage: Path | None, size: int) -> str:
    """``sh -c`` text that, run as root in a fresh mount namespace, mounts a private tmpfs of at most
    ``size`` bytes (at least one page) on each of ``private_tmp_dirs()``, then execs its arguments.
    The tmpfs over the directory holding ``run_dir`` is first mounted on ``stage`` (an empty root-only
    directory beside ``run_dir``), gets ``run_dir`` bound in at the same path, and is then moved into
    place, so the run directory stays visible (and shared with the host) at its own path."""
    options = f"size={max(1, size)},mode=1777,nosuid,nodev"
    steps: list[list[str]] = []
    for target in private_tmp_dirs():
        if run_dir is not None and stage is not None and run_dir.is_relative_to(target):
            inner = stage / run_dir.relative_to(target)
            steps += [["mount", "-t", "tmpfs", "-o", options, "fleet-tmp", str(stage)], ["mkdir", "-p", str(inner)],
                      ["mount", "--bind", str(run_dir), str(inner)], ["mount", "--move", str(stage), str(target)]]
        else:
            steps.append(["mount", "-t", "tmpfs", "-o", options, "fleet-tmp", str(target)])
    return " && ".join(["umask 022", *map(shlex.join, steps), 'exec "$@"'])


@functools.lru_cache(maxsize=4)
def privilege_drop(user: str, python: str) -> tuple[int, int] | None:
    """(uid, gid) of ``user`` when running as root and that user can run ``python`` here, else None.
    Dropping root makes RLIMIT_NPROC apply and keeps the tests out of root-only files."""
    if os.geteuid() != 0 or not user or shutil.which("setpriv") is None:
        return None
    try:
        entry = pwd.getpwnam(user)
        probe = subprocess.run([*_setpriv(entry.pw_uid, entry.pw_gid), python, "-c", "import pytest, coverage"],
                               capture_output=True, timeout=30, cwd="/")
    except (KeyError, OSError, subprocess.TimeoutExpired):
        return None
    return (entry.pw_uid, entry.pw_gid) if probe.returncode == 0 else None


def _setpriv(uid: int, gid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]


def network_mode(setting: str) -> str:
    """``namespace`` or ``guard`` for a config value of auto / namespace / guard."""
    if setting == "guard":
        return "guard"
    if namespace_available():
        return "namespace"
    if setting == "namespace":
        raise RuntimeError("sandbox.network = namespace, but `unshare -n` is not permitted on this host")
    return "guard"


def set_limits(limits: Limits) -> None:
    """Runs in the child before exec: resource limits (NPROC is not enforced for root)."""
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@dataclass
class Sandbox:
    """A private directory holding the bundle, in which test modules are run under limits."""

    files: dict[str, str]
    target_path: str
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        self.root = Path(os.path.realpath(tempfile.mkdtemp(prefix="fleet-sandbox-")))  # compared with TMP_DIRS
        self.network = network_mode(self.limits.network)
        self.python = self.limits.python or sys.executable
        self.private_tmp = self.network == "namespace" and private_tmp_available(self.python)
        if self.private_tmp:
            (self.root / ".stage").mkdir(mode=0o700)  # see tmpfs_script
        self.ids = privilege_drop(self.limits.user, self.python)
        self.private = Path(tempfile.mkdtemp(prefix="fleet-sandbox-data-"))  # root-only copies of results
        if self.ids:
            self.root.chmod(0o711)  # the tests may pass through, not create or list entries
        self._runs = 0

    def facts(self) -> dict[str, Any]:
        """What confines the generated code, for the report."""
        return {
            "network": "network + PID namespace (unshare)" if self.network == "namespace" else "socket guard",
            "filesystem": self._filesystem_fact(),
            "user": f"{self.limits.user} (uid {self.ids[0]})" if self.ids else f"uid {os.geteuid()} (no privilege drop)",
            "timeout_s": self.limits.timeout,
            "cpu_s": self.limits.cpu_seconds,
            "memory_bytes": self.limits.memory_bytes,
            "file_bytes": self.limits.file_bytes,
            "max_processes": self.limits.max_processes,
            "nproc_enforced": os.geteuid() != 0 or self.ids is not None,
            "env": "scrubbed (PATH, HOME, PYTHONPATH only)",
        }

    def _filesystem_fact(self) -> str:
        """Whether /tmp, /var/tmp and /dev/shm are the run's own (private tmpfs) or the host's."""
        if not self.private_tmp:
            return "shared /tmp (no mount namespace)"
        dirs = " ".join(map(str, private_tmp_dirs()))
        return f"private tmpfs {dirs} (mount namespace, {max(1, self.limits.tmpfs_bytes)} bytes each)"

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.private, ignore_errors=True)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _prepare(self, test_source: str, target_text: str | None) -> Path:
        self._runs += 1
        run_dir = self.root / f"run{self._runs}"
        src = run_dir / SOURCE_DIR
        files = self.files if target_text is None else {**self.files, self.target_path: target_text}
        for rel, text in files.items():
            dest = src / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text, encoding="utf-8")
        (run_dir / "tests").mkdir(parents=True)
        (run_dir / TEST_FILE).write_text(test_source, encoding="utf-8")
        rc = _RCFILE.format(data=run_dir / ".coverage", target=run_dir / SOURCE_DIR / self.target_path)
        (run_dir / ".coveragerc").write_text(rc)
        site = run_dir / "site"
        site.mkdir()
        if self.network == "guard":
            (site / "sitecustomize.py").write_text(_GUARD)
        (site / "fleet_hints.py").write_text(_HINTS)
        if self.ids:  # the tests may write only their run directory; the sources stay read-only
            os.chown(run_dir, *self.ids)
        return run_dir

    def _command(self, run_dir: Path, select: list[str] | None) -> list[str]:
        nodes = [f"{TEST_FILE}::{name}" for name in select] if select else [TEST_FILE]
        cmd = [
            self.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "pytest_timeout", "-p", "fleet_hints",
            "-p", "pytest_cov", "--cov", f"--cov-config={run_dir / '.coveragerc'}", "--cov-branch",
            "--cov-context=test", "--cov-report=",
            f"--timeout={max(5, int(self.limits.timeout // 2))}", f"--junitxml={run_dir / 'junit.xml'}",
            f"--rootdir={run_dir}", "-o", "console_output_style=classic", *nodes,
        ]
        if self.ids:
            cmd = _setpriv(*self.ids) + cmd
        if self.private_tmp:
            script = tmpfs_script(run_dir, self.root / ".stage", self.limits.tmpfs_bytes)
            return [*unshare_command(mount=True), "sh", "-c", script, "sh", *cmd]
        return (UNSHARE + cmd) if self.network == "namespace" else cmd

    def _env(self, run_dir: Path) -> dict[str, str]:
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(run_dir),
            "TMPDIR": str(run_dir),
            "PYTHONPATH": f"{run_dir / 'site'}{os.pathsep}{run_dir / SOURCE_DIR}",
            "PYTHONDONTWRITEBYTECODE": "1",
            # a new hash seed per run, as where the tests will be used: a test that depends on it
            # (a repr holding a hash, set order) fails a rerun instead of being kept
            "PYTHONHASHSEED": "random",
            "LANG": "C.UTF-8",
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        }

    def run(self, test_source: str, select: list[str] | None = None, *, target_text: str | None = None) -> RunResult:
        """Run ``test_source`` (only the ``select`` test names when given) once, under limits;
        ``target_text`` replaces the target's source for this run (mutation testing)."""
        run_dir = self._prepare(test_source, target_text)
        started = time.monotonic()
        timed_out = False
        with tempfile.TemporaryFile(dir=self.private) as out:
            proc = subprocess.Popen(
                self._command(run_dir, select), cwd=run_dir, env=self._env(run_dir), stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=functools.partial(set_limits, self.limits),
            )
            try:
                proc.wait(timeout=self.limits.timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc)
            seconds = time.monotonic() - started
            _kill_group(proc)  # strays left behind by the tests
            out.seek(0)
            output = _capped_text(out.read(self.limits.output_cap + 1), self.limits.output_cap)
        outcomes = parse_junit_bytes(safe_read(run_dir / "junit.xml", RESULT_CAP) or b"")
        lines, arcs = self._coverage(run_dir)
        collected = bool(outcomes) and not any(o.status == "collection-error" for o in outcomes.values())
        observed = _capped_text(safe_read(run_dir / OBSERVED_FILE, self.limits.output_cap + 1) or b"", self.limits.output_cap)
        result = RunResult(outcomes, lines, arcs, proc.returncode, timed_out, output, seconds, collected, observed)
        shutil.rmtree(run_dir, ignore_errors=True)
        return result

    def _coverage(self, run_dir: Path) -> tuple[dict[str, set[int]], dict[str, set[tuple[int, int]]]]:
        """Per-context coverage from a root-only copy of the run's data file (if it is a regular file)."""
        raw = safe_read(run_dir / ".coverage", RESULT_CAP)
        if not raw:
            return {}, {}
        copy = self.private / "coverage.sqlite"
        copy.write_bytes(raw)
        try:
            return _read_coverage(copy, run_dir / SOURCE_DIR / self.target_path)
        finally:
            copy.unlink(missing_ok=True)

    def measure_base(self) -> Measure:
        """Statements and branch arcs of the target, from coverage.py's static analysis (no run)."""
        return static_measure(self.files[self.target_path], self.root / "static" / self.target_path)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def safe_read(path: Path, cap: int) -> bytes | None:
    """Up to ``cap`` bytes of ``path`` if it is a regular file, else None. Never follows a symlink
    nor blocks on a FIFO or device the tests may have put in their place."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, size = [], 0
        while size < cap and (chunk := os.read(fd, min(1 << 20, cap - size))):
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _capped_text(data: bytes, cap: int) -> str:
    text = data[:cap].decode("utf-8", "replace")
    return text + ("\n[output truncated]" if len(data) > cap else "")


def _read_coverage(data_file: Path, target: Path) -> tuple[dict[str, set[int]], dict[str, set[tuple[int, int]]]]:
    """Lines and arcs of ``target`` per dynamic context ('' is import time)."""
    from coverage import CoverageData

    lines: dict[str, set[int]] = {}
    arcs: dict[str, set[tuple[int, int]]] = {}
    data = CoverageData(basename=str(data_file))
    try:
        data.read()
    except Exception:  # a corrupt data file (the tests can write there) counts as no coverage
        return lines, arcs
    path = str(target)
    for context in data.measured_contexts():
        data.set_query_contexts([f"^{re.escape(context)}$"])
        lines[context] = set(data.lines(path) or ())
        arcs[context] = {a for a in (data.arcs(path) or ()) if a[0] > 0}
    return lines, arcs


def static_measure(source: str, scratch: Path) -> Measure:
    """Statements and possible branch arcs of ``source``, by coverage.py's parser (nothing runs).
    BadInput when the parser cannot follow the code (nesting too deep for its recursion)."""
    from coverage.python import PythonParser

    parser = PythonParser(text=source, filename=str(scratch))
    try:
        parser.parse_source()
        statements = frozenset(parser.statements)
        exits = parser.exit_counts()
        arcs = parser.arcs()
    except RecursionError:
        raise BadInput("the target nests too deeply for coverage.py to measure it (a chain of hundreds of "
                       "elif or nested blocks): split the deepest function and submit again") from None
    branches = frozenset(arc for arc in arcs if arc[0] > 0 and exits.get(arc[0], 0) > 1)
    return Measure(statements=statements, branches=branches)
