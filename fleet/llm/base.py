"""The provider interface the engine talks to, and the records of one completion and its usage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol

Halt = Callable[[str], bool]  # the reply so far → stop generating now


@dataclass(frozen=True)
class Sampling:
    """Sampling settings of one request."""

    max_tokens: int = 900
    temperature: float = 0.3
    top_p: float = 0.8
    top_k: int = 20
    repeat_penalty: float = 1.1
    seed: int = 1234

    @classmethod
    def from_settings(cls, settings) -> "Sampling":
        llm = settings["llm"]
        return cls(
            max_tokens=llm["max_tokens"], temperature=llm["temperature"], top_p=llm["top_p"],
            top_k=llm["top_k"], repeat_penalty=llm["repeat_penalty"], seed=settings["model"]["seed"],
        )


@dataclass(frozen=True)
class Completion:
    """One reply: its text, token counts, wall seconds, seconds until the first token (≈ prompt
    evaluation), prompt tokens served from the KV cache, and why it stopped."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    prompt_seconds: float
    cached_tokens: int = 0
    finish_reason: str = "stop"
    full_reply: bool = False  # text is the whole reply (a remote chat API cannot be prefilled)
    provider: str = "local"
    cpu_seconds: float = 0.0  # CPU time this process spent on the request (local inference)


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class Usage:
    """What one job (or request) consumed on one provider; priced by :func:`fleet.costs.cost`."""

    provider: str
    model_id: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cpu_seconds: float = 0.0


class Backend(Protocol):
    """A text model. ``prefill`` is text the assistant reply is forced to start with (providers
    that cannot prefill return ``full_reply=True``). ``halt``, where the provider streams, is
    asked at each line end of the reply so far and stops generation when it says so
    (``finish_reason`` ``"halted"``); a provider whose replies arrive whole ignores it."""

    model_id: str
    sha256: str

    def complete(self, messages: list[Message], *, prefill: str, stop: list[str], sampling: Sampling,
                 halt: Halt | None = None) -> Completion:
        ...


class Provider(Backend, Protocol):
    """A backend with everything the router and operators need."""

    name: str  # "local" or "remote"
    n_ctx: int

    def stream(self, messages: list[Message], *, prefill: str, stop: list[str], sampling: Sampling) -> Iterator[str]:
        """The reply's text pieces as they are generated."""
        ...

    def embed(self, text: str) -> list[float]:
        ...

    def count_tokens(self, text: str) -> int:
        ...

    def health(self) -> bool:
        """True if a request can be served now (cheap; no generation)."""
        ...

    def metadata(self) -> dict[str, Any]:
        """{"provider", "model_id", "n_ctx", "sha256"} (sha256 "" when the provider cannot tell)."""
        ...

    def shutdown(self) -> None:
        ...
