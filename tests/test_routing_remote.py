"""Routing against a real OpenAI-compatible server on loopback (llama-cpp-python's, default GGUF):
the breaker opens when the server stops, the job falls back to the local provider, a probe after
the reset window half-opens it and the restarted server closes it; costs on the real token counts."""

from __future__ import annotations

import time

import pytest

from fleet.costs import PriceTable
from fleet.jobs import Job
from fleet.llm.base import Message, Sampling
from fleet.llm.remote import RemoteBackend, RemoteSettings
from fleet.llm.router import RouterSettings, make_breakers, route
from fleet.llm.scripted import ScriptedBackend
from llm_server import server_fixture

pytestmark = pytest.mark.integration

llm_server = server_fixture(scope="module")
PRICES = PriceTable(local_cpu_second=0.01, remote_input_per_1k=0.5, remote_output_per_1k=2.0)
ASK = [Message("user", "Say hi.")]
TINY = Sampling(max_tokens=4, temperature=0.0, seed=1)
JOB = Job(module="m", target_path="m.py", files={"m.py": "def f(x):\n    return x\n"})


class Local(ScriptedBackend):
    name = "local"


def routed_pair(base_url: str, reset: float):
    cfg = RouterSettings(strategy="cloud-only", breaker_failures=2, breaker_reset=reset)
    remote = RemoteBackend(RemoteSettings(base_url=base_url, timeout=60.0, connect_timeout=1.0), prices=PRICES)
    breakers = make_breakers(cfg)
    providers = {"local": Local(["hi from local"] * 10), "remote": remote}
    return (lambda: route(JOB, cfg, providers, breakers)), breakers


def test_breaker_opens_falls_back_half_opens_and_closes(llm_server):
    new_job, breakers = routed_pair(llm_server.base_url, reset=1.5)
    job = new_job()
    served = job.complete(ASK, prefill="", stop=[], sampling=TINY)
    assert served.provider == "remote" and served.completion_tokens > 0
    (usage,) = job.usage()
    assert PRICES.cost(usage) == pytest.approx(usage.prompt_tokens / 1000 * 0.5 + usage.completion_tokens / 1000 * 2.0)

    llm_server.stop()
    failing = new_job()
    for _ in range(2):
        assert failing.complete(ASK, prefill="", stop=[], sampling=TINY).text == "hi from local"
    assert breakers["remote"].state == "open"
    record = failing.record()
    assert record["decision"] == "remote" and record["fallback_taken"] is True
    assert any("connection" in e for e in record["fallback_errors"])
    started = time.monotonic()
    failing.complete(ASK, prefill="", stop=[], sampling=TINY)  # open: remote not even tried
    assert time.monotonic() - started < 0.5 and "remote: breaker open" in failing.record()["fallback_errors"]

    llm_server.start()
    time.sleep(1.6)
    probe = new_job()
    assert probe.complete(ASK, prefill="", stop=[], sampling=TINY).provider == "remote"
    assert breakers["remote"].state == "closed" and breakers["remote"].snapshot()["opens"] == 1


def test_a_cloud_only_job_runs_on_the_remote_server_and_is_costed(llm_server, scripted_fleet, monkeypatch):
    """Through Celery: strategy cloud-only routes the job to the loopback server; its report and
    `fleet costs` price the server's real token counts."""
    import json

    from click.testing import CliRunner

    from fleet.cli import cli

    monkeypatch.setenv("FLEET_REMOTE_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("FLEET_ROUTER_STRATEGY", "cloud-only")
    monkeypatch.setenv("FLEET_LLM_MAX_TOKENS", "96")
    monkeypatch.setenv("FLEET_ENGINE_PROMPTS_PER_ITERATION", "1")
    with scripted_fleet(Local(["unused"])) as client:
        job_id, _ = client.submit(Job(module="m", target_path="m.py", files={"m.py": JOB.files["m.py"]}))
        report = client.wait(job_id, timeout=600)
    routing = report["routing"]
    assert routing["decision"] == "remote" and routing["provider_used"] == ["remote"] and not routing["fallback_taken"]
    (usage,) = report["usage"]
    assert usage["provider"] == "remote" and usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["cost"] == pytest.approx(usage["prompt_tokens"] / 1000 * 0.00015 + usage["completion_tokens"] / 1000 * 0.0006)
    costs = json.loads(CliRunner().invoke(cli, ["costs", "--json"]).output)
    assert costs["spend"]["remote"] == pytest.approx(usage["cost"], rel=1e-4)
    assert costs["savings"] == pytest.approx(0.0, abs=1e-6)  # everything went to the cloud
