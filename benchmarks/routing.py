"""Routing benchmark: decision latency, and the circuit breaker under an injected remote outage.

1. ``route`` decision latency (AST complexity + strategy + privacy) p50/p95 over real modules:
   the dev-list modules (from the quality benchmark's venvs when present) and this repository's own.
2. Breaker under an outage: a stream of jobs (one request each, strategy cloud-only, the local
   provider as fallback) against a real loopback OpenAI-compatible server (llama_cpp.server on the
   default GGUF); the server is stopped before job ``--down-at`` and started again before job
   ``--up-at``. Counts: jobs whose remote attempt failed before the breaker opened, jobs that used the
   fallback, jobs that skipped the remote because the breaker was open, probes, and jobs served
   remotely again after recovery.

    python benchmarks/routing.py [--jobs 40] [--down-at 10] [--up-at 25] [--reset 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fleet.costs import PriceTable  # noqa: E402
from fleet.jobs import Job  # noqa: E402
from fleet.llm.base import Message, Sampling  # noqa: E402
from fleet.llm.loopback import LlamaServer, default_model  # noqa: E402
from fleet.llm.remote import RemoteBackend, RemoteSettings  # noqa: E402
from fleet.llm.router import NoProvider, RouterSettings, make_breakers, route  # noqa: E402
from fleet.llm.scripted import ScriptedBackend  # noqa: E402

ASK = [Message("user", "Say hi.")]
TINY = Sampling(max_tokens=4, temperature=0.0, seed=1)


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=40)
    p.add_argument("--down-at", type=int, default=10)
    p.add_argument("--up-at", type=int, default=25)
    p.add_argument("--reset", type=float, default=5.0, help="breaker reset seconds (default 5)")
    p.add_argument("--failures", type=int, default=3, help="failures that open the breaker (default 3)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "routing.json")
    return p.parse_args()


def modules() -> list[Path]:
    envs = Path.home() / ".local" / "share" / "fleet" / "bench-envs"
    found = list(envs.glob("*/lib/python3*/site-packages/*/*.py")) if envs.exists() else []
    return [p for p in found + list((ROOT / "fleet").rglob("*.py")) if p.stat().st_size > 0]


def decision_latency(cfg: RouterSettings) -> dict:
    providers = {"local": ScriptedBackend(["x"]), "remote": ScriptedBackend(["x"])}
    breakers = make_breakers(cfg)
    times, levels = [], {}
    for path in modules():
        source = path.read_text(errors="replace")
        try:
            job = Job(module=path.stem, target_path=f"{path.stem}.py", files={f"{path.stem}.py": source})
        except Exception:  # noqa: BLE001 — a module the job format refuses (size, syntax) is not routed
            continue
        started = time.perf_counter()
        decision = route(job, cfg, providers, breakers).decision
        times.append((time.perf_counter() - started) * 1000)
        levels[decision.complexity["level"]] = levels.get(decision.complexity["level"], 0) + 1
    q = statistics.quantiles(times, n=100)
    return {"modules": len(times), "p50_ms": round(q[49], 3), "p95_ms": round(q[94], 3), "max_ms": round(max(times), 3),
            "levels": levels}


class Local(ScriptedBackend):
    name = "local"


def outage(args: argparse.Namespace) -> dict:
    cfg = RouterSettings(strategy="cloud-only", breaker_failures=args.failures, breaker_reset=args.reset)
    model = default_model()
    job = Job(module="m", target_path="m.py", files={"m.py": "def f(x):\n    return x\n"})
    rows = []
    with LlamaServer(model.path, model_alias=model.model_id) as server:
        remote = RemoteBackend(RemoteSettings(base_url=server.base_url, timeout=60.0, connect_timeout=1.0),
                               prices=PriceTable())
        providers, breakers = {"local": Local(["local"] * (args.jobs + 1)), "remote": remote}, make_breakers(cfg)
        for n in range(args.jobs):
            if n == args.down_at:
                server.stop()
            if n == args.up_at:
                server.start()
            routed = route(job, cfg, providers, breakers)
            started = time.perf_counter()
            try:
                served_by = routed.complete(ASK, prefill="", stop=[], sampling=TINY).provider
            except NoProvider:
                served_by = "failed"
            record = routed.record()
            rows.append({"job": n, "served_by": served_by, "breaker": record["breakers"]["remote"]["state"],
                         "errors": record["fallback_errors"], "seconds": round(time.perf_counter() - started, 3)})
            time.sleep(0.5)
    return summarise(rows, args)


def summarise(rows: list[dict], args: argparse.Namespace) -> dict:
    down = [r for r in rows if args.down_at <= r["job"]]
    failed_attempts = [r for r in down if any("breaker open" not in e for e in r["errors"])]
    skipped = [r for r in down if any("breaker open" in e for e in r["errors"])]
    recovered = next((r["job"] for r in rows if r["job"] >= args.up_at and r["served_by"] == "remote"), None)
    return {"jobs": len(rows), "down_at": args.down_at, "up_at": args.up_at, "breaker_failures": args.failures,
            "reset_s": args.reset, "remote_failures_before_open": len([r for r in failed_attempts if r["job"] < args.up_at]),
            "jobs_on_fallback": sum(r["served_by"] == "local" for r in rows),
            "jobs_skipping_remote_while_open": len(skipped),
            "jobs_failed": sum(r["served_by"] == "failed" for r in rows),
            "first_remote_job_after_restart": recovered,
            "fallback_latency_open_ms": round(1000 * statistics.median([r["seconds"] for r in skipped]), 1) if skipped else None,
            "rows": rows}


def main() -> None:
    args = _args()
    cfg = RouterSettings()
    lat = decision_latency(cfg)
    print(f"routing decision over {lat['modules']} real modules: p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, "
          f"max {lat['max_ms']} ms; levels {lat['levels']}")
    out = outage(args)
    print(f"outage: {out['jobs']} jobs, server down before job {out['down_at']}, back before job {out['up_at']}; "
          f"breaker opens after {out['breaker_failures']} failures, probes after {out['reset_s']} s")
    print(f"  remote attempts that failed (before it opened, and failed probes): {out['remote_failures_before_open']}")
    print(f"  jobs that skipped the remote while open: {out['jobs_skipping_remote_while_open']} "
          f"(median {out['fallback_latency_open_ms']} ms each)")
    print(f"  jobs served by the local fallback: {out['jobs_on_fallback']}; jobs failed: {out['jobs_failed']}")
    print(f"  first job served remotely after the restart: {out['first_remote_job_after_restart']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"decision": lat, "outage": out}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
