"""Building the learning parts from settings (shared by the agents, the CLI and benchmarks)."""

from __future__ import annotations

from pathlib import Path

import redis

from fleet.acl import agent_url, learning_url
from fleet.config import Settings
from fleet.sona.features import Embedder, Featurizer, HashEmbedder, LlamaEmbedder
from fleet.sona.learner import Learner
from fleet.sona.settings import LearningSettings
from fleet.sona.store import SonaStore, binary_client
from fleet.store import Keys


def embedder_for(settings: Settings, model_path: Path | None, model_id: str) -> Embedder:
    """llama.cpp embeddings of the agent's GGUF, or hashed identifiers when configured or when the
    agent has no GGUF (a scripted backend)."""
    cfg = LearningSettings.from_settings(settings)
    if cfg.embedder == "hash" or model_path is None:
        return HashEmbedder()
    if cfg.embedder != "llama":
        raise ValueError(f"learning.embedder must be 'llama' or 'hash', not {cfg.embedder!r}")
    return LlamaEmbedder(model_path, model_id=model_id, n_ctx=cfg.embed_ctx, n_threads=settings["model"]["n_threads"])


def agent_client(settings: Settings, agent_id: str) -> redis.Redis:
    """A binary client connected as the agent's own Redis user when ACLs are on."""
    return binary_client(agent_url(settings, agent_id), settings["redis"]["connect_timeout"])


def agent_store(settings: Settings, agent_id: str) -> SonaStore:
    """The agent's learning store (:func:`agent_client`)."""
    return SonaStore(agent_client(settings, agent_id), Keys(settings.prefix))


def learning_store(settings: Settings) -> SonaStore:
    """The consolidation's store, connected as the learning user when ACLs are on."""
    return SonaStore(binary_client(learning_url(settings), settings["redis"]["connect_timeout"]), Keys(settings.prefix))


def learner_for(settings: Settings, agent_id: str, embedder: Embedder) -> Learner:
    cfg = LearningSettings.from_settings(settings)
    return Learner(agent_store(settings, agent_id), Featurizer(embedder, dim=cfg.feature_dim, seed=cfg.seed), cfg,
                   agent_id)
