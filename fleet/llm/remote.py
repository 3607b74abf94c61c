"""The remote provider: any OpenAI-compatible HTTP server (OpenAI, vLLM, llama.cpp's servers).

A chat API cannot be prefilled, so the forced start of the reply is asked for in one line added
to the last user message and the whole reply is returned (``full_reply=True``); the engine parses
fenced code tolerantly. Token counts are the server's own (``usage``), never estimated, and so is
``count_tokens`` (the ``/extras/tokenize`` extension of llama-cpp-python's server; a server
without it cannot count and says so).

Only connection attempts are retried (``max_retries``, by httpx's transport): a request that
reached the server is never repeated, so a completion is never generated or billed twice.
The API key is read from the environment variable named by ``api_key_env``, sent as a Bearer
header, and kept out of ``repr`` and every error message.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import httpx

from fleet.costs import PriceTable
from fleet.errors import FleetError
from fleet.llm.base import Completion, Halt, Message, Sampling, Usage
from fleet.store import safe_url

PREFILL_LINE = "Start your reply with:\n"


@dataclass(frozen=True)
class RemoteSettings:
    """The ``[remote]`` config section."""

    base_url: str = "http://127.0.0.1:8001/v1"
    model: str = ""
    api_key_env: str = "FLEET_REMOTE_API_KEY"
    timeout: float = 120.0
    connect_timeout: float = 5.0
    max_retries: int = 1
    n_ctx: int = 8192

    @classmethod
    def from_settings(cls, settings: Any) -> "RemoteSettings":
        section: Mapping[str, Any] = settings.values.get("remote", {})
        kinds = {"timeout": float, "connect_timeout": float, "max_retries": int, "n_ctx": int}
        return cls(**{k: kinds.get(k, str)(section[k]) for k in cls.__dataclass_fields__ if k in section})

    @property
    def configured(self) -> bool:
        """An empty ``base_url`` means no remote provider."""
        return bool(self.base_url.strip())


class RemoteError(FleetError):
    """A remote request failed: connection, timeout, HTTP status ≥ 400 (``status``) or a malformed
    reply."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def server_root(base_url: str) -> str:
    """``base_url`` without its trailing ``/v1`` (where llama-cpp-python's ``/extras`` live)."""
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


class RemoteBackend:
    """A Provider backed by an OpenAI-compatible server."""

    name = "remote"
    sha256 = ""  # a remote server does not tell which weights it serves

    def __init__(self, cfg: RemoteSettings, *, prices: PriceTable, environ: Mapping[str, str] = os.environ,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not cfg.configured:
            raise RemoteError("no remote provider configured: remote.base_url is empty")
        self.cfg = cfg
        self.prices = prices
        self.model_id = cfg.model or "remote"
        self.n_ctx = cfg.n_ctx
        self.base_url = cfg.base_url.rstrip("/")
        self._key = environ.get(cfg.api_key_env, "")
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        self._client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(cfg.timeout, connect=cfg.connect_timeout),
            transport=transport or httpx.HTTPTransport(retries=cfg.max_retries),
        )

    def __repr__(self) -> str:
        key = "set" if self._key else "unset"
        return f"RemoteBackend(base_url={safe_url(self.base_url)!r}, model={self.model_id!r}, api_key={key})"

    # -- errors ---------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _error(self, what: str, url: str, detail: str, status: int | None = None) -> RemoteError:
        return RemoteError(self._redact(f"remote {what} at {safe_url(url)}: {detail}"), status)

    @contextmanager
    def _guard(self, what: str, url: str) -> Iterator[None]:
        """Turn transport failures and malformed replies into RemoteError."""
        try:
            yield
        except RemoteError:
            raise
        except httpx.TimeoutException as exc:
            kind = "connection timed out" if isinstance(exc, httpx.ConnectTimeout) else "timed out"
            raise self._error(what, url, f"{kind} ({type(exc).__name__}: {exc})") from None
        except httpx.TransportError as exc:
            raise self._error(what, url, f"connection failed ({type(exc).__name__}: {exc})") from None
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise self._error(what, url, f"malformed response ({type(exc).__name__}: {exc})") from None

    def _check(self, what: str, response: httpx.Response) -> None:
        if response.status_code >= 400:
            body = response.text.strip().replace("\n", " ")[:300]
            raise self._error(what, str(response.request.url), f"HTTP {response.status_code} {body}",
                              response.status_code)

    def _post(self, what: str, url: str, payload: dict[str, Any]) -> tuple[Any, float]:
        """POST ``payload``; the parsed JSON reply and the seconds until its headers arrived."""
        with self._guard(what, url):
            started = time.monotonic()
            with self._client.stream("POST", url, json=payload) as response:
                headers_at = time.monotonic() - started
                response.read()
            self._check(what, response)
            return response.json(), headers_at

    # -- requests -------------------------------------------------------------------------

    def _chat_payload(self, messages: list[Message], prefill: str, stop: list[str], sampling: Sampling) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "messages": with_prefill_line(messages, prefill), "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature, "top_p": sampling.top_p, "seed": sampling.seed,
        }
        if self.cfg.model:
            payload["model"] = self.cfg.model
        if stop:
            payload["stop"] = list(stop)
        return payload

    def complete(self, messages: list[Message], *, prefill: str, stop: list[str], sampling: Sampling,
                 halt: Halt | None = None) -> Completion:
        url = f"{self.base_url}/chat/completions"
        started = time.monotonic()
        data, headers_at = self._post("completion", url, self._chat_payload(messages, prefill, stop, sampling))
        seconds = time.monotonic() - started
        with self._guard("completion", url):
            choice, usage = data["choices"][0], data["usage"]
            cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
            return Completion(
                text=choice["message"].get("content") or "", prompt_tokens=int(usage["prompt_tokens"]),
                completion_tokens=int(usage["completion_tokens"]), seconds=seconds, prompt_seconds=headers_at,
                cached_tokens=int(cached), finish_reason=choice.get("finish_reason") or "stop",
                full_reply=True, provider="remote",
            )

    def stream(self, messages: list[Message], *, prefill: str, stop: list[str], sampling: Sampling) -> Iterator[str]:
        """The reply's text pieces, from the server's ``data:`` events until ``[DONE]``.

        A stream that ends before any choice carried a ``finish_reason`` was cut short (e.g.
        llama-cpp-python's server ends a stream with ``[DONE]`` when another request arrives,
        unless started with ``--interrupt_requests false``) and raises RemoteError."""
        url = f"{self.base_url}/chat/completions"
        payload = {**self._chat_payload(messages, prefill, stop, sampling), "stream": True}
        finished = False
        with self._guard("stream", url), self._client.stream("POST", url, json=payload) as response:
            if response.status_code >= 400:
                response.read()
                self._check("stream", response)
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, ": ping" comments, event names
                data = line[len("data:"):].strip()
                if data == "[DONE]":
                    break
                choice = (json.loads(data).get("choices") or [{}])[0]
                finished = finished or bool(choice.get("finish_reason"))
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    yield piece
        if not finished:
            raise self._error("stream", url, "stream ended before a finish_reason (interrupted or truncated)")

    def embed(self, text: str) -> list[float]:
        """The text's embedding. A server without pooling (llama-cpp-python's with the model's
        default pooling "none") returns one vector per token; these are mean-pooled, which is what
        llama.cpp's mean pooling computes (and what the local embedder uses)."""
        url = f"{self.base_url}/embeddings"
        payload: dict[str, Any] = {"input": text, **({"model": self.cfg.model} if self.cfg.model else {})}
        data, _ = self._post("embedding", url, payload)
        with self._guard("embedding", url):
            vector = data["data"][0]["embedding"]
            if vector and isinstance(vector[0], list):
                return [sum(column) / len(vector) for column in zip(*vector)]
            return [float(x) for x in vector]

    def count_tokens(self, text: str) -> int:
        """The server tokenizer's count (llama-cpp-python's ``POST /extras/tokenize``)."""
        url = f"{server_root(self.base_url)}/extras/tokenize"
        payload: dict[str, Any] = {"input": text, **({"model": self.cfg.model} if self.cfg.model else {})}
        try:
            data, _ = self._post("tokenize", url, payload)
        except RemoteError as exc:
            if exc.status in (404, 405):
                raise self._error("tokenize", url, "server has no /extras/tokenize; cannot count tokens") from None
            raise
        with self._guard("tokenize", url):
            return len(data["tokens"])

    def health(self) -> bool:
        """True if ``GET {base_url}/models`` answers 200 within the connect timeout; never raises."""
        try:
            response = self._client.get(f"{self.base_url}/models", timeout=self.cfg.connect_timeout)
        except (httpx.HTTPError, OSError, RuntimeError):
            return False
        return response.status_code == 200

    def metadata(self) -> dict[str, Any]:
        return {"provider": self.name, "model_id": self.model_id, "n_ctx": self.n_ctx, "sha256": self.sha256,
                "base_url": safe_url(self.base_url)}

    def cost(self, usage: Usage) -> float:
        return self.prices.cost(usage)

    def shutdown(self) -> None:
        self._client.close()


def with_prefill_line(messages: list[Message], prefill: str) -> list[dict[str, str]]:
    """Messages as dicts; a non-empty ``prefill`` is asked for on the last user message."""
    out = [{"role": m.role, "content": m.content} for m in messages]
    if not prefill:
        return out
    users = [i for i, m in enumerate(out) if m["role"] == "user"]
    if not users:
        return [*out, {"role": "user", "content": PREFILL_LINE + prefill}]
    last = out[users[-1]]
    last["content"] = f"{last['content'].rstrip()}\n{PREFILL_LINE}{prefill}"
    return out
