"""The fleet's Redis broker transport: kombu's, except that garbage on a queue cannot kill a worker.

Why: kombu's Redis transport pops a message with BRPOP and decodes it in
``kombu.transport.redis.Channel._brpop_read`` (kombu 5.7, the line
``self.connection._deliver(loads(bytes_to_str(item)), dest)``) outside any ``try``. Bytes that are
not JSON raise ``JSONDecodeError`` there; JSON that is not a message object raises ``TypeError`` /
``KeyError`` a step later in ``kombu.transport.virtual.Message``. Both escape through the event
loop, Celery logs "Unrecoverable error" and the worker exits (upstream: celery/celery#7975, open).
kombu's own pub/sub path (``Channel._receive_one``) already catches such a payload, warns and moves
on; this module does the same for queue messages, and keeps the bytes.

Contract:

* Every BRPOP reply is checked before kombu sees it: it must decode as kombu's JSON and make a
  kombu message as ``basic_consume`` and the Redis ``QoS`` need it (a JSON object with a
  ``properties`` object holding a ``delivery_tag`` and a ``delivery_info`` object with ``exchange``
  and ``routing_key``; ``headers`` an object or absent; a body its ``body_encoding`` can decode).
  A good reply goes to kombu untouched; what kombu does with it (Celery's own rejection of bad
  task bodies or bad jobs included) does not change.
* A bad reply is never delivered. Its raw bytes are LPUSHed to :func:`dead_letter_key` (``<queue>.dead``,
  beside the queue, under kombu's ``global_keyprefix`` if one is set; the newest
  :data:`DEAD_LETTER_MAX` are kept), an ERROR is logged with the queue, the reason and a trimmed
  repr of the bytes, and kombu sees an empty poll, so the worker goes on consuming. If the
  dead-letter push fails too, the ERROR says that the message is dropped.
* The check costs one more JSON decode (and body decode) per received message; the publishing side
  is kombu's, unchanged.

Used through ``broker_transport`` (:data:`TRANSPORT`, see ``fleet.celeryconf``) by the workers and
the client alike. Only the BRPOP path (consumers) is guarded: ``Channel._get`` (``basic_get``,
``Queue.get()``) is kombu's and is not used by the fleet.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

log = logging.getLogger(__name__)

TRANSPORT = "fleet.transport:Transport"
"""The ``broker_transport`` value that selects this transport."""
SCHEMES = frozenset({"redis", "rediss"})
"""Broker URL schemes that kombu serves with its plain Redis transport, which this one replaces."""
DEAD_LETTER_SUFFIX = ".dead"
DEAD_LETTER_MAX = 1000
"""How many rejected messages a dead-letter list keeps (the newest)."""
PREVIEW_BYTES = 200


def dead_letter_key(queue: str) -> str:
    """The Redis list that receives the rejected raw messages of ``queue``."""
    return queue + DEAD_LETTER_SUFFIX


def preview(raw: bytes | str, limit: int = PREVIEW_BYTES) -> str:
    """A repr of the first ``limit`` bytes of ``raw``, with the total size when it is longer."""
    data = raw.encode(errors="surrogateescape") if isinstance(raw, str) else raw
    more = f"... ({len(data)} bytes)" if len(data) > limit else ""
    return repr(data[:limit]) + more


class Channel(kombu_redis.Channel):
    """kombu's Redis channel whose BRPOP replies are checked first (see the module docstring)."""

    def _create_client(self, asynchronous: bool = False) -> Any:
        client = super()._create_client(asynchronous)
        if asynchronous:  # the client kombu BRPOPs with (``Channel.client``)
            parse = client.response_callbacks.get("BRPOP")
            client.set_response_callback("BRPOP", functools.partial(self._screen_brpop, parse))
        return client

    def _screen_brpop(self, parse: Callable[..., Any] | None, response: Any, **options: Any) -> Any:
        """The BRPOP response callback: redis-py's result, or None (kombu: empty) for a bad message."""
        popped = parse(response, **options) if parse is not None else response
        if not popped:
            return popped
        key, item = popped
        reason = self._malformed(item)
        if reason is None:
            return popped
        self._dead_letter(bytes_to_str(key), item, reason)
        return None

    def _malformed(self, item: bytes | str) -> str | None:
        """Why kombu could not deliver ``item`` (the exception it would raise), or None."""
        try:
            # What kombu does with a reply: ``_brpop_read`` decodes it, ``basic_consume`` makes it a Message.
            message = self.Message(loads(bytes_to_str(item)), channel=self)
        except Exception as exc:  # noqa: BLE001 -- decoding only, no side effects: any error means garbage
            return f"{type(exc).__name__}: {str(exc)[:PREVIEW_BYTES]}"
        # What the Redis QoS needs to hold it unacked (``QoS.append``).
        info = message.delivery_info
        if not isinstance(info, dict) or "exchange" not in info or "routing_key" not in info:
            return "delivery_info is not an object with exchange and routing_key"
        tag = message.delivery_tag
        if isinstance(tag, bool) or not isinstance(tag, (str, int)):
            return f"delivery_tag is a {type(tag).__name__}"
        return None

    def _dead_letter(self, key: str, item: bytes | str, reason: str) -> None:
        """Move ``item``, popped from the Redis list ``key``, to its queue's dead-letter list; log it."""
        if self.global_keyprefix and key.startswith(self.global_keyprefix):
            key = key[len(self.global_keyprefix):]
        queue = key.rsplit(self.sep, 1)[0]  # a priority list is ``<queue><sep><priority>``
        dead = dead_letter_key(queue)
        try:
            with self.conn_or_acquire() as client:  # a pool connection, not the BRPOP one
                client.pipeline().lpush(dead, item).ltrim(dead, 0, DEAD_LETTER_MAX - 1).execute()
        except (redis.RedisError, OSError) as exc:
            log.error("dropped a malformed message from queue %r (%s): %s; it could not be moved to %r: %s: %s",
                      queue, reason, preview(item), dead, type(exc).__name__, str(exc)[:PREVIEW_BYTES])
            return
        log.error("rejected a malformed message on queue %r (%s): %s; moved to %r", queue, reason,
                  preview(item), dead)


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel
