"""Result cache: a finished job's report, stored in Redis under a digest of everything that shapes it.

Cache key (:func:`cache_key`)::

    key = sha256(canonical JSON, sorted keys, of {
        "bundle": bundle_digest(job.files), "target_path", "module", "options": asdict(job.options),
        "version": job.version, "model_id", "model_sha256", "settings": settings_digest}).hexdigest()
    bundle_digest = sha256(JSON list of [path, sha256(content utf-8).hexdigest()] sorted by path)

Redis keys (``<prefix>`` is ``fleet.prefix``; a namespace of its own, next to ``agent`` and
``shared`` in :mod:`fleet.store`, so that the ACL rules can grant it separately)::

    <prefix>:cache:<key>              string  one entry (64 lower-case hex digits), TTL ``ttl``
    <prefix>:cache:target:<target>    set     the keys cached for one target, TTL refreshed on put
    <prefix>:cache:stats:hits         int     counters (never expire; ``clear()`` resets them)
    <prefix>:cache:stats:misses       int
    <prefix>:cache:stats:errors       int     corrupt entries found (each also counts as a miss)

Entry layout (all lengths in bytes)::

    entry   = MAGIC (4: b"FLC1") | flags (1) | payload
    flags   = bit 0 COMPRESSED (zlib, set iff ``level`` > 0), bit 1 ENCRYPTED; other bits 0
    payload = ENCRYPTED ? nonce (12) | AES-256-GCM(inner, aad = MAGIC | flags | key ascii) (+16 tag)
                        : inner
    inner   = COMPRESSED ? zlib(body, level) : body
    body    = msgpack map {"v": FORMAT (int), "created": unix time (float), "key": key (str),
                           "sha256": sha256(report).hexdigest(), "report": report (bin)}
    report  = msgpack of the report dict (str map keys; tuples come back as lists)

Contracts: the whole entry and the inflated body are each at most ``max_bytes``; a bigger report is
not cached (``put`` returns False, logged). Reading never trusts a length from the data: at most
``max_bytes + 1`` bytes are fetched, inflation stops at ``max_bytes + 1`` and msgpack's length
limits are set. Anything wrong with an entry (size, magic, flags, tag, zlib stream, msgpack,
version, key, checksum) is :class:`CacheCorrupt`; ``get`` turns it into a miss, deletes the entry,
logs a warning and counts an error. With encryption on, only encrypted entries are accepted (and
vice versa). Redis failures in ``get``/``put`` are logged and count as a miss / not cached: the
cache never fails a job. ``stats`` and ``clear`` are admin calls and let Redis errors through.

Encryption key: the environment variable named by ``key_env`` holds 32 random bytes in URL-safe
base64, e.g. ``python -c "import base64,os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())"``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import re
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import msgpack
import redis
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fleet.errors import ConfigError
from fleet.jobs import Job

log = logging.getLogger(__name__)

FORMAT = 1
MAGIC = b"FLC1"
FLAG_COMPRESSED = 0x01
FLAG_ENCRYPTED = 0x02
HEADER_LEN = len(MAGIC) + 1
NONCE_LEN = 12
TAG_LEN = 16
KEY_BYTES = 32
BATCH = 500
STATS = ("hits", "misses", "errors")
HEX_KEY = re.compile(r"[0-9a-f]{64}")
_HEX_KEY_BYTES = re.compile(rb"[0-9a-f]{64}")
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


class CacheCorrupt(ValueError):
    """A cache entry that cannot be trusted: wrong size, header, tag, compression, msgpack or checksum."""


class CacheTooBig(ValueError):
    """A report whose entry would exceed ``max_bytes``; it is not cached."""


@dataclass(frozen=True)
class CacheSettings:
    """The ``[cache]`` config section. ``ttl`` in seconds; ``max_bytes`` caps an entry and its
    inflated body; ``level`` is zlib's 0..9 (0 = stored uncompressed); ``key_env`` names the
    environment variable holding the AES key when ``encrypt`` is on."""

    enabled: bool = True
    ttl: int = 7 * 86400
    max_bytes: int = 8 << 20
    level: int = 6
    encrypt: bool = False
    key_env: str = "FLEET_CACHE_KEY"

    def __post_init__(self) -> None:
        if self.ttl < 1:
            raise ConfigError(f"cache.ttl must be at least 1 second, got {self.ttl}")
        if self.max_bytes < 1024:
            raise ConfigError(f"cache.max_bytes must be at least 1024, got {self.max_bytes}")
        if not 0 <= self.level <= 9:
            raise ConfigError(f"cache.level must be 0..9, got {self.level}")
        if self.encrypt and not self.key_env:
            raise ConfigError("cache.encrypt is on but cache.key_env is empty")

    @classmethod
    def from_settings(cls, settings: Any) -> "CacheSettings":
        """From ``settings["cache"]``; a missing section or key takes the default above."""
        section: Mapping[str, Any] = settings.values.get("cache", {})
        return cls(**{k: section[k] for k in cls.__dataclass_fields__ if k in section})


# --- cache key ---------------------------------------------------------------------------------


def _sha256_json(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def bundle_digest(files: Mapping[str, str]) -> str:
    """SHA-256 over the sorted ``[path, sha256(content)]`` pairs of a bundle."""
    return _sha256_json(sorted([path, hashlib.sha256(text.encode()).hexdigest()] for path, text in files.items()))


def cache_key(job: Job, *, model_id: str, model_sha256: str, settings_digest: dict[str, Any]) -> str:
    """The 64-hex cache key of ``job`` run by this model with these output-shaping settings.

    ``settings_digest`` must be JSON-serialisable (TypeError otherwise); its key order does not matter."""
    return _sha256_json({
        "bundle": bundle_digest(job.files),
        "target_path": job.target_path,
        "module": job.module,
        "options": asdict(job.options),
        "version": job.version,
        "model_id": model_id,
        "model_sha256": model_sha256,
        "settings": settings_digest,
    })


# --- encryption key ----------------------------------------------------------------------------


def load_key(cfg: CacheSettings, environ: Mapping[str, str]) -> bytes | None:
    """The AES key from ``environ[cfg.key_env]`` when the cache is enabled and encrypts, else None.

    ConfigError when it is missing, not URL-safe base64 or not 32 bytes (the key is never shown)."""
    if not (cfg.enabled and cfg.encrypt):
        return None
    text = environ.get(cfg.key_env, "").strip()
    if not text:
        raise ConfigError(f"cache encryption is on but {cfg.key_env} is not set (32 bytes, URL-safe base64)")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"{cfg.key_env} is not URL-safe base64") from exc
    if len(raw) != KEY_BYTES:
        raise ConfigError(f"{cfg.key_env} must hold {KEY_BYTES} bytes, got {len(raw)}")
    return raw


def _aead(cfg: CacheSettings, aead_key: bytes | None) -> AESGCM | None:
    if not cfg.encrypt:
        return None
    if aead_key is None or len(aead_key) != KEY_BYTES:
        raise ConfigError(f"cache encryption is on but no {KEY_BYTES}-byte key was given")
    return AESGCM(aead_key)


# --- encoding ----------------------------------------------------------------------------------


def _check_map_keys(packable: Any) -> None:
    """ValueError unless every map key in ``packable`` (already known to pack) is a str."""
    stack = [packable]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if not all(isinstance(k, str) for k in item):
                raise ValueError("report map keys must be str")
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def _pack_report(report: dict[str, Any]) -> bytes:
    if not isinstance(report, dict):
        raise ValueError(f"report must be a dict, got {type(report).__name__}")
    try:
        packed = msgpack.packb(report, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"report cannot be packed: {exc}") from exc
    _check_map_keys(report)
    return packed


def pack_body(report: dict[str, Any], key: str, created: float | None = None) -> bytes:
    """The msgpack body of an entry (see the module docstring); ValueError for an unpackable report."""
    packed = _pack_report(report)
    return msgpack.packb({
        "v": FORMAT,
        "created": time.time() if created is None else created,
        "key": key,
        "sha256": hashlib.sha256(packed).hexdigest(),
        "report": packed,
    }, use_bin_type=True)


def _check_size(what: str, size: int, cfg: CacheSettings) -> None:
    if size > cfg.max_bytes:
        raise CacheTooBig(f"{what} is {size} bytes, over cache.max_bytes={cfg.max_bytes}")


def _header(cfg: CacheSettings) -> bytes:
    flags = (FLAG_COMPRESSED if cfg.level > 0 else 0) | (FLAG_ENCRYPTED if cfg.encrypt else 0)
    return MAGIC + bytes([flags])


def seal(body: bytes, key: str, cfg: CacheSettings, aead_key: bytes | None) -> bytes:
    """Wrap ``body`` in the entry layout: header, zlib (``level`` > 0), AES-GCM (``encrypt``).

    CacheTooBig when the body or the entry exceeds ``max_bytes``."""
    _check_size("report body", len(body), cfg)
    header = _header(cfg)
    inner = zlib.compress(body, cfg.level) if cfg.level > 0 else body
    aead = _aead(cfg, aead_key)
    if aead is not None:
        nonce = os.urandom(NONCE_LEN)
        inner = nonce + aead.encrypt(nonce, inner, header + key.encode())
    entry = header + inner
    _check_size("cache entry", len(entry), cfg)
    return entry


def encode(report: dict[str, Any], key: str, cfg: CacheSettings, aead_key: bytes | None) -> bytes:
    """The stored bytes of ``report`` under ``key``. ValueError (CacheTooBig for size) if it cannot be cached."""
    return seal(pack_body(report, key), key, cfg, aead_key)


# --- decoding ----------------------------------------------------------------------------------


def _inflate(data: bytes, cap: int) -> bytes:
    """zlib-decompress at most ``cap`` bytes; a stream that is longer, truncated or followed by junk is corrupt."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, cap + 1)
    except zlib.error as exc:
        raise CacheCorrupt(f"bad zlib stream: {exc}") from exc
    if inflater.unconsumed_tail or len(out) > cap:
        raise CacheCorrupt(f"body inflates beyond cache.max_bytes={cap}")
    if not inflater.eof or inflater.unused_data:
        raise CacheCorrupt("zlib stream is truncated or followed by extra bytes")
    return out


def _decrypt(data: bytes, aad: bytes, aead: AESGCM) -> bytes:
    if len(data) < NONCE_LEN + TAG_LEN:
        raise CacheCorrupt("encrypted payload is shorter than nonce and tag")
    try:
        return aead.decrypt(data[:NONCE_LEN], data[NONCE_LEN:], aad)
    except InvalidTag as exc:
        raise CacheCorrupt("authentication failed (wrong key, wrong cache key or tampered entry)") from exc


def _check_header(entry: bytes, cfg: CacheSettings) -> int:
    """The flags byte of ``entry`` after checking size, magic and flags against ``cfg``."""
    if len(entry) > cfg.max_bytes:
        raise CacheCorrupt(f"entry is over cache.max_bytes={cfg.max_bytes}")
    if len(entry) < HEADER_LEN or entry[: len(MAGIC)] != MAGIC:
        raise CacheCorrupt("bad magic")
    flags = entry[len(MAGIC)]
    if flags & ~(FLAG_COMPRESSED | FLAG_ENCRYPTED):
        raise CacheCorrupt(f"unknown flags 0x{flags:02x}")
    if bool(flags & FLAG_ENCRYPTED) != cfg.encrypt:
        raise CacheCorrupt("entry is not encrypted but encryption is on" if cfg.encrypt
                           else "entry is encrypted but encryption is off")
    return flags


def unseal(entry: bytes, key: str, cfg: CacheSettings, aead_key: bytes | None) -> bytes:
    """The body inside ``entry`` (the inverse of :func:`seal`); CacheCorrupt if anything is off."""
    flags = _check_header(entry, cfg)
    inner = entry[HEADER_LEN:]
    aead = _aead(cfg, aead_key)
    if aead is not None:
        inner = _decrypt(inner, entry[:HEADER_LEN] + key.encode(), aead)
    return _inflate(inner, cfg.max_bytes) if flags & FLAG_COMPRESSED else inner


def _unpack(data: bytes, cap: int) -> Any:
    """msgpack-decode ``data`` with every length limited by its own size and ``cap``."""
    limit = min(len(data), cap)
    try:
        return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True, max_str_len=limit,
                               max_bin_len=limit, max_array_len=limit, max_map_len=limit, max_ext_len=0)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise CacheCorrupt(f"bad msgpack: {exc}") from exc


def _check_body(body: Any, key: str) -> bytes:
    """The packed report inside a decoded body, after checking version, key and checksum."""
    if not isinstance(body, dict):
        raise CacheCorrupt("body is not a map")
    version = body.get("v")
    if type(version) is not int or version != FORMAT:
        raise CacheCorrupt(f"format version {version!r}, expected {FORMAT}")
    if not isinstance(body.get("created"), (int, float)) or body.get("key") != key:
        raise CacheCorrupt("body header does not match (created/key)")
    packed = body.get("report")
    if not isinstance(packed, bytes) or hashlib.sha256(packed).hexdigest() != body.get("sha256"):
        raise CacheCorrupt("report checksum mismatch")
    return packed


def unpack_body(body: bytes, key: str, cfg: CacheSettings) -> dict[str, Any]:
    """The report in ``body`` (the inverse of :func:`pack_body`); CacheCorrupt if anything is off."""
    report = _unpack(_check_body(_unpack(body, cfg.max_bytes), key), cfg.max_bytes)
    if not isinstance(report, dict):
        raise CacheCorrupt("report is not a map")
    return report


def decode(blob: bytes, key: str, cfg: CacheSettings, aead_key: bytes | None) -> dict[str, Any]:
    """The report stored in ``blob`` under ``key``; CacheCorrupt (a ValueError) on anything wrong."""
    return unpack_body(unseal(blob, key, cfg, aead_key), key, cfg)


# --- the cache ---------------------------------------------------------------------------------


def _batches(items: Iterable[bytes], size: int = BATCH) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not HEX_KEY.fullmatch(key):
        raise ValueError(f"cache key must be 64 lower-case hex digits, got {key!r}")
    return key


class ResultCache:
    """Reports in Redis under ``<prefix>:cache:`` (see the module docstring for keys and layout).

    ``client`` must return bytes (``decode_responses=False``; :func:`fleet.store.connect` gives a
    decoding client, so open a second one). With ``enabled`` off, ``get``/``put`` touch nothing."""

    def __init__(self, client: redis.Redis, prefix: str, cfg: CacheSettings, *,
                 environ: Mapping[str, str] = os.environ) -> None:
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("ResultCache needs a Redis client with decode_responses=False")
        self.client = client
        self.cfg = cfg
        self.namespace = f"{prefix}:cache"
        self._aead_key = load_key(cfg, environ)

    # key names

    def entry_name(self, key: str) -> str:
        """``<prefix>:cache:<key>``."""
        return f"{self.namespace}:{_check_key(key)}"

    def _index_name(self, target: str) -> str:
        if not isinstance(target, str) or not target:
            raise ValueError("cache target must be a non-empty str")
        return f"{self.namespace}:target:{target}"

    def _stat_name(self, name: str) -> str:
        return f"{self.namespace}:stats:{name}"

    def _is_entry(self, name: bytes) -> bool:
        head = f"{self.namespace}:".encode()
        return name.startswith(head) and bool(_HEX_KEY_BYTES.fullmatch(name[len(head):]))

    def _scan(self) -> Iterator[bytes]:
        pattern = _GLOB_SPECIAL.sub(r"\\\1", self.namespace) + ":*"
        return self.client.scan_iter(match=pattern, count=BATCH)

    # get / put

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached report, or None (a miss). Counts hits and misses; a corrupt entry is deleted,
        logged and counted as an error and a miss; a Redis failure is logged and returns None."""
        if not self.cfg.enabled:
            return None
        name = self.entry_name(key)
        try:
            return self._lookup(name, key)
        except redis.RedisError as exc:
            log.warning("cache get %s failed: %s", key, exc)
            return None

    def _lookup(self, name: str, key: str) -> dict[str, Any] | None:
        pipe = self.client.pipeline()
        pipe.exists(name)
        pipe.getrange(name, 0, self.cfg.max_bytes)  # at most max_bytes + 1 bytes
        exists, blob = pipe.execute()
        if not exists:
            self.client.incr(self._stat_name("misses"))
            return None
        try:
            report = decode(blob, key, self.cfg, self._aead_key)
        except CacheCorrupt as exc:
            self._discard(name, key, exc)
            return None
        self.client.incr(self._stat_name("hits"))
        return report

    def _discard(self, name: str, key: str, reason: CacheCorrupt) -> None:
        log.warning("cache entry %s is corrupt (%s); deleted", key, reason)
        pipe = self.client.pipeline()
        pipe.delete(name)
        pipe.incr(self._stat_name("errors"))
        pipe.incr(self._stat_name("misses"))
        pipe.execute()

    def put(self, key: str, report: dict[str, Any], *, target: str) -> bool:
        """Store ``report`` for ``ttl`` seconds and index it under ``target`` (pass the same kind of
        value, e.g. the job's module, that ``clear(target)`` will get). False, logged, when the cache
        is disabled, the report is too big or unpackable, or Redis fails."""
        if not self.cfg.enabled:
            return False
        name, index = self.entry_name(key), self._index_name(target)
        try:
            blob = encode(report, key, self.cfg, self._aead_key)
        except ValueError as exc:
            log.warning("not caching %s: %s", key, exc)
            return False
        pipe = self.client.pipeline()
        pipe.set(name, blob, ex=self.cfg.ttl)
        pipe.sadd(index, key)
        pipe.expire(index, self.cfg.ttl)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("cache put %s failed: %s", key, exc)
            return False
        return True

    # admin

    def stats(self) -> dict[str, Any]:
        """hits, misses, errors, hit_ratio (hits / lookups, 0.0 before any), entries and their bytes."""
        counts = dict(zip(STATS, (int(v or 0) for v in self.client.mget([self._stat_name(s) for s in STATS]))))
        entries = [name for name in self._scan() if self._is_entry(name)]
        lookups = counts["hits"] + counts["misses"]
        return {
            **counts,
            "hit_ratio": counts["hits"] / lookups if lookups else 0.0,
            "entries": len(entries),
            "bytes": self._total_bytes(entries),
        }

    def _total_bytes(self, names: list[bytes]) -> int:
        total = 0
        for batch in _batches(names):
            pipe = self.client.pipeline(transaction=False)
            for name in batch:
                pipe.strlen(name)
            total += sum(pipe.execute())
        return total

    def _delete(self, names: list[bytes]) -> int:
        return int(self.client.delete(*names)) if names else 0

    def clear(self, target: str | None = None) -> int:
        """Delete every entry (and the target sets and counters), or only ``target``'s entries and
        its set; returns how many entries were deleted."""
        return self._clear_all() if target is None else self._clear_target(target)

    def _clear_all(self) -> int:
        deleted = 0
        for batch in _batches(self._scan()):
            deleted += self._delete([name for name in batch if self._is_entry(name)])
            self._delete([name for name in batch if not self._is_entry(name)])
        return deleted

    def _clear_target(self, target: str) -> int:
        index = self._index_name(target)
        head = f"{self.namespace}:".encode()
        deleted = 0
        for batch in _batches(self.client.sscan_iter(index, count=BATCH)):
            deleted += self._delete([head + key for key in batch if _HEX_KEY_BYTES.fullmatch(key)])
        self.client.delete(index)
        return deleted
