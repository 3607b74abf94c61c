"""The result cache against a real redis-server: round trips, TTL, corrupt entries, encryption,
size caps, counters, clearing, and the cache key."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import socket
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import replace

import msgpack
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from fleet import cache as fc
from fleet.cache import CacheCorrupt, CacheSettings, ResultCache, cache_key
from fleet.config import Settings
from fleet.errors import ConfigError
from fleet.jobs import Job, Options

MARKER = "PLAINTEXT-MARKER-3b9e1c"
REPORT = {
    "status": "ok",
    "marker": MARKER,
    "tests": ["def test_a():\n    assert f(1) == 1\n", "ünïcødé ✓ 中文 🐍"],
    "quality": 0.8731,
    "nested": {"coverage": [1.5, -2.25, 1e-300, 3], "ok": True, "none": None, "empty": {}},
}
KEY_A = hashlib.sha256(b"a").hexdigest()
KEY_B = hashlib.sha256(b"b").hexdigest()
KEY_C = hashlib.sha256(b"c").hexdigest()


def aes_key_text() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


@pytest.fixture
def client(redis_server) -> redis.Redis:
    return redis.Redis.from_url(redis_server)


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_cache(client, prefix) -> Callable[..., ResultCache]:
    """ResultCache on the test Redis under this test's prefix; keyword arguments go to CacheSettings."""

    def make(environ: dict[str, str] | None = None, **settings) -> ResultCache:
        return ResultCache(client, prefix, CacheSettings(**settings), environ=environ or {})

    return make


def counters(cache: ResultCache) -> tuple[int, int, int]:
    stats = cache.stats()
    return stats["hits"], stats["misses"], stats["errors"]


# --- round trip and TTL ------------------------------------------------------------------------


@pytest.mark.parametrize("level", [0, 6, 9])
def test_round_trip_returns_an_equal_report(make_cache, level):
    cache = make_cache(level=level)
    assert cache.put(KEY_A, REPORT, target="pkg.mod") is True
    got = cache.get(KEY_A)
    assert got == REPORT
    assert isinstance(got["nested"]["coverage"][0], float) and got["tests"][1] == "ünïcødé ✓ 中文 🐍"


def test_entry_and_index_get_the_ttl_and_expire(make_cache, client, prefix):
    cache = make_cache(ttl=100)
    cache.put(KEY_A, REPORT, target="pkg.mod")
    name = cache.entry_name(KEY_A)
    assert name == f"{prefix}:cache:{KEY_A}"
    assert 95_000 < client.pttl(name) <= 100_000
    assert 95_000 < client.pttl(f"{prefix}:cache:target:pkg.mod") <= 100_000
    client.pexpire(name, 50)
    time.sleep(0.15)
    assert cache.get(KEY_A) is None
    assert counters(cache) == (0, 1, 0)


# --- corrupt entries ---------------------------------------------------------------------------


def sealed(body: bytes, cfg: CacheSettings) -> bytes:
    return fc.seal(body, KEY_A, cfg, None)


def body_with(**changes) -> bytes:
    """A valid body of REPORT under KEY_A with some fields replaced."""
    body = msgpack.unpackb(fc.pack_body(REPORT, KEY_A))
    return msgpack.packb({**body, **changes}, use_bin_type=True)


def zip_bomb(good: bytes, cfg: CacheSettings) -> bytes:
    """A valid entry whose body inflates past max_bytes (an unbounded inflater would accept it)."""
    big = {"padding": "x" * (cfg.max_bytes * 4)}
    return fc.MAGIC + bytes([fc.FLAG_COMPRESSED]) + zlib.compress(fc.pack_body(big, KEY_A), 9)


def huge_inner_length(good: bytes, cfg: CacheSettings) -> bytes:
    """A checksummed report that declares a 4 GiB array in five bytes."""
    packed = b"\xdd\xff\xff\xff\xff"
    return sealed(body_with(report=packed, sha256=hashlib.sha256(packed).hexdigest()), cfg)


CORRUPTIONS: dict[str, Callable[[bytes, CacheSettings], bytes]] = {
    "flipped-byte": lambda good, cfg: good[: len(good) // 2] + bytes([good[len(good) // 2] ^ 0x40]) + good[len(good) // 2 + 1:],
    "truncated": lambda good, cfg: good[: len(good) - 7],
    "header-only": lambda good, cfg: good[:5],
    "empty": lambda good, cfg: b"",
    "wrong-magic": lambda good, cfg: b"FLC0" + good[4:],
    "unknown-flag": lambda good, cfg: good[:4] + bytes([good[4] | 0x80]) + good[5:],
    "trailing-bytes": lambda good, cfg: good + b"\x00junk",
    "over-max-bytes": lambda good, cfg: good + b"\x00" * cfg.max_bytes,
    "wrong-version": lambda good, cfg: sealed(body_with(v=fc.FORMAT + 1), cfg),
    "checksum-mismatch": lambda good, cfg: sealed(body_with(sha256=hashlib.sha256(b"other").hexdigest()), cfg),
    "other-cache-key": lambda good, cfg: sealed(body_with(key=KEY_B), cfg),
    "body-not-a-map": lambda good, cfg: sealed(msgpack.packb([1, 2, 3]), cfg),
    "zip-bomb": zip_bomb,
    "huge-outer-length": lambda good, cfg: sealed(b"\xc6\xff\xff\xff\xff" + b"x" * 16, cfg),
    "huge-inner-length": huge_inner_length,
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_corrupt_entry_is_a_logged_miss_and_deleted(make_cache, client, caplog, corruption):
    cache = make_cache(max_bytes=64 * 1024)
    cache.put(KEY_A, REPORT, target="pkg.mod")
    name = cache.entry_name(KEY_A)
    client.set(name, CORRUPTIONS[corruption](client.get(name), cache.cfg))
    caplog.set_level(logging.WARNING, logger="fleet.cache")
    assert cache.get(KEY_A) is None
    assert client.exists(name) == 0
    assert counters(cache) == (0, 1, 1)
    assert f"cache entry {KEY_A} is corrupt" in caplog.text


def test_an_entry_over_a_lowered_max_bytes_is_refused_before_decoding(make_cache, client, caplog):
    writer = make_cache(level=0, max_bytes=64 * 1024)  # uncompressed: only the size check can refuse it
    writer.put(KEY_A, {**REPORT, "padding": "y" * 8000}, target="pkg.mod")
    reader = make_cache(level=0, max_bytes=4096)
    caplog.set_level(logging.WARNING, logger="fleet.cache")
    assert reader.get(KEY_A) is None
    assert client.exists(reader.entry_name(KEY_A)) == 0
    assert "over cache.max_bytes=4096" in caplog.text
    big = fc.encode({"padding": "y" * 8000}, KEY_B, writer.cfg, None)
    with pytest.raises(CacheCorrupt, match="over cache.max_bytes"):
        fc.decode(big, KEY_B, reader.cfg, None)


def test_decode_raises_cache_corrupt_which_is_a_value_error():
    cfg = CacheSettings(max_bytes=64 * 1024)
    good = fc.encode(REPORT, KEY_A, cfg, None)
    assert fc.decode(good, KEY_A, cfg, None) == REPORT
    with pytest.raises(CacheCorrupt, match="beyond"):
        fc.decode(zip_bomb(good, cfg), KEY_A, cfg, None)
    with pytest.raises(ValueError, match="checksum"):
        fc.decode(CORRUPTIONS["checksum-mismatch"](good, cfg), KEY_A, cfg, None)


# --- encryption --------------------------------------------------------------------------------


def test_encrypted_entry_hides_the_report_and_round_trips(make_cache, client):
    env = {"FLEET_CACHE_KEY": aes_key_text()}
    plain_level = make_cache(env, encrypt=True, level=0)  # no compression: only encryption can hide it
    plain_level.put(KEY_A, REPORT, target="pkg.mod")
    stored = client.get(plain_level.entry_name(KEY_A))
    assert stored[:5] == fc.MAGIC + bytes([fc.FLAG_ENCRYPTED])
    assert MARKER.encode() not in stored
    assert plain_level.get(KEY_A) == REPORT
    compressed = make_cache(env, encrypt=True)
    compressed.put(KEY_B, REPORT, target="pkg.mod")
    assert compressed.get(KEY_B) == REPORT


def test_unpadded_key_text_is_accepted(make_cache):
    cache = make_cache({"MY_KEY": aes_key_text().rstrip("=")}, encrypt=True, key_env="MY_KEY")
    assert cache.put(KEY_A, REPORT, target="pkg.mod") and cache.get(KEY_A) == REPORT


def test_a_different_key_is_a_corrupt_miss(make_cache, client):
    writer = make_cache({"FLEET_CACHE_KEY": aes_key_text()}, encrypt=True)
    reader = make_cache({"FLEET_CACHE_KEY": aes_key_text()}, encrypt=True)
    writer.put(KEY_A, REPORT, target="pkg.mod")
    assert reader.get(KEY_A) is None
    assert client.exists(writer.entry_name(KEY_A)) == 0
    assert counters(reader) == (0, 1, 1)


@pytest.mark.parametrize("encrypt", [False, True])
def test_an_entry_copied_to_another_cache_key_is_corrupt(make_cache, client, encrypt):
    cache = make_cache({"FLEET_CACHE_KEY": aes_key_text()}, encrypt=encrypt)
    cache.put(KEY_A, REPORT, target="pkg.mod")
    client.set(cache.entry_name(KEY_B), client.get(cache.entry_name(KEY_A)))
    assert cache.get(KEY_B) is None
    assert client.exists(cache.entry_name(KEY_B)) == 0
    assert cache.get(KEY_A) == REPORT


@pytest.mark.parametrize("writer_encrypts", [False, True])
def test_encryption_mode_mismatch_is_corrupt(make_cache, client, writer_encrypts):
    env = {"FLEET_CACHE_KEY": aes_key_text()}
    writer = make_cache(env, encrypt=writer_encrypts)
    reader = make_cache(env, encrypt=not writer_encrypts)
    writer.put(KEY_A, REPORT, target="pkg.mod")
    assert reader.get(KEY_A) is None
    assert client.exists(writer.entry_name(KEY_A)) == 0
    assert counters(reader) == (0, 1, 1)


@pytest.mark.parametrize("env, message", [
    ({}, "FLEET_CACHE_KEY is not set"),
    ({"FLEET_CACHE_KEY": "  "}, "FLEET_CACHE_KEY is not set"),
    ({"FLEET_CACHE_KEY": base64.urlsafe_b64encode(b"s3cret-sixteen-b").decode()}, "must hold 32 bytes, got 16"),
    ({"FLEET_CACHE_KEY": "not*base64!" * 4}, "not URL-safe base64"),
])
def test_a_missing_or_bad_key_is_a_config_error(make_cache, env, message):
    with pytest.raises(ConfigError, match=message) as info:
        make_cache(env, encrypt=True)
    assert all(value.strip() == "" or value not in str(info.value) for value in env.values())


def test_unencrypted_entries_are_really_compressed(make_cache, client):
    cache = make_cache(level=9)
    report = {**REPORT, "lines": [f"line {MARKER}"] * 200}
    cache.put(KEY_A, report, target="pkg.mod")
    stored = client.get(cache.entry_name(KEY_A))
    assert stored[:5] == fc.MAGIC + bytes([fc.FLAG_COMPRESSED])
    body = zlib.decompress(stored[5:])
    assert MARKER.encode() in body
    assert len(stored) < len(body) // 5


# --- size cap ----------------------------------------------------------------------------------


@pytest.mark.parametrize("padding", [
    base64.b64encode(os.urandom(8000)).decode(),  # incompressible: the entry is too big
    "x" * 8000,  # compresses well, but the inflated body is too big
])
def test_a_report_over_max_bytes_is_not_stored(make_cache, client, prefix, caplog, padding):
    cache = make_cache(max_bytes=4096)
    caplog.set_level(logging.WARNING, logger="fleet.cache")
    assert cache.put(KEY_A, {**REPORT, "padding": padding}, target="pkg.mod") is False
    assert client.exists(cache.entry_name(KEY_A), f"{prefix}:cache:target:pkg.mod") == 0
    assert "over cache.max_bytes=4096" in caplog.text
    assert cache.put(KEY_B, REPORT, target="pkg.mod") is True


def test_an_unpackable_report_is_not_stored(make_cache, client):
    cache = make_cache()
    assert cache.put(KEY_A, {"when": object()}, target="pkg.mod") is False
    assert cache.put(KEY_A, {"scores": {1: "int keys do not survive msgpack decoding"}}, target="pkg.mod") is False
    assert client.exists(cache.entry_name(KEY_A)) == 0


# --- counters and clearing ---------------------------------------------------------------------


def test_stats_count_exactly(make_cache, client):
    cache = make_cache()
    assert cache.stats() == {"hits": 0, "misses": 0, "errors": 0, "hit_ratio": 0.0, "entries": 0, "bytes": 0}
    cache.put(KEY_A, REPORT, target="pkg.a")
    cache.put(KEY_B, {"small": 1}, target="pkg.b")
    for key in (KEY_A, KEY_A, KEY_B, KEY_C, KEY_C):
        cache.get(key)
    stats = cache.stats()
    sizes = client.strlen(cache.entry_name(KEY_A)) + client.strlen(cache.entry_name(KEY_B))
    assert stats == {"hits": 3, "misses": 2, "errors": 0, "hit_ratio": 0.6, "entries": 2, "bytes": sizes}
    client.set(cache.entry_name(KEY_B), b"garbage")
    cache.get(KEY_B)
    assert counters(cache) == (3, 3, 1)
    assert cache.stats()["entries"] == 1


def test_clear_target_removes_only_that_targets_entries(make_cache, client, prefix):
    cache = make_cache()
    cache.put(KEY_A, REPORT, target="pkg.a")
    cache.put(KEY_B, REPORT, target="pkg.a")
    cache.put(KEY_C, REPORT, target="pkg.b")
    assert cache.clear("pkg.a") == 2
    assert client.exists(cache.entry_name(KEY_A), cache.entry_name(KEY_B), f"{prefix}:cache:target:pkg.a") == 0
    assert cache.get(KEY_C) == REPORT
    assert cache.clear("pkg.a") == 0
    assert cache.clear("pkg.unknown") == 0


def test_clear_removes_everything_in_the_namespace_only(make_cache, client, prefix):
    cache = make_cache()
    cache.put(KEY_A, REPORT, target="pkg.a")
    cache.get(KEY_A)
    pipe = client.pipeline()
    for n in range(1100):  # more than one SCAN/DEL batch
        pipe.set(cache.entry_name(hashlib.sha256(str(n).encode()).hexdigest()), b"x")
    pipe.set(f"{prefix}:shared:keep", b"1")
    pipe.set(f"{prefix}x:cache:{KEY_A}", b"1")
    pipe.execute()
    assert cache.clear() == 1101
    assert list(client.scan_iter(match=f"{prefix}:cache:*")) == []
    assert client.exists(f"{prefix}:shared:keep", f"{prefix}x:cache:{KEY_A}") == 2
    assert cache.stats() == {"hits": 0, "misses": 0, "errors": 0, "hit_ratio": 0.0, "entries": 0, "bytes": 0}


# --- disabled, misuse, Redis failures ------------------------------------------------------------


def test_disabled_cache_touches_nothing(make_cache, client, prefix):
    make_cache().put(KEY_A, REPORT, target="pkg.mod")
    disabled = make_cache(enabled=False, encrypt=True)  # no key needed while disabled
    assert disabled.get(KEY_A) is None
    assert disabled.put(KEY_B, REPORT, target="pkg.mod") is False
    assert client.exists(disabled.entry_name(KEY_B)) == 0
    assert sorted(client.scan_iter(match=f"{prefix}:cache:stats:*")) == []


def test_misuse_is_refused(redis_server, make_cache):
    with pytest.raises(ValueError, match="decode_responses=False"):
        ResultCache(redis.Redis.from_url(redis_server, decode_responses=True), "p", CacheSettings())
    cache = make_cache()
    with pytest.raises(ValueError, match="64 lower-case hex"):
        cache.get("stats:hits")
    with pytest.raises(ValueError, match="target"):
        cache.put(KEY_A, REPORT, target="")
    with pytest.raises(ConfigError, match="level"):
        CacheSettings(level=10)


def test_redis_failure_is_a_logged_miss(caplog):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    cache = ResultCache(dead, "p", CacheSettings())
    caplog.set_level(logging.WARNING, logger="fleet.cache")
    assert cache.get(KEY_A) is None
    assert cache.put(KEY_A, REPORT, target="pkg.mod") is False
    assert "cache get" in caplog.text and "cache put" in caplog.text


def test_settings_from_the_cache_section():
    settings = Settings(values={"cache": {"enabled": False, "ttl": 60, "max_bytes": 2048, "level": 1,
                                          "encrypt": True, "key_env": "K"}}, sources={})
    assert CacheSettings.from_settings(settings) == CacheSettings(False, 60, 2048, 1, True, "K")
    assert CacheSettings.from_settings(Settings(values={}, sources={})) == CacheSettings()


# --- cache key ---------------------------------------------------------------------------------

FILES = {"pkg/__init__.py": "", "pkg/mod.py": "def f(x):\n    return x\n", "pkg/util.py": "X = 1\n"}
BASE_JOB = Job(module="pkg.mod", target_path="pkg/mod.py", files=FILES, options=Options(max_iterations=3))
BASE_ARGS = {"model_id": "qwen2.5-coder-1.5b", "model_sha256": "ab" * 32,
             "settings_digest": {"llm": {"temperature": 0.3, "top_p": 0.8}, "engine": {"reruns": 5}}}


def key_of(job: Job = BASE_JOB, **args) -> str:
    return cache_key(job, **{**BASE_ARGS, **args})


def test_cache_key_changes_with_every_input():
    variants = {
        "base": key_of(),
        "target file": key_of(replace(BASE_JOB, files={**FILES, "pkg/mod.py": "def f(x):\n    return -x\n"})),
        "other file": key_of(replace(BASE_JOB, files={**FILES, "pkg/util.py": "X = 2\n"})),
        "extra file": key_of(replace(BASE_JOB, files={**FILES, "pkg/new.py": ""})),
        "target": key_of(replace(BASE_JOB, target_path="pkg/util.py")),
        "module": key_of(replace(BASE_JOB, module="pkg.util")),
        "options": key_of(replace(BASE_JOB, options=Options(max_iterations=4))),
        "model id": key_of(model_id="other-model"),
        "model sha": key_of(model_sha256="cd" * 32),
        "settings": key_of(settings_digest={"llm": {"temperature": 0.7, "top_p": 0.8}, "engine": {"reruns": 5}}),
    }
    assert len(set(variants.values())) == len(variants)
    assert all(fc.HEX_KEY.fullmatch(key) for key in variants.values())


def test_cache_key_is_stable_across_dict_ordering():
    reordered_files = dict(reversed(list(FILES.items())))
    digest = BASE_ARGS["settings_digest"]
    reordered_settings = {"engine": digest["engine"], "llm": {"top_p": 0.8, "temperature": 0.3}}
    assert list(reordered_files) != list(FILES)
    assert key_of(replace(BASE_JOB, files=reordered_files), settings_digest=reordered_settings) == key_of()
    assert key_of() == key_of()
