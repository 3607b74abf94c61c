"""Prometheus metrics of the agents (prometheus-client in multiprocess mode).

An agent is a prefork Celery worker: its main process forks the pool process that runs the tasks.
Pool processes record into per-process mmap files in ``PROMETHEUS_MULTIPROC_DIR``; the main
process serves ``/metrics`` from a registry holding a ``MultiProcessCollector`` over that
directory plus :class:`QueueDepthCollector`, which reads the queue depths from Redis at scrape time.

Lifecycle (hooked up in ``workers/signals.py``):

* ``celeryd_init`` (main process, before the pool forks): :func:`start_worker_exposition` deletes
  the ``*.db`` files left in the directory by an earlier run, exports ``PROMETHEUS_MULTIPROC_DIR``
  (inherited by the pool processes, which import prometheus_client only later, at first use) and
  starts the HTTP server.
* ``worker_process_shutdown`` (in a pool process as it exits): :func:`process_stopped` calls
  ``multiprocess.mark_process_dead``. Counters and histograms of dead processes stay in the sums.

Settings ``[metrics]``: ``enabled``; ``address``; ``port``; ``multiproc_dir`` (``{node}`` is replaced
by the node name; empty = ``<data_dir>/run/prometheus-<node>``; only ``*.db`` files in it are ever
deleted; agents on one host need distinct directories, which ``{node}`` gives them).

Port rule: an agent whose node name is ``agent-<k>@host`` (``fleet up`` / ``fleet scale``, or the
Procfile under honcho) serves on ``port + k − 1``: agent-1 → 9808, agent-2 → 9809, … Any other
node name serves on ``port``.

Recording is a no-op in a process without ``PROMETHEUS_MULTIPROC_DIR`` (metrics disabled, the CLI)
and never raises: a failure is logged and the job goes on. A report answered from the result
cache counts only as a cache hit (no TRM, learning, routing or cost series move).

``fleet_sona_retention_estimate`` is an estimate, not a measurement: nothing re-evaluates earlier
experience after a consolidation. The consolidation report holds ``penalty`` = (λ/2)·Δθᵀ F Δθ, the
EWC++ penalty of the new base against the previous anchor. For this logistic head F is the Hessian
of the mean BCE, so ``penalty / λ`` is the second-order estimate of how much the mean BCE on
earlier experience rose (nats per sample, exported as ``fleet_sona_forgetting_estimate``), and
``exp(−penalty / λ)`` is the estimated ratio of the geometric-mean likelihood the new base gives
earlier rewards to the one the anchored base gave (1 = no predicted forgetting; 0.9 ⇔ 0.105 nats).
Caveats: "earlier experience" is the EWC++ mixture of earlier batches, whose weights sum to
1 − (1 − α)^t (so the first consolidations understate), the first-order term is ignored, and it is
0 / 1 at the first consolidation (nothing earlier to forget). ``fleet_sona_replay_loss{stage}`` is
the mean BCE on the consolidation's own (new) replay batch before (merged) and after (fitted,
truncated) — training data, not held out.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from fleet.celeryconf import GENERATE_QUEUE, MAINTENANCE_QUEUE
from fleet.config import Settings
from fleet.errors import ConfigError

log = logging.getLogger(__name__)

ENV_DIR = "PROMETHEUS_MULTIPROC_DIR"
QUEUES = (GENERATE_QUEUE, MAINTENANCE_QUEUE)
SCRAPE_TIMEOUT = 1.0
LATENCY_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
CACHE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
UNIT_BUCKETS = (0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class Spec:
    """One metric family: its exposed name, type, help, label names and histogram buckets.
    ``scraped`` families are produced at scrape time by the main process, not recorded."""

    name: str
    kind: str  # "counter" | "gauge" | "histogram"
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    scraped: bool = False


SPECS: tuple[Spec, ...] = (
    Spec("fleet_trm_invocations_total", "counter", "Jobs run by the engine (not cache answers); refine=true when "
         "TRM refinement was on (flag trm.enabled and the router's decision refines).", ("refine",)),
    Spec("fleet_trm_converged_total", "counter", "Engine runs that converged (quality threshold or fully covered).",
         ("refine",)),
    Spec("fleet_trm_iterations", "histogram", "Iterations per engine run.", ("refine",), (1, 2, 3, 4, 5, 6, 7)),
    Spec("fleet_trm_quality_improvement", "histogram", "Final quality minus the first iteration's quality "
         "(what refinement added to the first draft).", ("refine",), UNIT_BUCKETS),
    Spec("fleet_cache_requests_total", "counter", "Result-cache lookups by result (hit|miss).", ("result",)),
    Spec("fleet_cache_load_seconds", "histogram", "Seconds of one result-cache lookup (Redis read and decode).",
         ("result",), CACHE_BUCKETS),
    Spec("fleet_sona_adaptations_total", "counter", "MicroLoRA updates applied (learning steps)."),
    Spec("fleet_sona_reward", "histogram", "Reward of each engine run's learning step.", (), UNIT_BUCKETS),
    Spec("fleet_sona_consolidations_total", "counter", "Consolidations that ran (published a version)."),
    Spec("fleet_sona_version", "gauge", "Version published by the last consolidation this agent ran."),
    Spec("fleet_sona_ewc_penalty", "gauge", "EWC++ penalty (lambda/2 dtheta' F dtheta) of the last consolidation."),
    Spec("fleet_sona_forgetting_estimate", "gauge", "penalty/lambda: second-order estimate of the mean BCE increase "
         "on earlier experience at the last consolidation (nats per sample)."),
    Spec("fleet_sona_retention_estimate", "gauge", "exp(-penalty/lambda): estimated likelihood ratio kept on earlier "
         "experience at the last consolidation (an estimate, see fleet/metrics.py)."),
    Spec("fleet_sona_replay_loss", "gauge", "Mean BCE on the last consolidation's own replay batch (training data), "
         "stage=before|after the fit.", ("stage",)),
    Spec("fleet_sona_patterns", "gauge", "Shared patterns published by the last consolidation."),
    Spec("fleet_sona_pattern_confidence", "gauge", "Mean confidence of the published shared patterns."),
    Spec("fleet_route_requests_total", "counter", "Engine runs by the router's chosen provider.", ("provider",)),
    Spec("fleet_route_fallbacks_total", "counter", "Engine runs in which the fallback provider served."),
    Spec("fleet_cost_total", "counter", "Spend per provider by the price table (USD).", ("provider",)),
    Spec("fleet_cost_cloud_only_total", "counter", "The same tokens priced at the remote rates (USD)."),
    Spec("fleet_tokens_total", "counter", "Tokens per provider, kind=prompt|completion.", ("provider", "kind")),
    Spec("fleet_inference_seconds", "histogram", "Wall seconds of one completion, by the provider that served it.",
         ("provider",), LATENCY_BUCKETS),
    Spec("fleet_queue_depth", "gauge", "Messages waiting in the queue (all priority lists), read at scrape time.",
         ("queue",), scraped=True),
    Spec("fleet_broker_up", "gauge", "1 if the last scrape could read the queue depths from Redis.", scraped=True),
)
BY_NAME = {spec.name: spec for spec in SPECS}
SUFFIXES = {"counter": ("",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}


def series_names() -> set[str]:
    """Every sample name the exposition can carry (histograms as _bucket/_count/_sum)."""
    return {spec.name + suffix for spec in SPECS for suffix in SUFFIXES[spec.kind]}


# --- settings, directory, port ------------------------------------------------------------------


@dataclass(frozen=True)
class MetricsSettings:
    """The ``[metrics]`` section (see the module docstring)."""

    enabled: bool = True
    port: int = 9808
    address: str = "127.0.0.1"
    multiproc_dir: str = ""

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"metrics.port must be 1..65535, got {self.port}")

    @classmethod
    def from_settings(cls, settings: Settings) -> "MetricsSettings":
        """From ``settings["metrics"]``; a missing section or key takes the default."""
        section: Mapping[str, Any] = settings.values.get("metrics", {})
        return cls(**{k: section[k] for k in cls.__dataclass_fields__ if k in section})


def node_label(node: str | None) -> str:
    """The node name made safe for a file name."""
    return re.sub(r"[^A-Za-z0-9_.@-]", "-", node or "agent")[:128]


def multiproc_dir(settings: Settings, cfg: MetricsSettings, node: str | None) -> Path:
    """``multiproc_dir`` with ``{node}`` filled in, or ``<data_dir>/run/prometheus-<node>``."""
    if cfg.multiproc_dir:
        return Path(os.path.expanduser(cfg.multiproc_dir.replace("{node}", node_label(node))))
    return settings.data_dir / "run" / f"prometheus-{node_label(node)}"


def clear_dir(path: Path) -> Path:
    """Create ``path`` and delete the ``*.db`` files of an earlier run (nothing else)."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    return path


def agent_offset(node: str | None) -> int:
    """``k − 1`` for the node ``agent-<k>@host`` (k ≥ 1), else 0."""
    match = re.fullmatch(r"agent-([1-9][0-9]*)(@.*)?", node or "")
    return int(match.group(1)) - 1 if match else 0


def exposition_port(cfg: MetricsSettings, node: str | None) -> int:
    """The port rule of the module docstring."""
    return cfg.port + agent_offset(node)


# --- exposition (main process) ------------------------------------------------------------------


class QueueDepthCollector:
    """``fleet_queue_depth{queue}`` and ``fleet_broker_up``, read from Redis at each scrape with a
    short socket timeout; the depth is the sum over the priority lists kombu's Redis transport keeps.
    Each queue's dead-letter list (malformed messages, :mod:`fleet.transport`) is reported as the
    queue ``<queue>.dead``."""

    def __init__(self, url: str, queues: tuple[str, ...] = QUEUES, timeout: float = SCRAPE_TIMEOUT) -> None:
        import redis

        from fleet.transport import dead_letter_key

        self.queues = queues + tuple(dead_letter_key(q) for q in queues)
        self.client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)

    def _keys(self, queue: str) -> list[str]:
        from kombu.transport.redis import PRIORITY_STEPS, Channel

        from fleet.transport import DEAD_LETTER_SUFFIX

        if queue.endswith(DEAD_LETTER_SUFFIX):
            return [queue]
        return [queue] + [f"{queue}{Channel.sep}{step}" for step in PRIORITY_STEPS if step]

    def depths(self) -> dict[str, int]:
        """Messages waiting per queue (one pipelined round trip)."""
        pipe = self.client.pipeline(transaction=False)
        for queue in self.queues:
            for key in self._keys(queue):
                pipe.llen(key)
        sizes = iter(pipe.execute())
        return {queue: sum(next(sizes) for _ in self._keys(queue)) for queue in self.queues}

    def collect(self) -> Iterator[Any]:
        import redis
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("fleet_broker_up", BY_NAME["fleet_broker_up"].help)
        try:
            depths = self.depths()
        except redis.RedisError as exc:
            log.warning("metrics: cannot read the queue depths: %s", exc)
            up.add_metric([], 0.0)
            yield up
            return
        family = GaugeMetricFamily("fleet_queue_depth", BY_NAME["fleet_queue_depth"].help, labels=["queue"])
        for queue, depth in depths.items():
            family.add_metric([queue], float(depth))
        up.add_metric([], 1.0)
        yield family
        yield up


def registry_for(path: Path, redis_url: str) -> Any:
    """A fresh registry: the multiprocess files under ``path`` and the queue depths."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))
    registry.register(QueueDepthCollector(redis_url))
    return registry


def start_exposition(registry: Any, address: str, port: int) -> Any:
    """Serve ``registry`` on http://address:port/metrics in a daemon thread; returns the server
    (``shutdown()`` and ``server_close()`` stop it)."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=address, registry=registry)
    return server


def start_worker_exposition(settings: Settings, node: str | None) -> Any | None:
    """``celeryd_init``: clear and export the multiprocess directory, then serve /metrics. A busy
    port is logged and the agent runs on without an exposition. None when disabled or failed."""
    cfg = MetricsSettings.from_settings(settings)
    if not cfg.enabled:
        return None
    path = clear_dir(multiproc_dir(settings, cfg, node))
    os.environ[ENV_DIR] = str(path)
    port = exposition_port(cfg, node)
    try:
        server = start_exposition(registry_for(path, settings["redis"]["url"]), cfg.address, port)
    except OSError as exc:
        log.error("metrics: cannot serve on %s:%d (%s); running without /metrics", cfg.address, port, exc)
        return None
    log.info("metrics: http://%s:%d/metrics (multiprocess dir %s)", cfg.address, port, path)
    return server


def process_stopped(pid: int) -> None:
    """``worker_process_shutdown``: drop the exiting pool process's live-gauge files."""
    path = os.environ.get(ENV_DIR)
    if path:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, path)


# --- instruments (pool processes) ---------------------------------------------------------------

_made: dict[str, Any] = {}  # {"dir": str, "metrics": {name: metric}, "original": value class}


def _fresh_value_class() -> None:
    """New metrics write mmap files under the current directory: install a fresh multiprocess
    value class (a class keeps its files open in one directory), also when prometheus_client was
    imported before the directory was set (a test process)."""
    from prometheus_client import values

    _made.setdefault("original", values.ValueClass)
    values.ValueClass = values.MultiProcessValue()


def _make(spec: Spec) -> Any:
    from prometheus_client import Counter, Gauge, Histogram

    if spec.kind == "counter":
        return Counter(spec.name, spec.help, spec.labels, registry=None)
    if spec.kind == "gauge":
        return Gauge(spec.name, spec.help, spec.labels, registry=None, multiprocess_mode="mostrecent")
    return Histogram(spec.name, spec.help, spec.labels, registry=None, buckets=spec.buckets)


def _instruments() -> dict[str, Any] | None:
    """This process's metrics, made at first use for the current directory; None without one."""
    path = os.environ.get(ENV_DIR)
    if not path:
        return None
    if _made.get("dir") != path:
        _fresh_value_class()
        _made.update(dir=path, metrics={s.name: _make(s) for s in SPECS if not s.scraped})
    return _made["metrics"]


def reset() -> None:
    """Forget this process's metrics and restore prometheus_client's value class (tests)."""
    from prometheus_client import values

    if "original" in _made:
        values.ValueClass = _made["original"]
    _made.clear()


def _recorder(record: Callable[..., None]) -> Callable[..., None]:
    """``record(*args)`` becomes ``record(metrics, *args)`` with this process's metrics; a no-op
    without them, and a failure is logged instead of raised."""

    @functools.wraps(record)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            metrics = _instruments()
            if metrics is not None:
                record(metrics, *args, **kwargs)
        except Exception as exc:  # metrics must never fail a job
            log.warning("metrics: %s failed: %s: %s", record.__name__, type(exc).__name__, exc)

    return wrapper


# --- recording ----------------------------------------------------------------------------------


def _flag(value: Any) -> str:
    return "true" if value else "false"


def _record_trm(m: dict[str, Any], report: dict[str, Any]) -> None:
    routing = report.get("routing") or {}
    refine = _flag((report.get("flags") or {}).get("trm") and routing.get("refine", routing.get("trm_suitable")))
    iterations = report.get("iterations") or []
    m["fleet_trm_invocations_total"].labels(refine).inc()
    if report.get("converged"):
        m["fleet_trm_converged_total"].labels(refine).inc()
    m["fleet_trm_iterations"].labels(refine).observe(len(iterations))
    if iterations:
        gain = float(report["quality"]) - float(iterations[0]["quality"])
        m["fleet_trm_quality_improvement"].labels(refine).observe(gain)


def _record_learning(m: dict[str, Any], learning: dict[str, Any]) -> None:
    if learning.get("applied"):
        m["fleet_sona_adaptations_total"].inc()
    if "reward" in learning:
        m["fleet_sona_reward"].observe(float(learning["reward"]))


def _record_routing(m: dict[str, Any], routing: dict[str, Any], usage: list[dict[str, Any]]) -> None:
    if routing.get("decision"):
        m["fleet_route_requests_total"].labels(routing["decision"]).inc()
    if routing.get("fallback_taken"):
        m["fleet_route_fallbacks_total"].inc()
    for u in usage:
        m["fleet_cost_total"].labels(u["provider"]).inc(float(u["cost"]))
        m["fleet_cost_cloud_only_total"].inc(float(u["cloud_only"]))
        m["fleet_tokens_total"].labels(u["provider"], "prompt").inc(int(u["prompt_tokens"]))
        m["fleet_tokens_total"].labels(u["provider"], "completion").inc(int(u["completion_tokens"]))


@_recorder
def record_job(m: dict[str, Any], report: dict[str, Any]) -> None:
    """A finished generate-tests report: TRM, learning, routing and cost series (not for cache answers)."""
    if report.get("cached"):
        return
    _record_trm(m, report)
    _record_learning(m, report.get("learning") or {})
    _record_routing(m, report.get("routing") or {}, report.get("usage") or [])


@_recorder
def _record_lookup(m: dict[str, Any], hit: bool, seconds: float) -> None:
    result = "hit" if hit else "miss"
    m["fleet_cache_requests_total"].labels(result).inc()
    m["fleet_cache_load_seconds"].labels(result).observe(seconds)


def cache_lookup(cache: Any, key: str) -> dict[str, Any] | None:
    """``cache.get(key)``, counted as a hit or miss and timed."""
    started = time.perf_counter()
    report = cache.get(key)
    _record_lookup(report is not None, time.perf_counter() - started)
    return report


@_recorder
def _record_completion(m: dict[str, Any], completion: Any) -> None:
    m["fleet_inference_seconds"].labels(completion.provider).observe(float(completion.seconds))


def time_completions(backend: Any) -> None:
    """Observe every completion ``backend`` returns in ``fleet_inference_seconds``, labelled by the
    provider that served it, with that provider's own wall time (``Completion.seconds``)."""
    if not os.environ.get(ENV_DIR):
        return
    complete = backend.complete

    @functools.wraps(complete)
    def timed(*args: Any, **kwargs: Any) -> Any:
        completion = complete(*args, **kwargs)
        _record_completion(completion)
        return completion

    backend.complete = timed


def _pattern_confidence(settings: Settings) -> float | None:
    """Mean confidence of the currently published patterns, None when there are none."""
    from fleet.sona import patterns as pat
    from fleet.sona.wiring import learning_store

    store = learning_store(settings)
    blob = store.load_patterns_blob(store.current()[1])
    confidences = [p.confidence for p in pat.loads(blob)] if blob else []
    return sum(confidences) / len(confidences) if confidences else None


def _record_forgetting(m: dict[str, Any], penalty: float, lam: float) -> None:
    m["fleet_sona_ewc_penalty"].set(penalty)
    if lam > 0:  # λ = 0 makes the penalty 0 whatever moved: no estimate
        m["fleet_sona_forgetting_estimate"].set(penalty / lam)
        m["fleet_sona_retention_estimate"].set(math.exp(-penalty / lam))


@_recorder
def record_consolidation(m: dict[str, Any], report: dict[str, Any], settings: Settings) -> None:
    """A consolidation report (``ran: False`` is ignored); see the module docstring for retention."""
    from fleet.sona.settings import LearningSettings

    if not report.get("ran"):
        return
    m["fleet_sona_consolidations_total"].inc()
    m["fleet_sona_version"].set(report["version"])
    m["fleet_sona_patterns"].set(report["patterns"])
    m["fleet_sona_replay_loss"].labels("before").set(report["loss_before"])
    m["fleet_sona_replay_loss"].labels("after").set(report["loss_after"])
    _record_forgetting(m, float(report["penalty"]), LearningSettings.from_settings(settings).ewc_lambda)
    confidence = _pattern_confidence(settings)
    if confidence is not None:
        m["fleet_sona_pattern_confidence"].set(confidence)
