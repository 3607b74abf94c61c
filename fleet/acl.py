"""Redis ACL users: one per agent, one for consolidation, and the passwords that go with them.

Each agent talks to its namespace as its own Redis user: read/write on
``<prefix>:agent:<id>:*``, read-only on ``<prefix>:shared:*``, NOPERM on everything else (other
agents' keys included), no @dangerous commands (FLUSHALL, FLUSHDB, KEYS, CONFIG, ACL, INFO,
SHUTDOWN, MONITOR, DEBUG, CLIENT KILL/LIST, …) and no pub/sub channels. The consolidation task
runs as the learning user (see :data:`LEARNING_RULES`). Ops creates the users (`fleet acl apply`,
:func:`apply_from_settings`) from the templates in the ``[acl]`` config section; the generated
passwords live in a 0600 JSON file (:class:`Secrets`), and :func:`agent_url` /
:func:`learning_url` turn them into Redis URLs.

Known limits of key-pattern ACLs (Redis 7.0): SCAN and RANDOMKEY are not key commands, so an
agent can still see the *names* (never the values) of other keys; a password change does not
disconnect clients that are already authenticated (``CLIENT KILL USER <name>`` does).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets as _secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import redis

from fleet.config import Settings
from fleet.errors import ConfigError
from fleet.output import write_atomic
from fleet.store import AGENT_ID

log = logging.getLogger(__name__)

AGENT_RULES = "resetkeys ~{prefix}:agent:{agent}:* %R~{prefix}:shared:* ~{prefix}:cache:* resetchannels +@all -@dangerous"
"""An agent: read/write its own namespace and the result cache, read-only shared keys, nothing
else; all commands but @dangerous. ``{agent}`` ends in ``:`` in the pattern, so agent ``a1`` does not match ``a10``."""

LEARNING_RULES = "resetkeys %R~{prefix}:agent:* ~{prefix}:agent:*:sona:* ~{prefix}:shared:* resetchannels +@all -@dangerous"
"""Consolidation: read every agent's namespace, read/write the agents' learning state
(``…:sona:*``, to reset each MicroLoRA after folding it into the shared BaseLoRA) and the shared
keys. No access outside the fleet's prefix (job markers, Celery's queues and results) and no
@dangerous commands."""

SECRETS_FORMAT = 1
PREFIX = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
"""A prefix that is safe inside an ACL key pattern: no glob characters, no whitespace."""
_REFUSED_TOKENS = {
    "nopass": "lets anyone in without a password",
    "allkeys": "grants every key (~*)",
    "allchannels": "grants every pub/sub channel",
    "&*": "grants every pub/sub channel",
    "+@dangerous": "grants FLUSHALL, CONFIG, ACL, KEYS, SHUTDOWN, …",
    "reset": "would undo the user's password and switch it off (apply_users resets the user itself)",
    "resetpass": "is added by apply_users; passwords never belong in a template",
    "on": "is added by apply_users",
    "off": "is added by apply_users",
}
_KEY_PATTERN = re.compile(r"^(?:%[RW]+)?~(.*)$")
_ALL_COMMANDS = {"+@all", "allcommands"}


@dataclass(frozen=True)
class AclSettings:
    """The ``[acl]`` config section. ``agent_user`` is a template with ``{agent}``; the rule
    templates take ``{prefix}`` (and ``{agent}``); ``secrets_file`` empty means
    ``<data_dir>/secrets/redis-users.json``."""

    enabled: bool = False
    agent_user: str = "fleet-agent-{agent}"
    learning_user: str = "fleet-learning"
    agent_rules: str = AGENT_RULES
    learning_rules: str = LEARNING_RULES
    secrets_file: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> "AclSettings":
        """From ``settings["acl"]``; a missing section or key takes the default above (so ACLs
        stay off until the section exists)."""
        section: Mapping[str, Any] = settings.values.get("acl", {})
        known = {k: section[k] for k in cls.__dataclass_fields__ if k in section}
        return cls(**known)

    def agent_name(self, agent_id: str) -> str:
        """The Redis user name of ``agent_id`` (ValueError for an invalid id)."""
        return self.agent_user.format(agent=_checked_agent(agent_id))

    def secrets_path(self, data_dir: Path) -> Path:
        """Where the passwords are kept."""
        if self.secrets_file:
            return Path(os.path.expanduser(self.secrets_file))
        return data_dir / "secrets" / "redis-users.json"


def _checked_agent(agent_id: str) -> str:
    """``agent_id`` if it matches :data:`fleet.store.AGENT_ID`, else ValueError."""
    if not isinstance(agent_id, str) or not AGENT_ID.fullmatch(agent_id):
        raise ValueError(f"invalid agent id {agent_id!r} (allowed: {AGENT_ID.pattern})")
    return agent_id


def _checked_prefix(prefix: str) -> str:
    """``prefix`` if it cannot widen a key pattern (no ``*``, ``?``, ``[``, spaces), else ValueError."""
    if not PREFIX.fullmatch(prefix):
        raise ValueError(f"invalid key prefix {prefix!r} for ACL rules (allowed: {PREFIX.pattern})")
    return prefix


def render_rules(template: str, *, prefix: str, agent: str | None = None) -> list[str]:
    """The ACL SETUSER rules of ``template`` filled with ``prefix`` (and ``agent``), one per item.

    Contract: ValueError for an invalid prefix or agent id, a ``{placeholder}`` without a value,
    or an unsafe template: ``nopass``, ``allkeys``, ``~*`` or any key pattern outside
    ``<prefix>:``, ``+@dangerous``, ``+@all``/``allcommands`` not followed by ``-@dangerous``,
    all channels, selectors, passwords or on/off/reset (``apply_users`` adds those itself)."""
    values = {"prefix": _checked_prefix(prefix)}
    if agent is not None:
        values["agent"] = _checked_agent(agent)
    try:
        rules = template.format(**values).split()
    except (KeyError, IndexError) as exc:
        raise ValueError(f"ACL template {template!r} needs a value for {exc}") from None
    for rule in rules:
        _check_rule(rule, prefix)
    _check_dangerous_removed(rules)
    return rules


def _check_rule(rule: str, prefix: str) -> None:
    """ValueError if one rendered rule is unsafe."""
    low = rule.lower()
    if low in _REFUSED_TOKENS:
        raise ValueError(f"unsafe ACL rule {rule!r}: it {_REFUSED_TOKENS[low]}")
    if rule[0] in "><#!":
        raise ValueError("ACL templates must not hold passwords; apply_users sets them")
    if "(" in rule or ")" in rule:
        raise ValueError(f"unsupported ACL rule {rule!r}: selectors are not allowed in templates")
    pattern = _KEY_PATTERN.match(rule)
    if pattern and not pattern.group(1).startswith(f"{prefix}:"):
        raise ValueError(f"unsafe ACL rule {rule!r}: key patterns (and never ~*) must start with {prefix!r}:")


def _check_dangerous_removed(rules: list[str]) -> None:
    """ValueError if the last grant of all commands is not followed by ``-@dangerous``."""
    grants = [i for i, rule in enumerate(rules) if rule.lower() in _ALL_COMMANDS]
    if grants and "-@dangerous" not in (r.lower() for r in rules[grants[-1]:]):
        raise ValueError("unsafe ACL template: +@all/allcommands must be followed by -@dangerous")


@dataclass
class Secrets:
    """Generated Redis passwords by user name; on disk ``{"format": 1, "users": {name: password}}``.

    ``repr`` never shows the passwords."""

    users: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, path: Path, *, missing_ok: bool = False) -> "Secrets":
        """The passwords in ``path``; empty if it is missing and ``missing_ok``, else
        FileNotFoundError. ConfigError if the file is malformed or readable by others."""
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            if missing_ok:
                return cls()
            raise
        if mode & 0o077:
            raise ConfigError(f"{path} holds Redis passwords but has mode {mode & 0o777:o}; "
                              f"run `chmod 600 {path}`")
        return cls(_parse_users(path))

    def save(self, path: Path) -> None:
        """Write atomically (temporary file + rename) as mode 0600; a directory that has to be
        created is made 0700."""
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o700)
            path.parent.chmod(0o700)  # mkdir's mode is cut by the umask
        write_atomic(path, json.dumps({"format": SECRETS_FORMAT, "users": self.users}, indent=2, sort_keys=True) + "\n")
        path.chmod(0o600)

    def password_for(self, user: str, create: bool = True) -> str:
        """``user``'s password; a new random one is made (and kept) if there is none and
        ``create``, else KeyError."""
        if user not in self.users:
            if not create:
                raise KeyError(user)
            self.users[user] = _secrets.token_urlsafe(24)
        return self.users[user]

    def rotate(self, user: str) -> str:
        """Replace ``user``'s password with a new random one and return it (apply and save it)."""
        self.users.pop(user, None)
        return self.password_for(user)


def _parse_users(path: Path) -> dict[str, str]:
    """The ``users`` mapping of a secrets file, or ConfigError naming what is wrong."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read Redis secrets {path}: {exc}") from None
    if not isinstance(data, dict):
        data = {}
    users = data.get("users")
    if data.get("format") != SECRETS_FORMAT or not isinstance(users, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in users.items()):
        raise ConfigError(f"{path} is not a format-{SECRETS_FORMAT} Redis secrets file; "
                          "rerun `fleet acl apply` to regenerate it")
    return dict(users)


def _user_rules(acl: AclSettings, prefix: str, agents: list[str]) -> dict[str, list[str]]:
    """User name → rendered rules for every agent and the learning user (all checked first)."""
    users = {acl.agent_name(a): render_rules(acl.agent_rules, prefix=prefix, agent=a) for a in agents}
    users[acl.learning_user] = render_rules(acl.learning_rules, prefix=prefix)
    return users


def apply_users(admin: redis.Redis, acl: AclSettings, *, prefix: str, agents: list[str],
                secrets: Secrets) -> list[str]:
    """Create or update the agent users and the learning user on ``admin``'s server; return
    their names (agents first, in order, then the learning user).

    Each user is set in one atomic ``ACL SETUSER <name> reset on ><password> <rules…>``:
    ``reset`` drops old passwords, key patterns, commands and selectors, so applying again is
    idempotent and an edited template or rotated password fully replaces the old one. Passwords
    missing from ``secrets`` are created there; the caller saves ``secrets``. Every template is
    validated before any user is touched (ValueError). Passwords are never logged or put into
    exceptions."""
    users = _user_rules(acl, prefix, agents)
    for name, rules in users.items():
        password = secrets.password_for(name)
        try:
            admin.execute_command("ACL", "SETUSER", name, "reset", "on", f">{password}", *rules)
        except redis.ResponseError as exc:
            raise ConfigError(f"ACL SETUSER {name} failed: {exc}") from None
        log.info("Redis ACL user %s: %s", name, " ".join(rules))
    persist(admin)
    return list(users)


def persist(admin: redis.Redis) -> bool:
    """``ACL SAVE``: write the users to the server's ``aclfile`` so that they survive a restart
    (``fleet run-redis`` configures one). False, logged, when the server has no aclfile: then the
    users must be applied again after each Redis restart (`fleet acl apply`)."""
    try:
        admin.execute_command("ACL", "SAVE")
        return True
    except redis.ResponseError as exc:
        log.warning("Redis ACL users were not saved (%s): apply them again after a Redis restart", exc)
        return False


def prepare_secrets(settings: Settings, agents: list[str]) -> Secrets:
    """Load (or start) the secrets file, add passwords for the users of ``agents`` and the learning
    user, save it. Agents can start once this ran, before their users exist in Redis."""
    acl = AclSettings.from_settings(settings)
    path = acl.secrets_path(settings.data_dir)
    store = Secrets.load(path, missing_ok=True)
    for name in _user_rules(acl, settings.prefix, agents):
        store.password_for(name)
    store.save(path)
    return store


def apply_from_settings(admin: redis.Redis, settings: Settings, agents: list[str]) -> list[str]:
    """What `fleet acl apply` does: :func:`prepare_secrets`, then apply the users; returns the user
    names. The file is saved before the users are applied, so a failure part-way leaves passwords
    that a rerun applies."""
    store = prepare_secrets(settings, agents)
    return apply_users(admin, AclSettings.from_settings(settings), prefix=settings.prefix, agents=agents, secrets=store)


def url_for(base_url: str, user: str, password: str) -> str:
    """``base_url`` with its credentials replaced by ``user``:``password`` (both URL-quoted);
    scheme, host, port, path (db) and query are kept."""
    parts = urlsplit(base_url)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def _url_as(settings: Settings, user: str) -> str:
    """``redis.url`` as ``user`` if ACLs are enabled, else unchanged; ConfigError with the
    `fleet acl apply` hint if the secrets file or the user's password is missing."""
    base = settings["redis"]["url"]
    acl = AclSettings.from_settings(settings)
    if not acl.enabled:
        return base
    path = acl.secrets_path(settings.data_dir)
    try:
        password = Secrets.load(path).password_for(user, create=False)
    except FileNotFoundError:
        raise ConfigError(f"acl.enabled is set but there is no Redis secrets file {path}; "
                          "run `fleet acl apply`") from None
    except KeyError:
        raise ConfigError(f"no password for Redis user {user} in {path}; run `fleet acl apply`") from None
    return url_for(base, user, password)


def agent_url(settings: Settings, agent_id: str) -> str:
    """The Redis URL ``agent_id`` uses for its namespace (ValueError for an invalid id)."""
    return _url_as(settings, AclSettings.from_settings(settings).agent_name(agent_id))


def learning_url(settings: Settings) -> str:
    """The Redis URL of the consolidation task."""
    return _url_as(settings, AclSettings.from_settings(settings).learning_user)
