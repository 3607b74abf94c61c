"""Redis ACL users (fleet.acl) against the real test redis-server: an agent owns its namespace,
reads shared keys, and gets NOPERM on everything else; consolidation reads all agents and writes
shared keys; templates, secrets and URLs are checked on their own."""

from __future__ import annotations

import json
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import redis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from fleet.acl import (AGENT_RULES, LEARNING_RULES, AclSettings, Secrets, agent_url, apply_from_settings,
                       apply_users, learning_url, render_rules, url_for)
from fleet.config import Settings
from fleet.errors import ConfigError
from fleet.store import Keys

AGENTS = ["a1", "a2", "a10"]


@dataclass
class Fleet:
    """Users applied for AGENTS under a unique prefix and user names, on the test server."""

    url: str
    admin: redis.Redis
    acl: AclSettings
    keys: Keys
    secrets: Secrets = field(default_factory=Secrets)
    clients: list[redis.Redis] = field(default_factory=list)

    def apply(self) -> list[str]:
        return apply_users(self.admin, self.acl, prefix=self.keys.prefix, agents=AGENTS, secrets=self.secrets)

    def login(self, user: str, password: str | None = None) -> redis.Redis:
        """A client authenticated as ``user`` (with its password from ``secrets`` by default)."""
        pw = self.secrets.password_for(user, create=False) if password is None else password
        client = redis.Redis.from_url(url_for(self.url, user, pw), decode_responses=True)
        self.clients.append(client)
        client.ping()
        return client

    def agent(self, agent_id: str) -> redis.Redis:
        return self.login(self.acl.agent_name(agent_id))

    def learning(self) -> redis.Redis:
        return self.login(self.acl.learning_user)


def _users_with(admin: redis.Redis, tag: str) -> list[str]:
    return [u for u in admin.acl_users() if tag in u]


@pytest.fixture
def admin(redis_server) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def tag(admin) -> Iterator[str]:
    """A unique tag for prefixes and user names; its users and keys are removed afterwards."""
    value = f"t{uuid.uuid4().hex[:10]}"
    yield value
    for user in _users_with(admin, value):
        admin.execute_command("ACL", "DELUSER", user)
    for key in admin.scan_iter(f"{value}:*"):
        admin.delete(key)


@pytest.fixture
def fleet(redis_server, admin, tag) -> Iterator[Fleet]:
    acl = AclSettings(enabled=True, agent_user=f"{tag}-agent-{{agent}}", learning_user=f"{tag}-learning")
    made = Fleet(url=redis_server, admin=admin, acl=acl, keys=Keys(tag))
    made.apply()
    yield made
    for client in made.clients:
        client.close()


@pytest.fixture
def seeded(fleet) -> Fleet:
    """Each agent's keys and the shared keys hold known values (written by the admin)."""
    k = fleet.keys
    for agent in AGENTS:
        fleet.admin.set(k.agent(agent, "micro"), f"lora-{agent}")
        fleet.admin.hset(k.agent(agent, "info"), mapping={"agent_id": agent})
    fleet.admin.set(k.shared("base"), "base-lora")
    fleet.admin.hset(k.shared("patterns"), mapping={"p": "1"})
    fleet.admin.xadd(k.shared("events"), {"e": "x"}, id="1-0")
    return fleet


# --- an agent user -----------------------------------------------------------------------------


def test_agent_reads_writes_and_deletes_its_own_keys(fleet):
    a1 = fleet.agent("a1")
    key = fleet.keys.agent("a1", "micro")
    assert a1.set(key, "v1") is True
    assert a1.get(key) == "v1"
    assert a1.hset(fleet.keys.agent("a1", "stats"), "n", 3) == 1
    assert a1.delete(key) == 1
    assert fleet.admin.exists(key) == 0


def test_agent_reads_shared_keys(seeded):
    a1 = seeded.agent("a1")
    k = seeded.keys
    assert a1.get(k.shared("base")) == "base-lora"
    assert a1.hgetall(k.shared("patterns")) == {"p": "1"}
    assert a1.xrange(k.shared("events")) == [("1-0", {"e": "x"})]


@pytest.mark.parametrize("write", [
    lambda c, key: c.set(key, "evil"),
    lambda c, key: c.append(key, "evil"),
    lambda c, key: c.delete(key),
    lambda c, key: c.expire(key, 1),
    lambda c, key: c.rename(key, key + "-moved"),
], ids=["SET", "APPEND", "DEL", "EXPIRE", "RENAME"])
def test_agent_cannot_write_shared_keys(seeded, write):
    key = seeded.keys.shared("base")
    with pytest.raises(NoPermissionError, match="no permissions to access"):
        write(seeded.agent("a1"), key)
    assert seeded.admin.get(key) == "base-lora"
    assert seeded.admin.ttl(key) == -1


def test_agent_cannot_write_shared_hash_or_stream(seeded):
    a1, k = seeded.agent("a1"), seeded.keys
    with pytest.raises(NoPermissionError):
        a1.hset(k.shared("patterns"), "p", "evil")
    with pytest.raises(NoPermissionError):
        a1.xadd(k.shared("events"), {"e": "evil"})
    assert seeded.admin.hgetall(k.shared("patterns")) == {"p": "1"}
    assert seeded.admin.xlen(k.shared("events")) == 1


def test_agent_cannot_copy_its_keys_over_shared_ones(seeded):
    with pytest.raises(NoPermissionError):
        seeded.agent("a1").copy(seeded.keys.agent("a1", "micro"), seeded.keys.shared("base"), replace=True)
    assert seeded.admin.get(seeded.keys.shared("base")) == "base-lora"


@pytest.mark.parametrize("other", ["a2", "a10"])  # a10: "a1" must not match as a name prefix
@pytest.mark.parametrize("access", [
    lambda c, key: c.get(key),
    lambda c, key: c.hgetall(key.replace(":micro", ":info")),
    lambda c, key: c.exists(key),
    lambda c, key: c.type(key),
    lambda c, key: c.dump(key),
    lambda c, key: c.set(key, "evil"),
    lambda c, key: c.delete(key),
    lambda c, key: c.hset(key.replace(":micro", ":info"), "agent_id", "evil"),
], ids=["GET", "HGETALL", "EXISTS", "TYPE", "DUMP", "SET", "DEL", "HSET"])
def test_agent_gets_noperm_on_another_agents_keys(seeded, other, access):
    key = seeded.keys.agent(other, "micro")
    with pytest.raises(NoPermissionError, match="no permissions to access"):
        access(seeded.agent("a1"), key)
    assert seeded.admin.get(key) == f"lora-{other}"
    assert seeded.admin.hgetall(seeded.keys.agent(other, "info")) == {"agent_id": other}


def test_agent_cannot_reach_other_agents_through_a_script(seeded):
    """Lua runs with the caller's ACL: a script is no way around NOPERM."""
    a1 = seeded.agent("a1")
    other = seeded.keys.agent("a2", "micro")
    with pytest.raises(NoPermissionError):  # a declared key is checked before the script runs
        a1.eval("return redis.call('SET', KEYS[1], 'evil')", 1, other)
    with pytest.raises(ResponseError, match="can't access"):  # an undeclared one inside it
        a1.eval("return redis.call('SET', ARGV[1], 'evil')", 0, other)
    assert seeded.admin.get(other) == "lora-a2"


def test_agent_cannot_use_keys_outside_the_fleet_prefix(fleet):
    with pytest.raises(NoPermissionError):
        fleet.agent("a1").set(f"{fleet.keys.prefix}-other:x", "1")
    with pytest.raises(NoPermissionError):
        fleet.agent("a1").get("celery-task-meta-x")


# In @dangerous on Redis 7.0 (ACL CAT dangerous): flushall, flushdb, keys, config|*, acl|setuser,
# acl|list, info, client|list, client|kill, swapdb, sort, shutdown, monitor, debug, …  (SHUTDOWN
# and MONITOR are left out: if they were allowed they would stop or hang the shared test server.)
@pytest.mark.parametrize("command", [
    ("FLUSHALL",), ("FLUSHDB",), ("KEYS", "*"), ("CONFIG", "GET", "requirepass"),
    ("CONFIG", "SET", "maxmemory", "1"), ("ACL", "SETUSER", "{me}", "allkeys"), ("ACL", "LIST"),
    ("ACL", "DELUSER", "default"), ("INFO",), ("CLIENT", "LIST"), ("CLIENT", "KILL", "TYPE", "normal"),
    ("SWAPDB", "0", "1"), ("SORT", "{key}"),
], ids=lambda c: " ".join(c[:2]))
def test_agent_cannot_run_dangerous_commands(seeded, command):
    me, key = seeded.acl.agent_name("a1"), seeded.keys.agent("a1", "micro")
    args = [a.format(me=me, key=key) for a in command]
    with pytest.raises(NoPermissionError, match="no permissions to run"):
        seeded.agent("a1").execute_command(*args)
    assert seeded.admin.get(seeded.keys.shared("base")) == "base-lora"  # nothing was flushed/swapped
    with pytest.raises(NoPermissionError):  # ACL SETUSER/DELUSER did not widen anything
        seeded.agent("a1").get(seeded.keys.agent("a2", "micro"))
    assert seeded.admin.config_get("maxmemory") == {"maxmemory": "0"}


def test_agent_has_no_pubsub_channels(fleet):
    with pytest.raises(NoPermissionError):
        fleet.agent("a1").publish(f"{fleet.keys.prefix}:events", "x")


# --- the learning (consolidation) user ---------------------------------------------------------


def test_learning_user_reads_every_agent_and_writes_shared_keys(seeded):
    learning, k = seeded.learning(), seeded.keys
    assert [learning.get(k.agent(a, "micro")) for a in AGENTS] == [f"lora-{a}" for a in AGENTS]
    assert learning.hgetall(k.agent("a2", "info")) == {"agent_id": "a2"}
    assert learning.set(k.shared("base"), "consolidated") is True
    assert learning.hset(k.shared("patterns"), "q", "2") == 1
    assert seeded.admin.get(k.shared("base")) == "consolidated"


def test_learning_user_can_reset_an_agents_micro_lora(seeded):
    learning, key = seeded.learning(), seeded.keys.agent("a2", "sona", "micro")
    assert learning.set(key, "fresh") is True
    assert seeded.admin.get(key) == "fresh"


def test_learning_user_reads_but_cannot_write_an_agents_other_keys(seeded):
    learning, key = seeded.learning(), seeded.keys.agent("a2", "info")
    seeded.admin.set(key, "registry")
    assert learning.get(key) == "registry"
    with pytest.raises(NoPermissionError):
        learning.set(key, "changed")


def test_learning_user_is_confined_to_the_fleet_prefix(seeded):
    learning = seeded.learning()
    with pytest.raises(NoPermissionError):
        learning.get("celery-task-meta-x")
    with pytest.raises(NoPermissionError):
        learning.set(seeded.keys.job("j1", "submitted"), "1")
    with pytest.raises(NoPermissionError, match="no permissions to run"):
        learning.flushall()
    assert seeded.admin.get(seeded.keys.shared("base")) == "base-lora"


# --- render_rules --------------------------------------------------------------------------------


def test_default_templates_render_to_the_measured_rules():
    assert render_rules(AGENT_RULES, prefix="fleet", agent="a1") == [
        "resetkeys", "~fleet:agent:a1:*", "%R~fleet:shared:*", "~fleet:cache:*", "resetchannels", "+@all", "-@dangerous"]
    assert render_rules(LEARNING_RULES, prefix="fleet") == [
        "resetkeys", "%R~fleet:agent:*", "~fleet:agent:*:sona:*", "~fleet:shared:*", "resetchannels", "+@all",
        "-@dangerous"]


@pytest.mark.parametrize("template", [
    AGENT_RULES + " nopass", "allkeys +@all -@dangerous", "~* +@all -@dangerous", "%R~* -@all +get",
    "%RW~* -@all +get", "~{prefix}:agent:* +@dangerous", "~{prefix}:agent:* +@all",
    "~{prefix}:agent:* -@dangerous +@all", "~{prefix}:agent:* allcommands", "~other:* -@all +get",
    "~{prefix}* -@all +get", "~{prefix}:x:* allchannels", "~{prefix}:x:* &*", "~{prefix}:x:* >secret",
    "~{prefix}:x:* #" + "0" * 64, "reset ~{prefix}:x:*", "~{prefix}:x:* resetpass", "off ~{prefix}:x:*",
    "(~* +get) ~{prefix}:x:*", "~{prefix}:x:* {unknown}", "~{prefix}:agent:{agent}:*",
], ids=lambda t: t[:40])
def test_render_rules_refuses_unsafe_templates(template):
    with pytest.raises(ValueError):
        render_rules(template, prefix="fleet")


def test_render_rules_refusal_names_the_rule():
    with pytest.raises(ValueError, match="nopass"):
        render_rules("nopass ~{prefix}:x:*", prefix="fleet")
    with pytest.raises(ValueError, match=r"~\*"):
        render_rules("~* -@all", prefix="fleet")


@pytest.mark.parametrize("agent", ["", "a1\n", "a:b", "a*", "a?", "[a]", "a b", "../a", "a/b", "x" * 65, "é"])
def test_render_rules_refuses_bad_agent_ids(agent):
    with pytest.raises(ValueError, match="invalid agent id"):
        render_rules(AGENT_RULES, prefix="fleet", agent=agent)


@pytest.mark.parametrize("prefix", ["", "fleet\n", "fl*", "fl?", "fl[a]", "f l", "a" * 65])
def test_render_rules_refuses_prefixes_that_widen_patterns(prefix):
    with pytest.raises(ValueError, match="invalid key prefix"):
        render_rules(LEARNING_RULES, prefix=prefix)


def test_apply_users_checks_every_template_before_touching_redis(admin, tag):
    acl = AclSettings(agent_user=f"{tag}-agent-{{agent}}", learning_user=f"{tag}-learning",
                      learning_rules="~* +@all -@dangerous")
    with pytest.raises(ValueError):
        apply_users(admin, acl, prefix=tag, agents=["a1"], secrets=Secrets())
    assert _users_with(admin, tag) == []


# --- Secrets -------------------------------------------------------------------------------------


def test_secrets_file_is_private_and_round_trips(tmp_path):
    path = tmp_path / "secrets" / "redis-users.json"
    store = Secrets()
    first, second = store.password_for("u1"), store.password_for("u2")
    store.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["redis-users.json"]  # no temporary file left
    assert json.loads(path.read_text()) == {"format": 1, "users": {"u1": first, "u2": second}}
    loaded = Secrets.load(path)
    assert loaded == store
    assert loaded.password_for("u1") == first and loaded.password_for("u2", create=False) == second
    assert first != second and len(first) >= 32


def test_secrets_resave_keeps_mode_and_rotate_changes_one_password(tmp_path):
    path = tmp_path / "s.json"
    store = Secrets()
    old, other = store.password_for("u1"), store.password_for("u2")
    store.save(path)
    new = store.rotate("u1")
    store.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert new != old
    assert Secrets.load(path).users == {"u1": new, "u2": other}


def test_secrets_never_show_passwords(tmp_path):
    store = Secrets()
    password = store.password_for("u1")
    assert password not in repr(store) and password not in str(store)


def test_secrets_missing_user_or_file(tmp_path):
    with pytest.raises(KeyError):
        Secrets().password_for("nobody", create=False)
    with pytest.raises(FileNotFoundError):
        Secrets.load(tmp_path / "none.json")
    assert Secrets.load(tmp_path / "none.json", missing_ok=True).users == {}


def test_secrets_refuses_a_file_others_can_read(tmp_path):
    path = tmp_path / "s.json"
    Secrets({"u": "p"}).save(path)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        Secrets.load(path)


@pytest.mark.parametrize("text", ["not json", "[]", '{"format": 2, "users": {}}', '{"format": 1}',
                                  '{"format": 1, "users": {"u": 1}}'])
def test_secrets_refuses_malformed_files(tmp_path, text):
    path = tmp_path / "s.json"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(ConfigError):
        Secrets.load(path)


# --- apply_users -------------------------------------------------------------------------------


def test_apply_users_returns_names_and_is_idempotent(fleet):
    a1_before = fleet.agent("a1")
    passwords = dict(fleet.secrets.users)
    names = fleet.apply()
    assert names == [fleet.acl.agent_name(a) for a in AGENTS] + [fleet.acl.learning_user]
    assert sorted(_users_with(fleet.admin, fleet.keys.prefix)) == sorted(names)
    assert fleet.secrets.users == passwords
    assert a1_before.set(fleet.keys.agent("a1", "x"), "1") is True
    assert fleet.agent("a1").get(fleet.keys.agent("a1", "x")) == "1"
    user = fleet.admin.acl_getuser(fleet.acl.agent_name("a1"))
    assert len(user["passwords"]) == 1
    assert user["keys"] == [f"~{fleet.keys.prefix}:agent:a1:*", f"%R~{fleet.keys.prefix}:shared:*",
                            f"~{fleet.keys.prefix}:cache:*"]


def test_apply_users_replaces_an_edited_template(fleet):
    """ACL SETUSER is additive; apply_users resets the user, so removed rules really go even
    when the new template does not say resetkeys."""
    fleet.acl = replace(fleet.acl, agent_rules="%R~{prefix}:agent:{agent}:* +@all -@dangerous")
    fleet.apply()
    key = fleet.keys.agent("a1", "x")
    with pytest.raises(NoPermissionError):
        fleet.agent("a1").set(key, "1")
    with pytest.raises(NoPermissionError):
        fleet.agent("a1").get(fleet.keys.shared("base"))


def test_a_rotated_password_replaces_the_old_one(fleet):
    user = fleet.acl.agent_name("a1")
    old = fleet.secrets.password_for(user)
    new = fleet.secrets.rotate(user)
    fleet.apply()
    with pytest.raises(AuthenticationError):
        fleet.login(user, old)
    assert fleet.login(user, new).acl_whoami() == user
    assert len(fleet.admin.acl_getuser(user)["passwords"]) == 1


def test_apply_users_never_logs_passwords(fleet, caplog):
    caplog.set_level("DEBUG", logger="fleet.acl")
    fleet.apply()
    assert fleet.acl.learning_user in caplog.text
    assert all(pw not in caplog.text for pw in fleet.secrets.users.values())


# --- URLs ----------------------------------------------------------------------------------------


def test_url_for_quotes_credentials_and_keeps_the_rest():
    url = url_for("rediss://old:secret@example.org:6380/3?socket_timeout=5", "u@:/ %", "p@ss:w/rd#?%&=")
    assert url == "rediss://u%40%3A%2F%20%25:p%40ss%3Aw%2Frd%23%3F%25%26%3D@example.org:6380/3?socket_timeout=5"
    assert url_for("redis://[::1]:6399/0", "u", "p") == "redis://u:p@[::1]:6399/0"


def test_a_url_with_special_characters_authenticates(redis_server, admin, tag):
    user, password = f"{tag}-u@:/%#?é", "p@ss:w/rd#?% &=é"
    admin.execute_command("ACL", "SETUSER", user, "reset", "on", f">{password}", "+acl|whoami")
    client = redis.Redis.from_url(url_for(redis_server, user, password), decode_responses=True)
    try:
        assert client.acl_whoami() == user
    finally:
        client.close()


def _settings(redis_url: str, data_dir: Path, prefix: str, **acl) -> Settings:
    values = {"fleet": {"prefix": prefix, "data_dir": str(data_dir)}, "redis": {"url": redis_url}, "acl": acl}
    return Settings(values=values, sources={})


def test_urls_are_unchanged_when_acl_is_disabled(tmp_path):
    settings = _settings("redis://127.0.0.1:6399/0", tmp_path, "fleet", enabled=False)
    assert agent_url(settings, "a1") == "redis://127.0.0.1:6399/0"
    assert learning_url(settings) == "redis://127.0.0.1:6399/0"
    no_section = Settings(values={"fleet": {"prefix": "fleet", "data_dir": str(tmp_path)},
                                  "redis": {"url": "redis://h/0"}}, sources={})
    assert agent_url(no_section, "a1") == "redis://h/0"


def test_agent_url_without_secrets_file_says_run_fleet_acl_apply(tmp_path):
    settings = _settings("redis://127.0.0.1:6399/0", tmp_path, "fleet", enabled=True)
    with pytest.raises(ConfigError, match="fleet acl apply") as info:
        agent_url(settings, "a1")
    assert str(tmp_path / "secrets" / "redis-users.json") in str(info.value)
    with pytest.raises(ConfigError, match="fleet acl apply"):
        learning_url(settings)


def test_agent_url_without_the_users_password_says_run_fleet_acl_apply(tmp_path):
    path = tmp_path / "elsewhere" / "users.json"
    Secrets({"fleet-learning": "pw"}).save(path)
    settings = _settings("redis://127.0.0.1:6399/0", tmp_path, "fleet", enabled=True, secrets_file=str(path))
    assert learning_url(settings) == "redis://fleet-learning:pw@127.0.0.1:6399/0"
    with pytest.raises(ConfigError, match="fleet-agent-a9.*fleet acl apply"):
        agent_url(settings, "a9")


def test_acl_apply_then_agent_url_connects_as_the_agent(redis_server, admin, tag, tmp_path):
    """End to end as ops and the agent would do it: NOPERM on another agent's keys."""
    settings = _settings(redis_server, tmp_path, tag, enabled=True, agent_user=f"{tag}-agent-{{agent}}",
                         learning_user=f"{tag}-learning")
    names = apply_from_settings(admin, settings, ["a1", "a2"])
    assert names == [f"{tag}-agent-a1", f"{tag}-agent-a2", f"{tag}-learning"]
    path = tmp_path / "secrets" / "redis-users.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert apply_from_settings(admin, settings, ["a1", "a2"]) == names  # a rerun reuses the file
    admin.set(Keys(tag).agent("a2", "micro"), "lora-a2")
    a1 = redis.Redis.from_url(agent_url(settings, "a1"), decode_responses=True)
    learning = redis.Redis.from_url(learning_url(settings), decode_responses=True)
    try:
        assert a1.acl_whoami() == f"{tag}-agent-a1"
        assert a1.set(Keys(tag).agent("a1", "micro"), "mine") is True
        with pytest.raises(NoPermissionError):
            a1.get(Keys(tag).agent("a2", "micro"))
        assert learning.get(Keys(tag).agent("a2", "micro")) == "lora-a2"
    finally:
        a1.close()
        learning.close()
