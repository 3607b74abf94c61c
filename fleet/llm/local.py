"""The local provider: a GGUF model in llama.cpp (llama-cpp-python), loaded once per agent process.

Prompts are rendered with the model's own chat template (GGUF metadata), then the forced start of
the reply (``prefill``) is appended, so the model continues inside a code block. llama.cpp keeps
the evaluated prompt in its KV cache and reuses the longest common token prefix on the next call,
so prompts are built with their stable part first. ``prompt_seconds`` is the time to the first
streamed token, i.e. prompt evaluation; ``cached_tokens`` is the reused prefix length.
"""

from __future__ import annotations

import os
import time
from typing import Any, Iterator

from fleet.costs import PriceTable
from fleet.llm.base import Completion, Halt, Message, Sampling, Usage
from fleet.llm.models import ResolvedModel


class LocalBackend:
    """llama.cpp inference on the CPU (the ``local`` provider)."""

    name = "local"

    def __init__(self, model: ResolvedModel, *, n_ctx: int = 8192, n_threads: int = 0, seed: int = 1234,
                 prices: PriceTable | None = None) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.prices = prices or PriceTable()
        self.n_threads = n_threads
        self._embedder: Any = None
        self.model_id = model.model_id
        self.sha256 = model.sha256
        self.path = model.path
        self.llm = Llama(
            model_path=str(model.path), n_ctx=n_ctx, n_threads=n_threads or os.cpu_count() or 1,
            seed=seed, verbose=False,
        )
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError(f"{model.path} has no chat template; use an instruct model")
        token_text = self.llm._model.token_get_text
        eos, bos = self.llm.token_eos(), self.llm.token_bos()
        self.formatter = Jinja2ChatFormatter(
            template=template, eos_token=token_text(eos) if eos != -1 else "", bos_token=token_text(bos) if bos != -1 else ""
        )
        self.eos_text = token_text(eos) if eos != -1 else ""
        self.n_ctx = n_ctx

    def render(self, messages: list[Message], prefill: str) -> str:
        rendered = self.formatter(messages=[{"role": m.role, "content": m.content} for m in messages])
        return rendered.prompt + prefill

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode(), add_bos=False, special=True))

    def _reused_prefix(self, tokens: list[int]) -> int:
        previous = self.llm.input_ids[: self.llm.n_tokens].tolist()
        count = 0
        for a, b in zip(previous, tokens):
            if a != b:
                break
            count += 1
        return count

    def _generate(self, tokens: list[int], stop: list[str], sampling: Sampling) -> Iterator[dict[str, Any]]:
        max_tokens = max(16, min(sampling.max_tokens, self.n_ctx - len(tokens) - 8))
        return self.llm.create_completion(
            tokens, max_tokens=max_tokens, temperature=sampling.temperature, top_p=sampling.top_p,
            top_k=sampling.top_k, repeat_penalty=sampling.repeat_penalty, seed=sampling.seed,
            stop=[*stop, self.eos_text] if self.eos_text else stop, stream=True,
        )

    def complete(self, messages: list[Message], *, prefill: str, stop: list[str], sampling: Sampling,
                 halt: Halt | None = None) -> Completion:
        tokens = self.llm.tokenize(self.render(messages, prefill).encode(), add_bos=False, special=True)
        cached = self._reused_prefix(tokens)
        started, cpu = time.monotonic(), time.process_time()
        first = None
        parts: list[str] = []
        finish = "stop"
        for chunk in self._generate(tokens, stop, sampling):
            if first is None:
                first = time.monotonic() - started
            choice = chunk["choices"][0]
            parts.append(choice["text"])
            finish = choice.get("finish_reason") or finish
            if halt is not None and "\n" in choice["text"] and halt("".join(parts)):
                finish = "halted"
                break
        seconds = time.monotonic() - started
        return Completion(
            text="".join(parts), prompt_tokens=len(tokens), completion_tokens=len(parts), seconds=seconds,
            prompt_seconds=first if first is not None else seconds, cached_tokens=cached, finish_reason=finish,
            provider=self.name, cpu_seconds=time.process_time() - cpu,
        )

    def stream(self, messages: list[Message], *, prefill: str, stop: list[str], sampling: Sampling) -> Iterator[str]:
        tokens = self.llm.tokenize(self.render(messages, prefill).encode(), add_bos=False, special=True)
        for chunk in self._generate(tokens, stop, sampling):
            yield chunk["choices"][0]["text"]

    def embed(self, text: str) -> list[float]:
        """Mean-pooled embedding from a second llama.cpp context on the same mapped weights."""
        if self._embedder is None:
            from fleet.sona.features import LlamaEmbedder

            self._embedder = LlamaEmbedder(self.path, model_id=self.model_id, n_threads=self.n_threads)
        return self._embedder.embed(text).tolist()

    def health(self) -> bool:
        return self.llm is not None

    def metadata(self) -> dict[str, Any]:
        return {"provider": self.name, "model_id": self.model_id, "n_ctx": self.n_ctx, "sha256": self.sha256}

    def shutdown(self) -> None:
        if self.llm is not None:
            self.llm.close()
            self.llm = None

    def cost(self, usage: Usage) -> float:
        return self.prices.cost(usage)
