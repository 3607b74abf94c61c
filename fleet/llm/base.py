"""The model backend interface the engine talks to, and the record of one completion."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


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


@dataclass(frozen=True)
class Message:
    role: str
    content: str


class Backend(Protocol):
    """A text model. ``prefill`` is text the assistant reply is forced to start with."""

    model_id: str
    sha256: str

    def complete(self, messages: list[Message], *, prefill: str, stop: list[str], sampling: Sampling) -> Completion:
        ...
