"""End to end, every part real: `fleet submit` (subprocess) → Redis → a real agent process (prefork
Celery worker) → the default llama.cpp model → sandbox → test file written and run again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from fleet import config
from fleet.sona.store import Micro
from fleet.llm.models import resolve

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
FLEET = str(Path(sys.executable).parent / "fleet")
EXAMPLE = ROOT / "examples" / "shapes" / "intervals.py"


@pytest.fixture
def agent_process(redis_server, tmp_path):
    """One real agent (`fleet run-agent`) on the test Redis, loading the verified default model."""
    resolve(config.load())  # fails clearly if the default model is missing or corrupt
    env = {**os.environ, "FLEET_REDIS_URL": redis_server, "FLEET_PREFIX": "e2e",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    log = (tmp_path / "agent.log").open("wb")
    proc = subprocess.Popen([FLEET, "run-agent", "--id", "e2e-agent"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
    yield env
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def test_submit_runs_the_real_chain(agent_process, tmp_path):
    out = tmp_path / "generated"
    started = time.monotonic()
    done = subprocess.run([FLEET, "submit", str(EXAMPLE), "--wait", "--out", str(out), "--json", "--timeout", "900",
                           "--max-iterations", "3"],
                          env=agent_process, capture_output=True, text=True, timeout=1000)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["agent"]["id"] == "e2e-agent"
    assert report["model"]["id"] == "qwen2.5-coder-1.5b"
    assert report["model"]["sha256"] == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert report["tests_kept"] >= 1
    assert report["final_runs_passed"] == report["reruns"] == 5
    assert report["coverage_after"]["line"] > report["coverage_before"]["line"]
    assert report["coverage_after"]["lines_total"] > 0 and report["coverage_after"]["branches_total"] > 0
    assert 1 <= len(report["iterations"]) <= 3
    assert {"quality", "line", "branch", "tokens_in", "tokens_out", "seconds"} <= report["iterations"][0].keys()
    assert "namespace" in report["sandbox"]["network"] or "guard" in report["sandbox"]["network"]
    written = Path(report["written"])
    assert written == out / "test_intervals.py" and written.exists()
    rerun = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(written)],
                           env={**os.environ, "PYTHONPATH": str(EXAMPLE.parent.parent)}, capture_output=True,
                           text=True, timeout=300, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert f"{report['tests_kept']} passed" in rerun.stdout
    learned = report["learning"]
    assert learned["applied"] is True and 0.0 <= learned["reward"] <= 1.0
    assert report["strategy"] == learned["strategy"]
    micro = redis.Redis.from_url(agent_process["FLEET_REDIS_URL"]).get("e2e:agent:e2e-agent:sona:micro")
    assert Micro.from_blob(micro).job_id == report["job_id"]
    print(f"e2e wall time {time.monotonic() - started:.1f}s, {report['tests_kept']} tests kept")


def test_real_model_refines_over_two_iterations_and_reuses_the_kv_prefix():
    """The engine in-process with the real model, forced to two iterations: the second prompt
    shares the job's stable prefix, so llama.cpp serves it from the KV cache."""
    from fleet.jobs import Job, Options
    from fleet.llm.base import Sampling
    from fleet.llm.local import LocalBackend
    from fleet.sandbox import Limits
    from fleet.trm.loop import Engine, EngineSettings

    settings = config.load()
    backend = LocalBackend(resolve(settings), n_ctx=4096)
    source = EXAMPLE.read_text()
    job = Job(module="shapes.intervals", target_path="shapes/intervals.py",
              files={"shapes/__init__.py": "", "shapes/intervals.py": source}, options=Options(max_iterations=2))
    engine = Engine(backend, sampling=Sampling.from_settings(settings),
                    settings=EngineSettings(convergence_threshold=1.01, mutation_max_mutants=0,
                                            prompts_per_iteration=1, max_prompts_per_iteration=1),
                    limits=Limits())
    report = engine.run(job)
    first, second = report["iterations"]
    assert report["stop_reason"] in ("max-iterations", "fully-covered")  # both end after iteration 2
    assert second["cached_tokens"] > 0.5 * first["tokens_in"]
    assert second["prompt_seconds"] < first["prompt_seconds"]
    assert second["quality"] >= first["quality"]
    print(f"prompt eval: cold {first['prompt_seconds']:.2f}s for {first['tokens_in']} tokens, "
          f"warm {second['prompt_seconds']:.2f}s with {second['cached_tokens']} cached")


def test_local_provider_interface_on_the_real_model():
    """The local provider's operator-facing methods: metadata, health, token counts, streaming,
    a halted reply, embeddings, CPU-second costing, shutdown."""
    from fleet.costs import PriceTable
    from fleet.llm.base import Message, Sampling, Usage
    from fleet.llm.local import LocalBackend

    model = resolve(config.load())
    backend = LocalBackend(model, n_ctx=1024, prices=PriceTable(local_cpu_second=0.5))
    meta = backend.metadata()
    assert meta == {"provider": "local", "model_id": model.model_id, "n_ctx": 1024, "sha256": model.sha256}
    assert backend.health() is True
    assert backend.count_tokens("def f(x):\n    return x\n") < backend.count_tokens("def f(x):\n    return x * 2 + 1\n" * 3)
    ask = [Message("user", "Write the number 7.")]
    pieces = list(backend.stream(ask, prefill="", stop=[], sampling=Sampling(max_tokens=6, temperature=0.0)))
    assert 1 <= len(pieces) <= 16 and "".join(pieces).strip()  # the provider generates at least 16 tokens
    count = [Message("user", "Count from 1 to 30, one number per line, nothing else.")]
    halted = backend.complete(count, prefill="", stop=[], sampling=Sampling(max_tokens=120, temperature=0.0),
                              halt=lambda text: text.count("\n") >= 2)
    assert halted.finish_reason == "halted" and halted.completion_tokens < 120
    assert halted.text.count("\n") >= 2 and len(halted.text.strip().splitlines()) <= 3
    done = backend.complete(ask, prefill="", stop=[], sampling=Sampling(max_tokens=6, temperature=0.0))
    assert done.provider == "local" and done.cpu_seconds > 0
    usage = Usage("local", model.model_id, done.prompt_tokens, done.completion_tokens, done.cpu_seconds)
    assert backend.cost(usage) == pytest.approx(0.5 * done.cpu_seconds)
    vector = backend.embed("def f(x):\n    return x\n")
    assert len(vector) == 1536 and any(v != 0 for v in vector)
    backend.shutdown()
    assert backend.health() is False
