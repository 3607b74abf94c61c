"""fleet.metrics: recording into multiprocess files, the exposition (queue depths from Redis), the port
rule, a job through a real in-process worker scraped over HTTP, and the Prometheus/Grafana files."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
import yaml

from fleet import config, metrics
from fleet.celeryconf import GENERATE_QUEUE, MAINTENANCE_QUEUE
from fleet.errors import ConfigError

from conftest import ROOT, free_port

OPS = ROOT / "ops"
Samples = dict[tuple[str, frozenset], float]


# --- helpers ------------------------------------------------------------------------------------


def parse(text: str) -> Samples:
    """{(sample name, frozenset of label pairs): value} of an exposition text."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sample ``name{labels}``, None when absent."""
    return samples.get((name, frozenset(labels.items())))


def collected(path: Path) -> Samples:
    """What a MultiProcessCollector over ``path`` exposes."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))
    return parse(generate_latest(registry).decode())


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return parse(response.read().decode())


@pytest.fixture
def metrics_dir(tmp_path, monkeypatch):
    """A multiprocess directory for this test's process; the metrics are forgotten afterwards."""
    path = metrics.clear_dir(tmp_path / "prometheus")
    monkeypatch.setenv(metrics.ENV_DIR, str(path))
    yield path
    metrics.reset()


def fake_report(**changes: Any) -> dict[str, Any]:
    """A generate-tests report as the task returns it, refined on the local provider with a fallback."""
    report = {
        "cached": False, "converged": True, "quality": 0.9,
        "iterations": [{"quality": 0.5, "improvement": 0.5}, {"quality": 0.8, "improvement": 0.3},
                       {"quality": 0.9, "improvement": 0.1}],
        "flags": {"trm": True, "sona": True, "cache": True, "strategy": "cost-optimized"},
        "routing": {"decision": "local", "trm_suitable": True, "provider_used": ["local", "remote"],
                    "fallback_taken": True},
        "usage": [{"provider": "local", "prompt_tokens": 1000, "completion_tokens": 200, "cpu_seconds": 30.0,
                   "cost": 0.0003, "cloud_only": 0.00027},
                  {"provider": "remote", "prompt_tokens": 500, "completion_tokens": 100, "cpu_seconds": 0.0,
                   "cost": 0.000135, "cloud_only": 0.000135}],
        "learning": {"applied": True, "reward": 0.75, "explored": False},
    }
    return {**report, **changes}


# --- recording ----------------------------------------------------------------------------------


def test_record_job_writes_every_job_series(metrics_dir):
    metrics.record_job(fake_report())
    s = collected(metrics_dir)
    assert value(s, "fleet_trm_invocations_total", refine="true") == 1.0
    assert value(s, "fleet_trm_converged_total", refine="true") == 1.0
    assert value(s, "fleet_trm_iterations_count", refine="true") == 1.0
    assert value(s, "fleet_trm_iterations_sum", refine="true") == 3.0
    assert value(s, "fleet_trm_iterations_bucket", refine="true", le="2.0") == 0.0
    assert value(s, "fleet_trm_iterations_bucket", refine="true", le="3.0") == 1.0
    assert value(s, "fleet_trm_quality_improvement_sum", refine="true") == pytest.approx(0.4)
    assert value(s, "fleet_sona_adaptations_total") == 1.0
    assert value(s, "fleet_sona_reward_sum") == 0.75
    assert value(s, "fleet_route_requests_total", provider="local") == 1.0
    assert value(s, "fleet_route_fallbacks_total") == 1.0
    assert value(s, "fleet_cost_total", provider="local") == pytest.approx(0.0003)
    assert value(s, "fleet_cost_total", provider="remote") == pytest.approx(0.000135)
    assert value(s, "fleet_cost_cloud_only_total") == pytest.approx(0.000405)
    assert value(s, "fleet_tokens_total", provider="local", kind="completion") == 200.0


def test_single_pass_runs_are_labelled_and_cache_answers_move_nothing(metrics_dir):
    metrics.record_job(fake_report(flags={"trm": False}, converged=False, iterations=[{"quality": 0.3}],
                                   quality=0.3, learning={"applied": False, "reward": 0.2}))
    metrics.record_job(fake_report(cached=True))
    s = collected(metrics_dir)
    assert value(s, "fleet_trm_invocations_total", refine="false") == 1.0
    assert value(s, "fleet_trm_invocations_total", refine="true") is None
    assert value(s, "fleet_trm_converged_total", refine="false") is None
    assert value(s, "fleet_trm_quality_improvement_sum", refine="false") == 0.0
    assert value(s, "fleet_sona_adaptations_total") == 0.0
    assert value(s, "fleet_route_requests_total", provider="local") == 1.0


def test_recording_never_raises_and_is_a_no_op_without_a_directory(metrics_dir, monkeypatch, caplog):
    with caplog.at_level(logging.WARNING, logger="fleet.metrics"):
        metrics.record_job({"iterations": [{}], "quality": 0.5})  # malformed: logged, not raised
    assert "record_job failed" in caplog.text
    monkeypatch.delenv(metrics.ENV_DIR)
    metrics.record_job(fake_report())
    monkeypatch.setenv(metrics.ENV_DIR, str(metrics_dir))
    assert value(collected(metrics_dir), "fleet_route_requests_total", provider="local") is None


class FakeCache:
    def __init__(self, entries: dict[str, dict]) -> None:
        self.entries = entries

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)


def test_cache_lookup_counts_and_times_hits_and_misses(metrics_dir):
    cache = FakeCache({"k1": {"quality": 1.0}})
    assert metrics.cache_lookup(cache, "k1") == {"quality": 1.0}
    assert metrics.cache_lookup(cache, "k2") is None
    assert metrics.cache_lookup(cache, "k3") is None
    s = collected(metrics_dir)
    assert value(s, "fleet_cache_requests_total", result="hit") == 1.0
    assert value(s, "fleet_cache_requests_total", result="miss") == 2.0
    assert value(s, "fleet_cache_load_seconds_count", result="miss") == 2.0


def test_time_completions_observes_each_completion_by_provider(metrics_dir):
    from fleet.llm.base import Message, Sampling
    from fleet.llm.scripted import ScriptedBackend

    backend = ScriptedBackend(["a"], delay=0.01)
    metrics.time_completions(backend)
    for _ in range(2):
        backend.complete([Message("user", "hi")], prefill="", stop=[], sampling=Sampling())
    s = collected(metrics_dir)
    assert value(s, "fleet_inference_seconds_count", provider="local") == 2.0
    assert value(s, "fleet_inference_seconds_sum", provider="local") == pytest.approx(0.02)
    assert len(backend.prompts) == 2


def publish_patterns(url: str, confidences: list[float]) -> None:
    """Make version 3 current with patterns of these confidences (as a consolidation would)."""
    from fleet.sona import patterns as pat

    c = np.ones(4, np.float32) / 2.0
    found = [pat.Pattern(f"{i:016x}", c, "x", "m", 0.8, 1, confidence=conf) for i, conf in enumerate(confidences)]
    client = redis.Redis.from_url(url)
    client.set("fleet:shared:sona:current", "3-abcd")
    client.set("fleet:shared:sona:patterns:3-abcd", pat.dumps(found))


def test_record_consolidation_exports_penalty_estimates_and_pattern_confidence(fleet_env, metrics_dir):
    publish_patterns(fleet_env["FLEET_REDIS_URL"], [0.4, 0.8])
    report = {"ran": True, "version": 3, "patterns": 2, "loss_before": 0.7, "loss_after": 0.6, "penalty": 2.0,
              "samples": 10, "seconds": 0.1}
    metrics.record_consolidation({"ran": False, "why": "another consolidation holds the lock"}, config.load())
    metrics.record_consolidation(report, config.load())  # learning.ewc_lambda = 20
    s = collected(metrics_dir)
    assert value(s, "fleet_sona_consolidations_total") == 1.0
    assert value(s, "fleet_sona_version") == 3.0
    assert value(s, "fleet_sona_ewc_penalty") == 2.0
    assert value(s, "fleet_sona_forgetting_estimate") == pytest.approx(0.1)
    assert value(s, "fleet_sona_retention_estimate") == pytest.approx(math.exp(-0.1))
    assert value(s, "fleet_sona_replay_loss", stage="after") == 0.6
    assert value(s, "fleet_sona_pattern_confidence") == pytest.approx(0.6)


# --- settings, directory, port ------------------------------------------------------------------


def test_port_rule_follows_the_agent_index_in_the_node_name():
    cfg = metrics.MetricsSettings()
    assert metrics.exposition_port(cfg, None) == 9808
    assert metrics.exposition_port(cfg, "agent-1@host") == 9808
    assert metrics.exposition_port(cfg, "agent-3@host") == 9810
    assert metrics.exposition_port(cfg, "agent-12") == 9819
    for other in ("agent-0@host", "agent-x@host", "worker-3@host", "my-agent-3@host"):
        assert metrics.exposition_port(cfg, other) == 9808, other
    with pytest.raises(ConfigError):
        metrics.MetricsSettings(port=0)


def test_multiproc_dir_default_and_node_placeholder(fleet_env, monkeypatch):
    settings = config.load()
    cfg = metrics.MetricsSettings.from_settings(settings)
    assert metrics.multiproc_dir(settings, cfg, "agent-1@host") == settings.data_dir / "run/prometheus-agent-1@host"
    monkeypatch.setenv("FLEET_METRICS_MULTIPROC_DIR", "/tmp/prom-{node}")
    cfg = metrics.MetricsSettings.from_settings(config.load())
    assert metrics.multiproc_dir(settings, cfg, "agent 2/x") == Path("/tmp/prom-agent-2-x")


def test_series_names_cover_every_family():
    names = metrics.series_names()
    assert {"fleet_trm_invocations_total", "fleet_trm_iterations_bucket", "fleet_queue_depth",
            "fleet_sona_retention_estimate"} <= names
    assert all(n.startswith("fleet_") for n in names)


# --- exposition ---------------------------------------------------------------------------------


def test_queue_depth_collector_sums_priority_lists_and_reports_a_dead_broker(fleet_env):
    url = fleet_env["FLEET_REDIS_URL"]
    client = redis.Redis.from_url(url)
    client.rpush(GENERATE_QUEUE, "m1", "m2")
    client.rpush(f"{GENERATE_QUEUE}\x06\x163", "m3")
    client.rpush(f"{GENERATE_QUEUE}.dead", "garbage")
    assert metrics.QueueDepthCollector(url).depths() == {GENERATE_QUEUE: 3, MAINTENANCE_QUEUE: 0,
                                                         f"{GENERATE_QUEUE}.dead": 1, f"{MAINTENANCE_QUEUE}.dead": 0}
    dead = list(metrics.QueueDepthCollector(f"redis://127.0.0.1:{free_port()}/0").collect())
    assert [(f.name, [s.value for s in f.samples]) for f in dead] == [("fleet_broker_up", [0.0])]


def test_worker_exposition_clears_old_files_and_serves(fleet_env, monkeypatch, tmp_path):
    port = free_port()
    monkeypatch.setenv(metrics.ENV_DIR, "placeholder")  # restored after the test
    monkeypatch.setenv("FLEET_METRICS_PORT", str(port))
    monkeypatch.setenv("FLEET_METRICS_MULTIPROC_DIR", str(tmp_path / "m-{node}"))
    path = tmp_path / "m-agent-1@h"
    path.mkdir()
    (path / "counter_1.db").write_bytes(b"stale")
    (path / "keep.txt").write_text("not ours")
    server = metrics.start_worker_exposition(config.load(), "agent-1@h")
    try:
        assert not (path / "counter_1.db").exists() and (path / "keep.txt").exists()
        assert os.environ[metrics.ENV_DIR] == str(path)
        s = scrape(port)
        assert value(s, "fleet_queue_depth", queue=GENERATE_QUEUE) == 0.0
        assert value(s, "fleet_queue_depth", queue=GENERATE_QUEUE + ".dead") == 0.0
        assert value(s, "fleet_broker_up") == 1.0
        assert metrics.start_worker_exposition(config.load(), "agent-1@h") is None  # port busy: logged
    finally:
        server.shutdown()
        server.server_close()
        metrics.reset()
    monkeypatch.setenv("FLEET_METRICS_ENABLED", "0")
    assert metrics.start_worker_exposition(config.load(), "agent-1@h") is None


@pytest.mark.integration
def test_a_job_through_a_real_worker_shows_up_on_the_endpoint(scripted_fleet, metrics_dir, monkeypatch, redis_server):
    from celery.result import AsyncResult

    from fleet.llm.scripted import ScriptedBackend
    from test_fleet_integration import REPLY, make_job

    monkeypatch.setenv("FLEET_ENGINE_PROMPTS_PER_ITERATION", "1")
    port = free_port()
    server = metrics.start_exposition(metrics.registry_for(metrics_dir, redis_server), "127.0.0.1", port)
    backend = ScriptedBackend([REPLY])
    try:
        with scripted_fleet(backend) as client:
            job = make_job(max_iterations=2)
            job_id, _ = client.submit(job)
            report = client.wait(job_id, timeout=120)
            first = scrape(port)
            AsyncResult(job_id, app=client.app).forget()  # run it again: answered from the cache
            client.redis.delete(client.keys.job(job_id, "submitted"))
            client.submit(job)
            assert client.wait(job_id, timeout=60)["cached"] is True
            second = scrape(port)
    finally:
        server.shutdown()
        server.server_close()
    refine = "true" if report["routing"]["refine"] else "false"
    assert value(first, "fleet_trm_invocations_total", refine=refine) == 1.0
    assert value(first, "fleet_trm_iterations_count", refine=refine) == 1.0
    assert value(first, "fleet_trm_iterations_sum", refine=refine) == len(report["iterations"])
    assert value(first, "fleet_cache_requests_total", result="miss") == 1.0
    assert value(first, "fleet_route_requests_total", provider="local") == 1.0
    assert value(first, "fleet_inference_seconds_count", provider="local") == len(backend.prompts)
    assert value(first, "fleet_sona_adaptations_total") == 1.0
    assert value(first, "fleet_cost_total", provider="local") == pytest.approx(report["usage"][0]["cost"])
    assert value(first, "fleet_queue_depth", queue=GENERATE_QUEUE) == 0.0
    assert value(first, "fleet_queue_depth", queue=MAINTENANCE_QUEUE) == 0.0
    assert value(second, "fleet_cache_requests_total", result="hit") == 1.0
    assert value(second, "fleet_trm_invocations_total", refine=refine) == 1.0  # a cache answer is no TRM run


# --- Prometheus and Grafana files ---------------------------------------------------------------

ALERTS = {"FleetTrmConvergenceLow", "FleetSonaRetentionLow", "FleetCacheHitRateLow", "FleetLocalInferenceSlow",
          "FleetSavingsLow"}
METRIC_NAME = re.compile(r"\bfleet_[a-z0-9_]+\b")


def test_alert_rules_are_complete_and_use_defined_metrics():
    rules = [r for g in yaml.safe_load((OPS / "prometheus/alerts.yml").read_text())["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} == ALERTS
    for rule in rules:
        assert {"alert", "expr", "for", "labels", "annotations"} <= set(rule), rule.get("alert")
        assert rule["labels"].get("severity") and rule["annotations"].get("summary")
        used = set(METRIC_NAME.findall(rule["expr"]))
        assert used and used <= metrics.series_names(), (rule["alert"], used - metrics.series_names())


def test_scrape_config_covers_agents_and_flower():
    cfg = yaml.safe_load((OPS / "prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in cfg["scrape_configs"]}
    agents = [t for c in jobs["fleet-agents"]["static_configs"] for t in c["targets"]]
    assert agents[0].endswith(":9808") and cfg["rule_files"] == ["alerts.yml"]
    assert jobs["flower"]["static_configs"][0]["targets"] == ["127.0.0.1:5555"]


def test_grafana_dashboard_uses_defined_metrics():
    dashboard = json.loads((OPS / "grafana/fleet.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for expr in exprs for name in METRIC_NAME.findall(expr)}
    assert used <= metrics.series_names(), used - metrics.series_names()
    assert {"fleet_queue_depth", "fleet_trm_converged_total", "fleet_inference_seconds_bucket",
            "fleet_cost_cloud_only_total", "fleet_sona_consolidations_total"} <= used
    assert all(p["targets"] and p["gridPos"] and p["type"] for p in dashboard["panels"])
