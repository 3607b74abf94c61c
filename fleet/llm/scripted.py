"""A scripted backend: replays canned replies in order (cycling). For tests of the loop logic and
for delivery benchmarks; it measures nothing about a real model."""

from __future__ import annotations

import json
from pathlib import Path

from fleet.llm.base import Completion, Halt, Message, Sampling


class ScriptedBackend:
    """Returns ``replies[i % len(replies)]`` for the i-th call (cut where ``halt`` stops it) and
    records every prompt, prefill and sampling it saw."""

    def __init__(self, replies: list[str], *, model_id: str = "scripted", delay: float = 0.0) -> None:
        if not replies:
            raise ValueError("a scripted backend needs at least one reply")
        self.replies = list(replies)
        self.model_id = model_id
        self.sha256 = "0" * 64
        self.delay = delay
        self.prompts: list[list[Message]] = []
        self.prefills: list[str] = []
        self.samplings: list[Sampling] = []

    @classmethod
    def from_file(cls, path: Path, *, delay: float = 0.0) -> "ScriptedBackend":
        """A JSON list of reply strings; each reply takes ``delay`` seconds."""
        replies = json.loads(Path(path).read_text())
        if not isinstance(replies, list) or not all(isinstance(r, str) for r in replies):
            raise ValueError(f"{path}: expected a JSON list of strings")
        return cls(replies, delay=delay)

    def complete(self, messages: list[Message], *, prefill: str, stop: list[str], sampling: Sampling,
                 halt: Halt | None = None) -> Completion:
        import time

        if self.delay:
            time.sleep(self.delay)
        text, finish = self._halted(self.replies[len(self.prompts) % len(self.replies)], halt)
        self.prompts.append(list(messages))
        self.prefills.append(prefill)
        self.samplings.append(sampling)
        prompt_chars = sum(len(m.content) for m in messages)
        return Completion(text, prompt_chars // 4, len(text) // 4, self.delay, 0.0, finish_reason=finish)

    @staticmethod
    def _halted(text: str, halt: Halt | None) -> tuple[str, str]:
        """``text`` cut after the first line at whose end ``halt`` stops it, as a streaming
        provider would."""
        if halt is not None:
            upto = 0
            for line in text.splitlines(keepends=True):
                upto += len(line)
                if line.endswith("\n") and halt(text[:upto]):
                    return text[:upto], "halted"
        return text, "stop"
