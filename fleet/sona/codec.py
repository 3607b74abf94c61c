"""Learning state on the wire: msgpack maps with float32 arrays as raw bytes, zlib-compressed.

    blob = zlib(msgpack({"format": 1, "kind": kind, ...fields, arrays as {"shape": [..], "f4": bytes}}))

Decoding checks the format, the kind, every array's byte length against its shape, and bounds
msgpack's lengths; anything else raises :class:`CorruptState`.
"""

from __future__ import annotations

import zlib
from typing import Any

import msgpack
import numpy as np

FORMAT = 1
MAX_BLOB = 64 << 20


class CorruptState(ValueError):
    """A stored learning blob that cannot be decoded (wrong format, truncated, tampered)."""


def _pack_value(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"shape": list(value.shape), "f4": np.ascontiguousarray(value, dtype="<f4").tobytes()}
    if isinstance(value, dict):
        return {k: _pack_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_pack_value(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _unpack_value(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"shape", "f4"}:
        shape = tuple(int(n) for n in value["shape"])
        if any(n < 0 for n in shape) or not isinstance(value["f4"], bytes) or \
                len(value["f4"]) != 4 * int(np.prod(shape, dtype=np.int64)):
            raise CorruptState(f"array bytes do not match shape {shape}")
        return np.frombuffer(value["f4"], dtype="<f4").reshape(shape).astype(np.float32)
    if isinstance(value, dict):
        return {k: _unpack_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unpack_value(v) for v in value]
    return value


def dumps(kind: str, fields: dict[str, Any]) -> bytes:
    body = msgpack.packb({"format": FORMAT, "kind": kind, **_pack_value(fields)}, use_bin_type=True)
    return zlib.compress(body, 6)


def raw_size(blob: bytes) -> int:
    """Bytes of the msgpack body before compression (for the compression ratio)."""
    return len(zlib.decompress(blob, bufsize=len(blob) * 4))


def loads(blob: bytes, kind: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields of a ``kind`` blob that has every ``required`` field, or CorruptState."""
    try:
        inflater = zlib.decompressobj()
        body = inflater.decompress(blob, MAX_BLOB)
        if inflater.unconsumed_tail or inflater.unused_data or not inflater.eof:
            raise CorruptState("blob is truncated, too large or has trailing bytes")
        data = msgpack.unpackb(body, raw=False, strict_map_key=True, max_bin_len=MAX_BLOB, max_str_len=1 << 20,
                               max_array_len=1 << 20, max_map_len=1 << 16)
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("kind") != kind:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise CorruptState(f"not a {kind} blob of format {FORMAT} (got {got!r})")
        missing = [name for name in required if name not in data]
        if missing:
            raise CorruptState(f"{kind} blob lacks {', '.join(missing)}")
        return {k: _unpack_value(v) for k, v in data.items() if k not in ("format", "kind")}
    except CorruptState:
        raise
    except (zlib.error, ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, TypeError) as exc:
        raise CorruptState(f"undecodable {kind} blob: {exc}") from exc
