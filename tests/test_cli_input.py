"""The real ``fleet`` console script, run as a subprocess: bad input exits 2 before anything is
sent (and writes nothing), an unreachable fleet exits 3 naming the URL, help exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FLEET = Path(sys.executable).parent / "fleet"
DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1
VALID = "def add(a, b):\n    return a + b\n"


@pytest.fixture
def run_fleet(tmp_path):
    """Run ``fleet *args`` with a dead Redis and a private data dir; returns the CompletedProcess."""
    data = tmp_path / "data"

    def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
        full_env.update({
            "FLEET_REDIS_URL": DEAD_REDIS,
            "FLEET_DATA_DIR": str(data),
            "FLEET_FLEET_DATA_DIR": str(data),  # the real name of [fleet] data_dir
            "FLEET_REDIS_CONNECT_TIMEOUT": "2",
        })
        full_env.update(env or {})
        return subprocess.run([str(FLEET), *map(str, args)], capture_output=True, text=True, env=full_env,
                              cwd=cwd or tmp_path, timeout=60)

    return run


def test_console_script_exists():
    assert FLEET.is_file() and os.access(FLEET, os.X_OK), f"console script missing: {FLEET}"


def _assert_bad_input(done: subprocess.CompletedProcess, out: Path, *needles: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    for needle in needles:
        assert needle in done.stderr, (needle, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert not out.exists(), f"--out {out} was created for bad input"


def test_missing_target(run_fleet, tmp_path):
    out = tmp_path / "out"
    done = run_fleet("submit", tmp_path / "nope.py", "--out", out)
    _assert_bad_input(done, out, "nope.py", "no such file")


def test_directory_target(run_fleet, tmp_path):
    target = tmp_path / "pkgdir"
    target.mkdir()
    (target / "__init__.py").write_text("")
    out = tmp_path / "out"
    done = run_fleet("submit", target, "--out", out)
    _assert_bad_input(done, out, "pkgdir", "not a file")


def test_not_a_py_file(run_fleet, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text(VALID)
    out = tmp_path / "out"
    done = run_fleet("submit", target, "--out", out)
    _assert_bad_input(done, out, "notes.txt", "not a .py file")


def test_syntax_error_names_the_line(run_fleet, tmp_path):
    target = tmp_path / "broken.py"
    target.write_text("def ok():\n    return 1\n\n\ndef bad(:\n    pass\n")
    out = tmp_path / "out"
    done = run_fleet("submit", target, "--out", out)
    _assert_bad_input(done, out, "broken.py", "syntax error")
    assert "broken.py:5:" in done.stderr, done.stderr  # line 5 holds the error


def test_binary_content(run_fleet, tmp_path):
    target = tmp_path / "blob.py"
    target.write_bytes(b"x = 1\n\x00\x01\x02binary\n")
    out = tmp_path / "out"
    done = run_fleet("submit", target, "--out", out)
    _assert_bad_input(done, out, "blob.py", "binary content")


def test_not_utf8(run_fleet, tmp_path):
    target = tmp_path / "latin.py"
    target.write_bytes("s = 'caf\u00e9'\n".encode("latin-1"))
    out = tmp_path / "out"
    done = run_fleet("submit", target, "--out", out)
    _assert_bad_input(done, out, "latin.py", "not UTF-8")


def test_file_over_limit(run_fleet, tmp_path):
    target = tmp_path / "big.py"
    text = "X = 1\n" + "# padding line\n" * 13
    target.write_text(text)
    size = len(text.encode())
    assert 190 <= size <= 210
    out = tmp_path / "out"
    done = run_fleet("submit", target, "--out", out, env={"FLEET_JOBS_MAX_FILE_BYTES": "100"})
    _assert_bad_input(done, out, "big.py", f"{size} bytes", "limit of 100 bytes", "max_file_bytes")


def _package(root: Path) -> Path:
    pkg = root / "proj" / "mypkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""The package."""\n')
    for name in ("alpha", "beta", "gamma", "delta"):
        (pkg / f"{name}.py").write_text(f"def {name}(x):\n    return x + 1  # {'padding ' * 8}\n")
    return pkg


def test_bundle_over_limit(run_fleet, tmp_path):
    pkg = _package(tmp_path)
    total = sum(len(p.read_bytes()) for p in pkg.glob("*.py"))
    limit = 250
    assert total > limit and all(len(p.read_bytes()) < limit for p in pkg.glob("*.py"))
    out = tmp_path / "out"
    done = run_fleet("submit", pkg / "alpha.py", "--out", out, env={"FLEET_JOBS_MAX_BUNDLE_BYTES": str(limit)})
    _assert_bad_input(done, out, "limit of 250 bytes", "max_bundle_bytes")


def test_package_within_limit_gets_past_the_bundle_check(run_fleet, tmp_path):
    """The same package with a roomy limit is valid input: it fails only on the dead Redis (3)."""
    pkg = _package(tmp_path)
    done = run_fleet("submit", pkg / "alpha.py", "--out", tmp_path / "out", env={"FLEET_JOBS_MAX_BUNDLE_BYTES": "100000"})
    assert done.returncode == 3, (done.returncode, done.stderr)


def test_plain_module_over_bundle_limit(run_fleet, tmp_path):
    """A lone module (no package) bigger than the bundle limit is refused on the client too."""
    target = tmp_path / "lone.py"
    target.write_text("X = 1\n" + "# padding line\n" * 13)
    out = tmp_path / "out"
    done = run_fleet("submit", target, "--out", out, env={"FLEET_JOBS_MAX_BUNDLE_BYTES": "100"})
    _assert_bad_input(done, out, "lone.py", "max_bundle_bytes")


def test_unknown_option(run_fleet, tmp_path):
    target = tmp_path / "ok.py"
    target.write_text(VALID)
    out = tmp_path / "out"
    done = run_fleet("submit", target, "--bogus", "--out", out)
    _assert_bad_input(done, out, "--bogus")


@pytest.mark.parametrize("value", ["0", "21", "many"])
def test_max_iterations_out_of_range(run_fleet, tmp_path, value):
    target = tmp_path / "ok.py"
    target.write_text(VALID)
    out = tmp_path / "out"
    done = run_fleet("submit", target, "--max-iterations", value, "--out", out)
    _assert_bad_input(done, out, "--max-iterations")


def test_valid_target_with_redis_down_exits_3(run_fleet, tmp_path):
    target = tmp_path / "ok.py"
    target.write_text(VALID)
    out = tmp_path / "out"
    done = run_fleet("submit", target, "--wait", "--out", out)
    assert done.returncode == 3, (done.returncode, done.stdout, done.stderr)
    assert "127.0.0.1:1" in done.stderr, done.stderr
    assert "Redis" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert not out.exists()


def test_valid_target_relative_path_with_redis_down(run_fleet, tmp_path):
    """A relative target path is resolved against the working directory."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "ok.py").write_text(VALID)
    done = run_fleet("submit", "src/ok.py", cwd=tmp_path)
    assert done.returncode == 3, (done.returncode, done.stderr)
    assert "127.0.0.1:1" in done.stderr


def test_top_level_help(run_fleet):
    done = run_fleet("--help")
    assert done.returncode == 0, done.stderr
    for command in ("submit", "result", "status", "up", "down", "model"):
        assert command in done.stdout
    assert "Exit codes" in done.stdout


def test_submit_help(run_fleet):
    done = run_fleet("submit", "--help")
    assert done.returncode == 0, done.stderr
    assert "Example" in done.stdout
    assert "fleet submit" in done.stdout
    for option in ("--out", "--wait", "--json", "--max-iterations", "--timeout"):
        assert option in done.stdout


def test_unknown_command(run_fleet):
    done = run_fleet("frobnicate")
    assert done.returncode == 2
    assert "frobnicate" in done.stderr
