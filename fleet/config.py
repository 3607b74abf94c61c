"""Settings: ``config/default.toml``, then the file named by ``FLEET_CONFIG``, then ``FLEET_*``.

Every setting lives in ``config/default.toml``; an overlay file may only change known keys.
The environment variable of ``[section] key`` is ``FLEET_<SECTION>_<KEY>`` in upper case, and
its text is converted to the type of the default (bool: 1/true/yes/on, 0/false/no/off).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from typing import Any

from fleet.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
DEFAULT_FILE = CONFIG_DIR / "default.toml"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Settings:
    """Effective settings: ``values[section][key]`` and where each came from."""

    values: Mapping[str, Mapping[str, Any]]
    sources: Mapping[str, str]

    def __getitem__(self, section: str) -> Mapping[str, Any]:
        return self.values[section]

    def get(self, dotted: str) -> Any:
        section, key = dotted.split(".", 1)
        return self.values[section][key]

    @property
    def data_dir(self) -> Path:
        return Path(os.path.expanduser(self.values["fleet"]["data_dir"]))

    @property
    def prefix(self) -> str:
        return self.values["fleet"]["prefix"]


def env_name(section: str, key: str) -> str:
    """``FLEET_<SECTION>_<KEY>`` (``FLEET_<KEY>`` for section ``fleet``), upper case, ``.`` and
    ``-`` turned into ``_``."""
    raw = (f"FLEET_{key}" if section == "fleet" else f"FLEET_{section}_{key}").upper()
    return raw.replace(".", "_").replace("-", "_")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def _convert(text: str, default: Any, name: str) -> Any:
    """Convert an environment string to the type of ``default``; a list is comma-separated, each
    item converted to the type of the default's first item."""
    if isinstance(default, list):
        items = [item.strip() for item in text.split(",") if item.strip()]
        return [_convert(item, default[0], name) for item in items] if default else items
    try:
        if isinstance(default, bool):
            low = text.strip().lower()
            if low in _TRUE | _FALSE:
                return low in _TRUE
            raise ValueError("expected one of 1/0, true/false, yes/no, on/off")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError as exc:
        raise ConfigError(f"{name}={text!r}: {exc}") from exc
    return text


def _same_kind(value: Any, default: Any) -> bool:
    """An overlay value must have the default's type (an int may stand for a float)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def _overlay(values: dict, sources: dict, extra: Mapping, origin: str) -> None:
    for section, table in extra.items():
        if section not in values or not isinstance(table, Mapping):
            raise ConfigError(f"{origin}: unknown section [{section}]")
        for key, value in table.items():
            if key not in values[section]:
                raise ConfigError(f"{origin}: unknown setting {section}.{key}")
            default = values[section][key]
            if not _same_kind(value, default):
                raise ConfigError(f"{origin}: {section}.{key} must be {type(default).__name__}, got {value!r}")
            values[section][key] = float(value) if isinstance(default, float) else value
            sources[f"{section}.{key}"] = origin


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the effective settings from the default file, an overlay file and the environment."""
    env = os.environ if environ is None else environ
    values = {s: dict(t) for s, t in _read_toml(DEFAULT_FILE).items()}
    sources = {f"{s}.{k}": "default" for s, t in values.items() for k in t}
    overlay = env.get("FLEET_CONFIG")
    if overlay:
        _overlay(values, sources, _read_toml(Path(overlay)), overlay)
    for section, table in values.items():
        for key, default in table.items():
            name = env_name(section, key)
            if name in env:
                table[key] = _convert(env[name], default, name)
                sources[f"{section}.{key}"] = f"env {name}"
    _require_password(values["redis"])
    return Settings(values=values, sources=sources)


def _require_password(redis_cfg: Mapping[str, Any]) -> None:
    """ConfigError when ``redis.require_password`` is on and ``redis.url`` carries no password."""
    if redis_cfg.get("require_password") and not urlsplit(redis_cfg["url"]).password:
        raise ConfigError("redis.require_password is on (production): give the password in FLEET_REDIS_URL, "
                          "e.g. redis://:PASSWORD@host:6379/0 (the local fleet's Redis then requires it too)")
