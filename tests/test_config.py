"""fleet.config: defaults, FLEET_CONFIG overlay, FLEET_<SECTION>_<KEY> overrides."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from fleet import config
from fleet.config import env_name, load
from fleet.errors import ConfigError


def _overlay(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "overlay.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults -------------------------------------------------------------------------------


def test_defaults_match_default_toml_and_are_marked_default():
    with config.DEFAULT_FILE.open("rb") as fh:
        raw = tomllib.load(fh)
    settings = load(environ={})
    assert {s: dict(t) for s, t in settings.values.items()} == raw
    assert set(settings.sources) == {f"{s}.{k}" for s, t in raw.items() for k in t}
    assert set(settings.sources.values()) == {"default"}


def test_known_default_values_and_accessors():
    settings = load(environ={})
    assert settings["jobs"]["max_files"] == 400
    assert settings.get("sandbox.network") == "auto"
    assert settings.get("redis.connect_timeout") == 3.0
    assert settings.get("flower.require_auth") is False
    assert settings.prefix == "fleet"
    assert settings.data_dir == Path.home() / ".local/share/fleet"


def test_explicit_environ_ignores_process_environment(monkeypatch):
    monkeypatch.setenv("FLEET_REDIS_URL", "redis://from-os-environ:1/0")
    assert load(environ={})["redis"]["url"] == "redis://127.0.0.1:6399/0"


def test_env_name_upper_cases_and_replaces_dots_and_dashes():
    assert env_name("engine", "max_iterations") == "FLEET_ENGINE_MAX_ITERATIONS"
    assert env_name("local", "agents") == "FLEET_LOCAL_AGENTS"
    assert env_name("a.b", "c-d") == "FLEET_A_B_C_D"


# --- environment overrides --------------------------------------------------------------------


def test_env_override_int():
    settings = load(environ={"FLEET_ENGINE_MAX_ITERATIONS": "3"})
    assert settings["engine"]["max_iterations"] == 3
    assert type(settings["engine"]["max_iterations"]) is int
    assert settings.sources["engine.max_iterations"] == "env FLEET_ENGINE_MAX_ITERATIONS"
    assert settings.sources["engine.patience"] == "default"


def test_env_override_float_accepts_integer_text():
    settings = load(environ={"FLEET_REDIS_CONNECT_TIMEOUT": "7", "FLEET_LLM_TOP_P": "0.5"})
    assert settings["redis"]["connect_timeout"] == 7.0
    assert type(settings["redis"]["connect_timeout"]) is float
    assert settings["llm"]["top_p"] == 0.5


def test_env_override_str_kept_verbatim():
    settings = load(environ={"FLEET_REDIS_URL": "redis://:pw@host:6379/2", "FLEET_AGENT_ID": " 42 "})
    assert settings["redis"]["url"] == "redis://:pw@host:6379/2"
    assert settings["agent"]["id"] == " 42 "  # a str default is not converted, not even to int


@pytest.mark.parametrize("text", ["1", "true", "TRUE", "Yes", "on", " On "])
def test_env_override_bool_true_variants(text):
    settings = load(environ={"FLEET_FLOWER_REQUIRE_AUTH": text})
    assert settings["flower"]["require_auth"] is True


@pytest.mark.parametrize("text", ["0", "false", "False", "NO", "off"])
def test_env_override_bool_false_variants(text):
    settings = load(environ={"FLEET_FLOWER_PERSISTENT": "yes", "FLEET_FLOWER_REQUIRE_AUTH": text})
    assert settings["flower"]["require_auth"] is False
    assert settings["flower"]["persistent"] is True


@pytest.mark.parametrize(
    "name, text",
    [
        ("FLEET_FLOWER_REQUIRE_AUTH", "maybe"),
        ("FLEET_FLOWER_REQUIRE_AUTH", "2"),
        ("FLEET_FLOWER_REQUIRE_AUTH", ""),
        ("FLEET_ENGINE_MAX_ITERATIONS", "1.5"),
        ("FLEET_ENGINE_MAX_ITERATIONS", "seven"),
        ("FLEET_REDIS_CONNECT_TIMEOUT", "fast"),
    ],
)
def test_env_override_bad_value_is_config_error_naming_variable(name, text):
    with pytest.raises(ConfigError, match=name):
        load(environ={name: text})


def test_config_error_maps_to_usage_exit_code():
    with pytest.raises(ConfigError) as info:
        load(environ={"FLEET_JOBS_MAX_FILES": "many"})
    assert info.value.exit_code == 2


# --- overlay file (FLEET_CONFIG) ----------------------------------------------------------------


def test_overlay_changes_known_key_and_records_its_source(tmp_path):
    path = _overlay(tmp_path, '[sandbox]\nnetwork = "namespace"\ntimeout = 30\n')
    settings = load(environ={"FLEET_CONFIG": str(path)})
    assert settings["sandbox"]["network"] == "namespace"
    assert settings["sandbox"]["timeout"] == 30
    assert settings.sources["sandbox.network"] == str(path)
    assert settings.sources["sandbox.timeout"] == str(path)
    assert settings.sources["sandbox.cpu_seconds"] == "default"
    assert settings["sandbox"]["cpu_seconds"] == 60


def test_env_wins_over_overlay(tmp_path):
    path = _overlay(tmp_path, "[jobs]\nmax_files = 10\n")
    settings = load(environ={"FLEET_CONFIG": str(path), "FLEET_JOBS_MAX_FILES": "20"})
    assert settings["jobs"]["max_files"] == 20
    assert settings.sources["jobs.max_files"] == "env FLEET_JOBS_MAX_FILES"


def test_empty_fleet_config_means_no_overlay():
    assert load(environ={"FLEET_CONFIG": ""}).sources["fleet.data_dir"] == "default"


def test_production_overlay_file_loads():
    production = str(config.CONFIG_DIR / "production.toml")
    settings = load(environ={"FLEET_CONFIG": production, "FLEET_REDIS_URL": "redis://:pw@127.0.0.1:6379/0"})
    assert settings["sandbox"]["network"] == "namespace"
    assert settings.data_dir == Path("/var/lib/fleet")
    with pytest.raises(ConfigError, match="require_password is on"):
        load(environ={"FLEET_CONFIG": production})


@pytest.mark.parametrize(
    "text, match",
    [
        ("[nosuchsection]\nx = 1\n", r"unknown section \[nosuchsection\]"),
        ("[sandbox]\nnosuchkey = 1\n", r"unknown setting sandbox\.nosuchkey"),
        ("sandbox = 1\n", r"unknown section \[sandbox\]"),  # a known name, but not a table
    ],
)
def test_overlay_unknown_section_or_key_is_config_error(tmp_path, text, match):
    path = _overlay(tmp_path, text)
    with pytest.raises(ConfigError, match=match) as info:
        load(environ={"FLEET_CONFIG": str(path)})
    assert str(path) in str(info.value)


def test_overlay_missing_file_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load(environ={"FLEET_CONFIG": str(tmp_path / "absent.toml")})


def test_overlay_invalid_toml_is_config_error(tmp_path):
    path = _overlay(tmp_path, "[sandbox\ntimeout = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(environ={"FLEET_CONFIG": str(path)})


def test_env_converts_to_default_type_even_after_int_overlay_of_float_key(tmp_path):
    path = _overlay(tmp_path, "[redis]\nconnect_timeout = 5\n")
    settings = load(environ={"FLEET_CONFIG": str(path), "FLEET_REDIS_CONNECT_TIMEOUT": "2.5"})
    assert settings["redis"]["connect_timeout"] == 2.5
