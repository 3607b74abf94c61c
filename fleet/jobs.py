"""The job wire format: a versioned, validated ``generate-tests`` request, and its codecs.

A job travels as a JSON-safe dict (Celery's json serializer) and can be stored as msgpack bytes.
Its id is deterministic::

    job_id = sha256(canonical JSON of {version, module, target_path, files, options})[:32]

so a pipeline that retries the same submission gets the same id and no duplicate work.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Any

import msgpack

from fleet.bundle import Bundle, Limits, check_syntax
from fleet.errors import BadInput

WIRE_VERSION = 1
FRAMEWORKS = ("pytest",)


@dataclass(frozen=True)
class Options:
    """What the submitter asks for. Every field changes the output, so every field is in the id."""

    framework: str = "pytest"
    max_iterations: int | None = None
    time_budget: float | None = None

    def validate(self) -> None:
        for name, kinds in (("max_iterations", (int,)), ("time_budget", (int, float))):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
                raise BadInput(f"option {name} must be a number, got {type(value).__name__}")
        if self.framework not in FRAMEWORKS:
            raise BadInput(f"framework {self.framework!r} is not supported (choose from {', '.join(FRAMEWORKS)})")
        if self.max_iterations is not None and not 1 <= self.max_iterations <= 20:
            raise BadInput(f"max_iterations must be 1..20, got {self.max_iterations}")
        if self.time_budget is not None and not 1 <= self.time_budget <= 86400:
            raise BadInput(f"time_budget must be 1..86400 seconds, got {self.time_budget}")


@dataclass(frozen=True)
class Job:
    """One request: the target module, the bundled files it needs, and the options."""

    module: str
    target_path: str
    files: dict[str, str]
    options: Options = field(default_factory=Options)
    version: int = WIRE_VERSION

    @classmethod
    def from_bundle(cls, bundle: Bundle, options: Options) -> "Job":
        options.validate()
        return cls(module=bundle.module, target_path=bundle.target_path, files=bundle.files, options=options)

    @property
    def job_id(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]

    @property
    def target_source(self) -> str:
        return self.files[self.target_path]

    @property
    def bundle_bytes(self) -> int:
        return sum(len(text.encode()) for text in self.files.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "module": self.module,
            "target_path": self.target_path,
            "files": dict(sorted(self.files.items())),
            "options": asdict(self.options),
        }

    @classmethod
    def from_dict(cls, data: Any, limits: Limits) -> "Job":
        """Validate an untrusted dict (from the wire) and build the job; BadInput says what is wrong."""
        if not isinstance(data, dict):
            raise BadInput(f"job must be a mapping, got {type(data).__name__}")
        if type(data.get("version")) is not int or data.get("version") != WIRE_VERSION:
            raise BadInput(f"unsupported job version {data.get('version')!r} (this fleet speaks {WIRE_VERSION})")
        module, target_path, files = data.get("module"), data.get("target_path"), data.get("files")
        if not isinstance(module, str) or not all(p.isidentifier() for p in module.split(".")):
            raise BadInput(f"job module {module!r} is not a dotted module name")
        _check_files(files, limits)
        if not isinstance(target_path, str) or target_path not in files:
            raise BadInput(f"job target_path {target_path!r} is not one of the bundled files")
        check_syntax(files[target_path], target_path)
        raw_options = data.get("options") or {}
        if not isinstance(raw_options, dict):
            raise BadInput("job options must be a mapping")
        try:
            options = Options(**raw_options)
        except TypeError as exc:
            raise BadInput(f"job options: {exc}") from exc
        options.validate()
        return cls(module=module, target_path=target_path, files=dict(files), options=options)

    def to_bytes(self) -> bytes:
        return msgpack.packb(self.to_dict(), use_bin_type=True)

    @classmethod
    def from_bytes(cls, raw: bytes, limits: Limits) -> "Job":
        """Decode msgpack without trusting sizes in the data (caps from ``limits``)."""
        try:
            data = msgpack.unpackb(
                raw,
                raw=False,
                max_str_len=limits.max_file_bytes,
                max_bin_len=0,
                max_array_len=64,
                max_map_len=limits.max_files + 16,
            )
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
            raise BadInput(f"job bytes are not a valid msgpack job: {exc}") from exc
        return cls.from_dict(data, limits)


def _check_files(files: Any, limits: Limits) -> None:
    if not isinstance(files, dict) or not files:
        raise BadInput("job files must be a non-empty mapping of path → source")
    if len(files) > limits.max_files:
        raise BadInput(f"job carries {len(files)} files, over the limit of {limits.max_files}")
    total = 0
    for path, text in files.items():
        if not isinstance(path, str) or not isinstance(text, str):
            raise BadInput("job files must map str paths to str sources")
        pure = PurePosixPath(path)
        if pure.is_absolute() or ".." in pure.parts or pure.suffix != ".py" or "\\" in path:
            raise BadInput(f"job file path {path!r} must be a relative .py path without '..'")
        try:
            size = len(text.encode())
        except UnicodeEncodeError as exc:
            raise BadInput(f"job file {path} is not valid Unicode text: {exc.reason}") from exc
        if size > limits.max_file_bytes:
            raise BadInput(f"job file {path} is {size} bytes, over the limit of {limits.max_file_bytes}")
        total += size
    if total > limits.max_bundle_bytes:
        raise BadInput(f"job bundle is {total} bytes, over the limit of {limits.max_bundle_bytes}")


def limits_from(settings: Any) -> Limits:
    """The bundle limits configured in ``[jobs]``."""
    jobs = settings["jobs"]
    return Limits(
        max_file_bytes=jobs["max_file_bytes"], max_bundle_bytes=jobs["max_bundle_bytes"], max_files=jobs["max_files"]
    )
