"""fleet.bundle.build_bundle and the fleet.jobs.Job wire format."""

from __future__ import annotations

import re
from pathlib import Path

import msgpack
import pytest

from fleet.bundle import Limits, build_bundle
from fleet.errors import BadInput
from fleet.jobs import WIRE_VERSION, Job, Options, limits_from
from fleet.config import load

LIMITS = Limits(max_file_bytes=262144, max_bundle_bytes=2097152, max_files=400)
SRC = "def f(x):\n    return x + 1\n"


def _write(path: Path, text: str | bytes = SRC) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def nested(tmp_path: Path) -> Path:
    """tmp/pkg/{__init__,util}.py, tmp/pkg/sub/{__init__,mod}.py, a __pycache__ and a sibling file."""
    _write(tmp_path / "pkg/__init__.py", "")
    _write(tmp_path / "pkg/util.py", "X = 1\n")
    _write(tmp_path / "pkg/sub/__init__.py", "")
    _write(tmp_path / "pkg/sub/mod.py")
    _write(tmp_path / "pkg/__pycache__/stale.py", "junk = 1\n")
    _write(tmp_path / "outside.py", "Y = 2\n")
    return tmp_path


# --- build_bundle: success ---------------------------------------------------------------------


def test_plain_module_bundles_the_file_alone(tmp_path):
    target = _write(tmp_path / "calc.py")
    _write(tmp_path / "neighbour.py", "Z = 3\n")
    bundle = build_bundle(target, LIMITS)
    assert bundle.module == "calc"
    assert bundle.target_path == "calc.py"
    assert bundle.files == {"calc.py": SRC}


def test_nested_package_module_name_and_files(nested):
    bundle = build_bundle(nested / "pkg/sub/mod.py", LIMITS)
    assert bundle.module == "pkg.sub.mod"
    assert bundle.target_path == "pkg/sub/mod.py"
    assert set(bundle.files) == {"pkg/__init__.py", "pkg/util.py", "pkg/sub/__init__.py", "pkg/sub/mod.py"}
    assert bundle.files["pkg/util.py"] == "X = 1\n"


def test_package_init_is_module_of_the_package(nested):
    bundle = build_bundle(nested / "pkg/sub/__init__.py", LIMITS)
    assert bundle.module == "pkg.sub"
    assert "pkg/sub/mod.py" in bundle.files


def test_relative_target_path_is_resolved(nested, monkeypatch):
    monkeypatch.chdir(nested / "pkg")
    assert build_bundle(Path("sub/mod.py"), LIMITS).module == "pkg.sub.mod"


def test_project_root_sets_module_name_and_scope(tmp_path):
    proj = tmp_path / "proj"
    target = _write(proj / "app/util.py")  # app/ has no __init__.py (namespace package)
    _write(proj / "app/helpers.py", "H = 1\n")
    _write(proj / "other/x.py", "O = 1\n")
    assert build_bundle(target, LIMITS).module == "util"  # without --project: a plain module
    bundle = build_bundle(target, LIMITS, project=proj)
    assert bundle.module == "app.util"
    assert bundle.target_path == "app/util.py"
    assert set(bundle.files) == {"app/util.py", "app/helpers.py"}


def test_project_module_at_project_root_is_bundled_alone(tmp_path):
    target = _write(tmp_path / "top.py")
    _write(tmp_path / "pkg/other.py", "A = 1\n")
    bundle = build_bundle(target, LIMITS, project=tmp_path)
    assert bundle.files == {"top.py": SRC}


def test_target_outside_project_is_bad_input(tmp_path):
    target = _write(tmp_path / "a/m.py")
    with pytest.raises(BadInput, match="not inside --project"):
        build_bundle(target, LIMITS, project=tmp_path / "b")


# --- build_bundle: errors ----------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(BadInput, match="no such file"):
        build_bundle(tmp_path / "absent.py", LIMITS)


def test_directory_is_not_a_file(tmp_path):
    (tmp_path / "dir.py").mkdir()
    with pytest.raises(BadInput, match="not a file"):
        build_bundle(tmp_path / "dir.py", LIMITS)


def test_non_py_suffix(tmp_path):
    target = _write(tmp_path / "script.txt")
    with pytest.raises(BadInput, match=r"not a \.py file"):
        build_bundle(target, LIMITS)


def test_syntax_error_names_line(tmp_path):
    target = _write(tmp_path / "broken.py", "x = 1\ny = 2\ndef f(:\n    pass\n")
    with pytest.raises(BadInput, match=r"broken\.py:3:\d+: syntax error"):
        build_bundle(target, LIMITS)


def test_nul_bytes(tmp_path):
    target = _write(tmp_path / "bin.py", b"x = 1\x00\n")
    with pytest.raises(BadInput, match="NUL bytes"):
        build_bundle(target, LIMITS)


def test_non_utf8_bytes(tmp_path):
    target = _write(tmp_path / "latin.py", "s = 'caf\xe9'\n".encode("latin-1"))
    with pytest.raises(BadInput, match="not UTF-8.*byte 8"):
        build_bundle(target, LIMITS)


def test_non_utf8_file_elsewhere_in_package(nested):
    _write(nested / "pkg/bad.py", b"\xff\xfe\n")
    with pytest.raises(BadInput, match=r"bad\.py: not UTF-8"):
        build_bundle(nested / "pkg/sub/mod.py", LIMITS)


def test_file_over_max_file_bytes(tmp_path):
    target = _write(tmp_path / "big.py", "x = 1\n" * 100)  # 600 bytes
    with pytest.raises(BadInput, match="600 bytes is over the limit of 599 bytes"):
        build_bundle(target, Limits(max_file_bytes=599, max_bundle_bytes=10**6, max_files=10))
    assert build_bundle(target, Limits(max_file_bytes=600, max_bundle_bytes=10**6, max_files=10)).files


def test_bundle_over_max_bundle_bytes(nested):
    size = sum(len(p.read_bytes()) for p in (nested / "pkg").rglob("*.py") if "__pycache__" not in p.parts)
    tight = Limits(max_file_bytes=10**6, max_bundle_bytes=size - 1, max_files=100)
    with pytest.raises(BadInput, match="max_bundle_bytes"):
        build_bundle(nested / "pkg/sub/mod.py", tight)
    assert build_bundle(nested / "pkg/sub/mod.py", Limits(10**6, size, 100)).files


def test_too_many_files(nested):
    with pytest.raises(BadInput, match=r"more than 3 \.py files"):
        build_bundle(nested / "pkg/sub/mod.py", Limits(10**6, 10**6, max_files=3))
    assert len(build_bundle(nested / "pkg/sub/mod.py", Limits(10**6, 10**6, max_files=4)).files) == 4


def test_non_identifier_module_name(tmp_path):
    target = _write(tmp_path / "my-module.py")
    with pytest.raises(BadInput, match="not an importable module path"):
        build_bundle(target, LIMITS)


def test_plain_module_over_max_bundle_bytes(tmp_path):
    target = _write(tmp_path / "big.py", "x = 1\n" * 100)
    with pytest.raises(BadInput, match="max_bundle_bytes"):
        build_bundle(target, Limits(max_file_bytes=10**6, max_bundle_bytes=100, max_files=10))


# --- Job ---------------------------------------------------------------------------------------


def _job(**changes) -> Job:
    fields = {"module": "pkg.mod", "target_path": "pkg/mod.py",
              "files": {"pkg/__init__.py": "", "pkg/mod.py": SRC}, "options": Options()}
    fields.update(changes)
    return Job(**fields)


def _wire(**changes) -> dict:
    data = _job().to_dict()
    data.update(changes)
    return data


def test_job_id_is_32_hex_and_deterministic():
    assert re.fullmatch(r"[0-9a-f]{32}", _job().job_id)
    assert _job().job_id == _job().job_id
    reordered = _job(files={"pkg/mod.py": SRC, "pkg/__init__.py": ""})
    assert reordered.job_id == _job().job_id


@pytest.mark.parametrize(
    "changes",
    [
        {"options": Options(max_iterations=3)},
        {"options": Options(time_budget=60.0)},
        {"files": {"pkg/__init__.py": "", "pkg/mod.py": SRC + "\n"}},
        {"files": {"pkg/__init__.py": "# changed\n", "pkg/mod.py": SRC}},
        {"module": "pkg.other"},
    ],
)
def test_job_id_changes_with_any_input(changes):
    assert _job(**changes).job_id != _job().job_id


def test_job_from_bundle(nested):
    job = Job.from_bundle(build_bundle(nested / "pkg/sub/mod.py", LIMITS), Options(max_iterations=2))
    assert job.module == "pkg.sub.mod"
    assert job.target_source == SRC
    assert job.bundle_bytes == sum(len(t.encode()) for t in job.files.values())
    with pytest.raises(BadInput, match="framework"):
        Job.from_bundle(build_bundle(nested / "pkg/sub/mod.py", LIMITS), Options(framework="unittest"))


def test_to_dict_from_dict_round_trip():
    job = _job(options=Options(max_iterations=4, time_budget=120.0))
    data = job.to_dict()
    assert data["version"] == WIRE_VERSION
    assert data["options"] == {"framework": "pytest", "max_iterations": 4, "time_budget": 120.0}
    back = Job.from_dict(data, LIMITS)
    assert back == job
    assert back.job_id == job.job_id


def test_to_bytes_from_bytes_round_trip():
    job = _job(options=Options(time_budget=5.5), files={"pkg/__init__.py": "", "pkg/mod.py": "s = 'é ✓'\n"})
    raw = job.to_bytes()
    assert isinstance(raw, bytes)
    back = Job.from_bytes(raw, LIMITS)
    assert back == job
    assert back.job_id == job.job_id


def test_from_dict_missing_options_defaults():
    data = _wire()
    del data["options"]
    assert Job.from_dict(data, LIMITS).options == Options()


def test_limits_from_settings():
    assert limits_from(load(environ={"FLEET_JOBS_MAX_FILES": "7"})) == Limits(262144, 2097152, 7)


@pytest.mark.parametrize(
    "data, match",
    [
        (["not", "a", "dict"], "must be a mapping, got list"),
        (_wire(version=2), "unsupported job version 2"),
        (_wire(version=None), "unsupported job version None"),
        (_wire(module="pkg..mod"), "not a dotted module name"),
        (_wire(module="pkg.mod-x"), "not a dotted module name"),
        (_wire(module=5), "not a dotted module name"),
        (_wire(target_path="pkg/other.py"), "target_path 'pkg/other.py' is not one of the bundled files"),
        (_wire(target_path=None), "is not one of the bundled files"),
        (_wire(files={}), "non-empty mapping"),
        (_wire(files=[["pkg/mod.py", SRC]]), "non-empty mapping"),
        (_wire(files={"pkg/mod.py": 5}), "str paths to str sources"),
        (_wire(files={"pkg/mod.py": SRC, "../evil.py": ""}), r"'\.\./evil\.py' must be a relative \.py path"),
        (_wire(files={"pkg/mod.py": SRC, "pkg/../../e.py": ""}), "without '..'"),
        (_wire(files={"pkg/mod.py": SRC, "/etc/e.py": ""}), r"'/etc/e\.py' must be a relative"),
        (_wire(files={"pkg/mod.py": SRC, "pkg\\e.py": ""}), "must be a relative"),
        (_wire(files={"pkg/mod.py": SRC, "pkg/data.txt": ""}), r"'pkg/data\.txt' must be a relative \.py"),
        (_wire(files={"pkg/mod.py": "x = 1\n" * 50000}), "over the limit of 262144"),
        (_wire(options={"colour": "red"}), "job options: .*colour"),
        (_wire(options=["pytest"]), "options must be a mapping"),
        (_wire(options={"framework": "nose"}), "framework 'nose' is not supported"),
        (_wire(options={"max_iterations": 0}), "max_iterations must be 1..20, got 0"),
        (_wire(options={"max_iterations": 21}), "max_iterations must be 1..20, got 21"),
        (_wire(options={"time_budget": 0.5}), "time_budget must be 1..86400"),
        (_wire(files={"pkg/mod.py": "def f(:\n"}), r"pkg/mod\.py:1:\d+: syntax error"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_from_dict_rejects(data, match):
    with pytest.raises(BadInput, match=match):
        Job.from_dict(data, LIMITS)


def test_from_dict_rejects_too_many_files_and_oversize_bundle():
    files = {f"m{i}.py": "x = 1\n" for i in range(5)}
    with pytest.raises(BadInput, match="5 files, over the limit of 4"):
        Job.from_dict(_wire(files=files, target_path="m0.py", module="m0"), Limits(10**6, 10**6, 4))
    with pytest.raises(BadInput, match="bundle is 30 bytes, over the limit of 29"):
        Job.from_dict(_wire(files=files, target_path="m0.py", module="m0"), Limits(10**6, 29, 10))


def test_from_dict_does_not_alias_caller_files():
    data = _wire()
    job = Job.from_dict(data, LIMITS)
    data["files"]["pkg/mod.py"] = "tampered = 1\n"
    assert job.target_source == SRC


@pytest.mark.parametrize(
    "raw",
    [b"", b"garbage bytes", b"\xc1", b"\x92\x01", b"\x01", b"\xc4\x03abc", b"\x81\x01\x02",
     msgpack.packb([1, 2, 3]), _job().to_bytes()[:-3]],
    ids=["empty", "text", "reserved-byte", "truncated-array", "int", "bin", "int-key", "array", "truncated-job"],
)
def test_from_bytes_rejects_garbage(raw):
    with pytest.raises(BadInput):
        Job.from_bytes(raw, LIMITS)


def test_from_bytes_caps_string_length_before_decoding():
    raw = msgpack.packb(_wire(files={"pkg/mod.py": "x = 1\n" * 100}))
    with pytest.raises(BadInput, match="not a valid msgpack job"):
        Job.from_bytes(raw, Limits(max_file_bytes=100, max_bundle_bytes=10**6, max_files=10))


# --- bugs: untrusted wire input escaping as something other than BadInput ------------------------


@pytest.mark.parametrize("options", [{"max_iterations": "5"}, {"time_budget": "60"}])
def test_from_dict_wrong_option_type_is_bad_input(options):
    with pytest.raises(BadInput):
        Job.from_dict(_wire(options=options), LIMITS)


def test_from_dict_lone_surrogate_is_bad_input():
    with pytest.raises(BadInput):
        Job.from_dict(_wire(files={"pkg/mod.py": "s = '\ud800'\n"}), LIMITS)


def test_from_dict_too_deeply_nested_source_is_bad_input():
    with pytest.raises(BadInput):
        Job.from_dict(_wire(files={"pkg/mod.py": "x = " + "-" * 100000 + "1\n"}), LIMITS)
