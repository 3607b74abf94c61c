"""Task features x ∈ R^d for the policy head.

    x = [ P·e/‖e‖ (d − 9 values) ; s (8 AST statistics) ; 1 ]

e is an embedding of the target's source (llama.cpp's mean-pooled embedding from the agent's own
GGUF, or a hashed bag of identifiers where no model is loaded), P a fixed Gaussian random
projection N(0, 1/(d−9)) drawn from ``seed`` (the same on every agent, so features are comparable
fleet-wide), s the statistics of :func:`ast_stats`, each squashed into [0, 1). The last entry is a
bias term.
"""

from __future__ import annotations

import ast
import hashlib
import re
from pathlib import Path
from typing import Protocol

import numpy as np

from fleet.analysis import analyse
from fleet.sona.lora import F32

N_STATS = 8
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Embedder(Protocol):
    model_id: str
    dim: int

    def embed(self, text: str) -> np.ndarray:
        ...


class HashEmbedder:
    """A bag of identifiers hashed into ``dim`` buckets (signed), for agents without a model."""

    model_id = "hash"

    def __init__(self, dim: int = 512) -> None:
        self.dim = dim

    def embed(self, text: str) -> np.ndarray:
        out = np.zeros(self.dim, F32)
        for word in IDENT.findall(text):
            h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
            out[h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        return out


class LlamaEmbedder:
    """Mean-pooled embeddings from a GGUF in llama.cpp; a second context on the same memory-mapped
    weights as the agent's generator, truncated to ``n_ctx`` tokens of the source."""

    def __init__(self, model_path: Path, *, model_id: str, n_ctx: int = 512, n_threads: int = 0) -> None:
        import llama_cpp

        self.model_id = model_id
        self.llm = llama_cpp.Llama(model_path=str(model_path), embedding=True, n_ctx=n_ctx, n_batch=n_ctx,
                                   pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN, n_threads=n_threads or None,
                                   verbose=False)
        self.dim = self.llm.n_embd()

    def embed(self, text: str) -> np.ndarray:
        return np.asarray(self.llm.embed(text, truncate=True), dtype=F32)


def ast_stats(source: str, module: str) -> np.ndarray:
    """log1p-squashed counts: lines, functions, classes, mean and max McCabe complexity, branches,
    imports, public names; each as 1 − 1/(1 + log1p(v)), in [0, 1)."""
    analysis = analyse(source, module)
    tree = ast.parse(source)
    cx = [s.complexity for s in analysis.segments] or [0]
    branches = sum(isinstance(n, (ast.If, ast.For, ast.While, ast.Try, ast.IfExp, ast.Match)) for n in ast.walk(tree))
    imports = sum(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(tree))
    raw = [analysis.lines, len(analysis.segments), analysis.classes, float(np.mean(cx)), max(cx), branches,
           imports, len(analysis.public)]
    logs = np.log1p(np.asarray(raw, np.float64))
    return (1.0 - 1.0 / (1.0 + logs)).astype(F32)


class Featurizer:
    """Maps a target to x (module docstring); deterministic given (embedder, d, seed)."""

    def __init__(self, embedder: Embedder, *, dim: int = 256, seed: int = 7) -> None:
        if dim <= N_STATS + 2:
            raise ValueError(f"feature dim must exceed {N_STATS + 2}")
        self.embedder, self.dim = embedder, dim
        rng = np.random.default_rng(seed)
        width = dim - N_STATS - 1
        self.projection = rng.normal(0.0, 1.0 / np.sqrt(width), size=(width, embedder.dim)).astype(F32)

    def embedding(self, source: str) -> np.ndarray:
        """The unit-norm embedding of ``source`` (zeros for an empty one)."""
        e = self.embedder.embed(source)
        norm = float(np.linalg.norm(e))
        return (e / norm).astype(F32) if norm > 0 else e.astype(F32)

    def features(self, source: str, module: str, embedding: np.ndarray | None = None) -> np.ndarray:
        e = self.embedding(source) if embedding is None else embedding
        return np.concatenate([self.projection @ e, ast_stats(source, module), np.ones(1, F32)]).astype(F32)


def pattern_vector(x: np.ndarray) -> np.ndarray:
    """The unit-norm embedding part of x: the space shared patterns are clustered and retrieved in."""
    e = x[: len(x) - N_STATS - 1]
    norm = float(np.linalg.norm(e))
    return (e / norm).astype(F32) if norm > 0 else e.astype(F32)
