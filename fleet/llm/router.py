"""Which provider serves a job (local small model or remote API), and failover between them.

:func:`decide` picks the provider from the job alone, in this order:

1. privacy: if any bundled file's path matches a ``private_globs`` pattern (``fnmatch``) or any
   bundled file has a line that is exactly ``private_marker``, the job stays local whatever the
   strategy (every file is checked, not only the target: the prompt quotes signatures and
   doctests of sibling modules);
2. the strategy: ``local-only`` → local; ``cloud-only`` → remote (the rollback switch);
   ``cost-optimized`` → local up to COMPLEX (TRM refinement carries the small model), remote for
   VERY_COMPLEX; ``quality-first`` → remote unless SIMPLE;
3. availability: remote chosen but no remote provider configured → local, and the reason says so.

:class:`RoutedBackend` is the backend the engine gets for one job: the chosen provider first,
the other as fallback, each behind its process-wide :class:`~fleet.llm.breaker.CircuitBreaker`.
A private or ``local-only`` job never falls back to the remote provider.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from fleet.complexity import Complexity, Cutoffs, Level, measure
from fleet.errors import ConfigError, FleetError
from fleet.jobs import Job
from fleet.llm.base import Backend, Completion, Halt, Message, Sampling, Usage
from fleet.llm.breaker import CircuitBreaker

STRATEGIES = ("cost-optimized", "quality-first", "local-only", "cloud-only")
LOCAL, REMOTE = "local", "remote"
MAX_ERRORS = 10  # fallback_errors kept per job (the latest)
ERROR_CHARS = 200  # each trimmed to this many characters


class NoProvider(FleetError):
    """Neither the chosen provider nor an allowed fallback could serve the request."""


@dataclass(frozen=True)
class RouterSettings:
    """The ``[router]`` settings; the cut-offs are :class:`fleet.complexity.Cutoffs`' fields."""

    strategy: str = "cost-optimized"
    private_globs: tuple[str, ...] = ()
    private_marker: str = "# fleet: private"  # "" disables the marker
    breaker_failures: int = 3
    breaker_reset: float = 60.0
    refine_request: bool = False
    moderate: float = Cutoffs.moderate
    complex: float = Cutoffs.complex
    very_complex: float = Cutoffs.very_complex

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"router.strategy {self.strategy!r} is not one of: {', '.join(STRATEGIES)}")
        if self.breaker_failures < 1 or self.breaker_reset <= 0:
            raise ConfigError(
                f"router.breaker_failures must be >= 1 and router.breaker_reset > 0, got "
                f"{self.breaker_failures} and {self.breaker_reset}"
            )
        try:
            self.cutoffs  # Cutoffs checks its own order
        except ValueError as exc:
            raise ConfigError(f"router cut-offs: {exc}") from exc

    @property
    def cutoffs(self) -> Cutoffs:
        return Cutoffs(self.moderate, self.complex, self.very_complex)

    @classmethod
    def from_settings(cls, settings: Any) -> "RouterSettings":
        """From ``settings.values["router"]`` (missing section or keys → the defaults)."""
        section = dict(settings.values.get("router", {}))
        known = {f.name: f.default for f in dataclasses.fields(cls)}
        unknown = sorted(set(section) - set(known))
        if unknown:
            raise ConfigError(f"unknown router setting(s): {', '.join(unknown)}")
        return cls(**{key: _checked(key, value, known[key]) for key, value in section.items()})


def _checked(key: str, value: Any, default: Any) -> Any:
    """``value`` converted to the kind of ``default`` (list → tuple, int → float), or ConfigError."""
    if isinstance(default, tuple):
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
    elif isinstance(default, bool) or isinstance(value, bool):
        if isinstance(value, bool) and isinstance(default, bool):
            return value
    elif isinstance(default, float) and isinstance(value, (int, float)):
        return float(value)
    elif isinstance(value, type(default)):
        return value
    raise ConfigError(f"router.{key} must be {type(default).__name__}, got {value!r}")


@dataclass(frozen=True)
class Decision:
    """Where a job goes and why; ``complexity`` is :meth:`Complexity.as_dict`."""

    provider: str  # "local" | "remote"
    reason: str
    complexity: dict[str, Any]
    trm_suitable: bool
    private: bool
    strategy: str

    @property
    def refine(self) -> bool:
        """Whether the engine refines (TRM) this job: ``trm_suitable or provider == local``. The
        small local model is carried by refinement at any complexity (a single pass on a very
        complex module leaves most of it uncovered, and the loop stops by itself once a simple
        one is covered); the suitability rule decides for the remote provider, whose every
        iteration is paid for."""
        return self.trm_suitable or self.provider == LOCAL


def trm_suitable(level: Level, refine_request: bool) -> bool:
    """TRM refinement pays off between the extremes: ``refine_request or level not in {SIMPLE,
    VERY_COMPLEX}`` (a simple module is covered in one pass; a very complex one needs more than
    refinement of a small model's drafts)."""
    return refine_request or level not in (Level.SIMPLE, Level.VERY_COMPLEX)


def _marked(source: str, marker: str) -> bool:
    return bool(marker.strip()) and any(line.strip() == marker.strip() for line in source.splitlines())


def private_reason(job: Job, cfg: RouterSettings) -> str | None:
    """Why the job must stay local (the first private file found, target first), or None."""
    paths = [job.target_path, *sorted(p for p in job.files if p != job.target_path)]
    for path in paths:
        glob = next((g for g in cfg.private_globs if fnmatch.fnmatchcase(path, g)), None)
        if glob is not None:
            return f"{path} matches the private glob {glob!r}"
        if _marked(job.files[path], cfg.private_marker):
            return f"{path} carries the private marker {cfg.private_marker!r}"
    return None


def _by_strategy(strategy: str, measured: Complexity) -> tuple[str, str]:
    """The provider the strategy picks for this complexity, and the sentence saying why."""
    what = f"a {measured.level.value} module (score {measured.score:.1f})"
    if strategy == "local-only":
        return LOCAL, "strategy local-only keeps every job local"
    if strategy == "cloud-only":
        return REMOTE, "strategy cloud-only sends every job to the remote provider"
    if strategy == "cost-optimized":
        if measured.level is Level.VERY_COMPLEX:
            return REMOTE, f"cost-optimized: {what} is beyond the small local model"
        return LOCAL, f"cost-optimized: {what} stays local, where TRM refinement carries the small model"
    if measured.level is Level.SIMPLE:
        return LOCAL, f"quality-first: {what} is served as well by the local model"
    return REMOTE, f"quality-first: {what} goes to the remote model"


def decide(job: Job, cfg: RouterSettings, *, remote_available: bool) -> Decision:
    """The provider for ``job`` (privacy, then strategy, then availability; module docstring)."""
    measured = measure(job.target_source, cfg.cutoffs)
    private = private_reason(job, cfg)
    if private is not None:
        provider, reason = LOCAL, f"private: {private}; kept local whatever the strategy ({cfg.strategy})"
    else:
        provider, reason = _by_strategy(cfg.strategy, measured)
    if provider == REMOTE and not remote_available:
        provider, reason = LOCAL, f"{reason}; but no remote provider is configured, so it runs locally"
    return Decision(provider, reason, measured.as_dict(), trm_suitable(measured.level, cfg.refine_request),
                    private is not None, cfg.strategy)


def make_breakers(cfg: RouterSettings, clock: Callable[[], float] = time.monotonic) -> dict[str, CircuitBreaker]:
    """One breaker per provider, to share across the jobs of a process."""
    return {name: CircuitBreaker(cfg.breaker_failures, cfg.breaker_reset, clock=clock) for name in (LOCAL, REMOTE)}


def _other(provider: str) -> str:
    return REMOTE if provider == LOCAL else LOCAL


def _remote_forbidden(decision: Decision) -> str | None:
    """Why this job may not use the remote provider at all, or None."""
    if decision.private:
        return "the job is private"
    if decision.strategy == "local-only":
        return "the strategy is local-only"
    return None


class RoutedBackend:
    """A :class:`~fleet.llm.base.Backend` for one job: the primary provider, then the fallback.

    ``complete``: for the primary then the fallback, skip a provider whose breaker refuses
    (recorded as "breaker open"); otherwise call it, ``record_success`` and return its
    completion, or on any ``Exception`` ``record_failure``, record the error and go on. When
    nothing served, raise :class:`NoProvider`. A provider's name is its ``name`` attribute, else
    the decision's provider for the primary and the other one for the fallback. One instance
    serves one job and is not meant to be shared across threads (the breakers are)."""

    def __init__(self, primary: Backend, fallback: Backend | None, breakers: Mapping[str, CircuitBreaker],
                 decision: Decision) -> None:
        self.decision = decision
        self._breakers = breakers
        self._chain = [(getattr(primary, "name", decision.provider), primary)]
        self.fallback_withheld: str | None = None
        forbidden = _remote_forbidden(decision)
        if self._chain[0][0] == REMOTE and forbidden:
            raise ValueError(f"remote primary for a job that must stay local: {forbidden}")
        if fallback is not None:
            self._add_fallback(getattr(fallback, "name", _other(decision.provider)), fallback)
        missing = [name for name, _ in self._chain if name not in breakers]
        if missing:
            raise ValueError(f"no circuit breaker for provider(s): {', '.join(missing)}")
        self._served_by = self._chain[0]
        self._usage: dict[str, Usage] = {}
        self.provider_used: list[str] = []
        self.fallback_taken = False
        self.fallback_errors: list[str] = []

    def _add_fallback(self, name: str, fallback: Backend) -> None:
        forbidden = _remote_forbidden(self.decision) if name == REMOTE else None
        if forbidden:
            self.fallback_withheld = f"no remote fallback: {forbidden}"
        else:
            self._chain.append((name, fallback))

    @property
    def model_id(self) -> str:
        return self._served_by[1].model_id

    @property
    def sha256(self) -> str:
        return self._served_by[1].sha256

    @property
    def provider(self) -> str:
        """The name of the provider that served the last call (the primary before any call)."""
        return self._served_by[0]

    def complete(self, messages: list[Message], *, prefill: str, stop: list[str], sampling: Sampling,
                 halt: Halt | None = None) -> Completion:
        failures: list[str] = []
        for position, (name, backend) in enumerate(self._chain):
            breaker = self._breakers[name]
            if not breaker.allow():
                failures.append(self._note(name, "breaker open"))
                continue
            try:
                completion = backend.complete(messages, prefill=prefill, stop=stop, sampling=sampling, halt=halt)
            except Exception as exc:  # any provider error: count it and fail over
                breaker.record_failure()
                failures.append(self._note(name, f"{type(exc).__name__}: {exc}"))
                continue
            breaker.record_success()
            self._served(position, completion)
            return completion
        raise NoProvider(f"no provider could serve the request: {'; '.join(failures)}")

    def _note(self, name: str, error: str) -> str:
        """Record a provider's failure (trimmed; the latest MAX_ERRORS kept) and return it."""
        text = f"{name}: {error}"[:ERROR_CHARS]
        self.fallback_errors = [*self.fallback_errors, text][-MAX_ERRORS:]
        return text

    def _served(self, position: int, completion: Completion) -> None:
        self._served_by = self._chain[position]
        name, backend = self._served_by
        self.fallback_taken = self.fallback_taken or position > 0
        if name not in self.provider_used:
            self.provider_used.append(name)
        key = completion.provider
        usage = self._usage.get(key) or Usage(key, backend.model_id)
        self._usage[key] = dataclasses.replace(
            usage,
            prompt_tokens=usage.prompt_tokens + completion.prompt_tokens,
            completion_tokens=usage.completion_tokens + completion.completion_tokens,
            cpu_seconds=usage.cpu_seconds + completion.cpu_seconds,
        )

    def usage(self) -> list[Usage]:
        """Per provider (``Completion.provider``), the tokens and CPU seconds of its completions."""
        return list(self._usage.values())

    def record(self) -> dict[str, Any]:
        """The routing record of the job (JSON-safe)."""
        d = self.decision
        return {
            "decision": d.provider, "reason": d.reason, "complexity": d.complexity, "strategy": d.strategy,
            "trm_suitable": d.trm_suitable, "refine": d.refine, "private": d.private, "provider_used": list(self.provider_used),
            "fallback_taken": self.fallback_taken, "fallback_errors": list(self.fallback_errors),
            "fallback_withheld": self.fallback_withheld,
            "breakers": {name: self._breakers[name].snapshot() for name, _ in self._chain},
        }


def route(job: Job, cfg: RouterSettings, providers: Mapping[str, Backend],
          breakers: Mapping[str, CircuitBreaker]) -> RoutedBackend:
    """Decide for ``job`` and wrap the chosen provider (``providers[name]``, name "local" /
    "remote") with the other as fallback."""
    decision = decide(job, cfg, remote_available=REMOTE in providers)
    if decision.provider not in providers:
        raise NoProvider(f"the {decision.provider} provider is not configured ({decision.reason})")
    return RoutedBackend(providers[decision.provider], providers.get(_other(decision.provider)), breakers, decision)
