"""The agent held by one worker process: its id, settings, Redis client and loaded engine.

The model is loaded once per process, in ``worker_process_init`` (after fork: loading before
the fork hangs native libraries). A process that runs tasks without that signal (an in-process
test worker) loads on first use.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from dataclasses import dataclass

from redis import Redis

from fleet import config
from fleet.config import Settings
from fleet.llm.base import Backend, Sampling
from fleet.sandbox import Limits
from fleet.sona.learner import Learner
from fleet.cache import CacheSettings, ResultCache
from fleet.costs import PriceTable
from fleet.llm.breaker import CircuitBreaker
from fleet.llm.router import RouterSettings, make_breakers
from fleet.sona.wiring import agent_client, embedder_for, learner_for
from fleet.store import Keys, connect, register_agent
from fleet.trm.loop import Engine, EngineSettings

log = logging.getLogger(__name__)


def agent_id_for(settings: Settings, nodename: str | None) -> str:
    """``agent.id`` if set, else the name part of the Celery node name, sanitised."""
    if settings["agent"]["id"]:
        return settings["agent"]["id"]
    name = (nodename or f"agent-{socket.gethostname()}").split("@", 1)[0]
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name)[:64] or "agent"


def load_backend(settings: Settings) -> Backend:
    """The configured local model backend: llama.cpp on the resolved model, or a scripted one."""
    if settings["llm"]["backend"] == "scripted":
        from fleet.llm.scripted import ScriptedBackend

        return ScriptedBackend.from_file(settings["llm"]["script"], delay=settings["llm"]["script_delay"])
    from fleet.llm.local import LocalBackend
    from fleet.llm.models import resolve

    model = settings["model"]
    return LocalBackend(resolve(settings), n_ctx=model["n_ctx"], n_threads=model["n_threads"], seed=model["seed"],
                        prices=PriceTable.from_settings(settings))


def load_providers(settings: Settings, local: Backend) -> dict[str, Backend]:
    """``local`` plus the remote provider when ``remote.base_url`` is set."""
    providers = {"local": local}
    if settings["remote"]["base_url"]:
        from fleet.llm.remote import RemoteBackend, RemoteSettings

        providers["remote"] = RemoteBackend(RemoteSettings.from_settings(settings),
                                            prices=PriceTable.from_settings(settings))
    return providers


@dataclass
class Agent:
    """Everything one worker process needs to run jobs."""

    agent_id: str
    settings: Settings
    keys: Keys
    redis: Redis
    engine: Engine
    learner: Learner
    cache: ResultCache
    providers: dict[str, Backend]
    breakers: dict[str, CircuitBreaker]

    @classmethod
    def start(cls, nodename: str | None, backend: Backend | None = None) -> "Agent":
        settings = config.load()
        backend = backend or load_backend(settings)
        engine = Engine(backend, sampling=Sampling.from_settings(settings),
                        settings=EngineSettings.from_settings(settings), limits=Limits.from_settings(settings))
        keys = Keys(settings.prefix)
        client = connect(settings["redis"]["url"], settings["redis"]["connect_timeout"])
        agent_id = agent_id_for(settings, nodename)
        embedder = embedder_for(settings, getattr(backend, "path", None), backend.model_id)
        cache = ResultCache(agent_client(settings, agent_id), settings.prefix, CacheSettings.from_settings(settings))
        breakers = make_breakers(RouterSettings.from_settings(settings))
        agent = cls(agent_id, settings, keys, client, engine, learner_for(settings, agent_id, embedder), cache,
                    load_providers(settings, backend), breakers)
        register_agent(client, keys, agent.agent_id, {
            "node": nodename or "", "pid": os.getpid(), "model": backend.model_id, "model_sha256": backend.sha256,
        })
        log.info("agent %s ready with model %s", agent.agent_id, backend.model_id)
        return agent


_current: Agent | None = None


def current() -> Agent:
    """This process's agent, started on first use if the worker signal did not start it."""
    global _current
    if _current is None:
        _current = Agent.start(os.environ.get("FLEET_AGENT_NODENAME"))
    return _current


def installed() -> Agent | None:
    """This process's agent if one was started or installed, else None."""
    return _current


def install(agent: Agent | None) -> None:
    """Set (or clear) this process's agent; used by the worker signal and by tests."""
    global _current
    _current = agent
