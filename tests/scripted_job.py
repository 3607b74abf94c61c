"""One job of the real engine in the real sandbox, its replies scripted (no model)."""

from __future__ import annotations

from typing import Any

from fleet.jobs import Job, Options
from fleet.llm.base import Sampling
from fleet.llm.scripted import ScriptedBackend
from fleet.sandbox import Limits
from fleet.trm.loop import Engine, EngineSettings


def run_job(module: str, source: str, replies: list[str], **settings: Any) -> tuple[dict, ScriptedBackend]:
    """The report of a one-iteration job on ``<module>.py`` holding ``source``, and its backend.
    Settings default to 2 reruns, no mutation scoring (it multiplies the sandbox runs) and no
    input variants (they would add kept tests to every scenario)."""
    settings.setdefault("reruns", 2)
    settings.setdefault("mutation_max_mutants", 0)
    settings.setdefault("max_variants", 0)  # tests of variants ask for them
    path = f"{module}.py"
    job = Job(module=module, target_path=path, files={path: source}, options=Options(max_iterations=1))
    backend = ScriptedBackend(replies)
    report = Engine(backend, sampling=Sampling(), limits=Limits(), settings=EngineSettings(**settings)).run(job)
    return report, backend
