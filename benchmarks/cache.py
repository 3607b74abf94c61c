"""Result-cache benchmark: get+decode latency, compression on real job reports, and a cache hit
through Celery.

1. ``ResultCache.get`` (GET + unseal + inflate + msgpack) p50/p95 for 1 KB, 100 KB and 1 MB reports,
   against storing the same report as plain uncompressed JSON (GET + json.loads), ratio in one run.
2. Compression ratio (report msgpack bytes / stored entry bytes) on the real job reports in
   ``benchmarks/results/quality*.json``.
3. Cache-hit submit → result through Celery: a real redis-server and an in-process Celery worker
   with a scripted model; the job runs once, then its result is forgotten and it is resubmitted
   ``--hits`` times, each answered from the cache (``AsyncResult.get``, pub/sub).

    python benchmarks/cache.py [--samples 300] [--hits 100] [--out benchmarks/results/cache.json]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.tmpredis import redis_for  # noqa: E402
from fleet.cache import CacheSettings, ResultCache, encode  # noqa: E402

SIZES = {"1 KB": 1 << 10, "100 KB": 100 << 10, "1 MB": 1 << 20}


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=300, help="gets per size (default 300)")
    p.add_argument("--hits", type=int, default=100, help="cache-hit jobs through Celery (default 100)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cache.json")
    return p.parse_args()


def real_reports() -> list[dict]:
    out = []
    for path in glob.glob(str(ROOT / "benchmarks" / "results" / "quality*.json")):
        out += [r["engine_report"] for r in json.loads(Path(path).read_text())["rows"] if r.get("engine_report")]
    return out


def _pieces(reports: list[dict]) -> list[str]:
    """Distinct real text: every trace line, test module and model reply of the reports."""
    out = []
    for r in reports:
        out += r.get("trace", []) + [r.get("test_module", "")] + [i.get("reply", "") for i in r.get("iterations", [])]
    return [p for p in dict.fromkeys(out) if p]


def report_of_size(size: int, reports: list[dict]) -> dict:
    """A report-shaped dict of about ``size`` JSON bytes made of real report text, in order (so
    padding is not an artificial repeat that compresses better than real reports do)."""
    base = reports[0]
    report = {k: base[k] for k in ("job_id", "module", "coverage_before", "coverage_after", "tokens", "quality")}
    pieces, lines, i = _pieces(reports), [], 0
    budget = size - len(json.dumps(report)) - 16
    while budget > 0:
        piece = pieces[i % len(pieces)][:budget]
        lines.append(piece)
        budget -= len(json.dumps(piece)) + 2
        i += 1
    report["trace"] = lines
    return report


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def time_calls(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def latency_rows(client: redis.Redis, reports: list[dict], samples: int) -> list[dict]:
    cache = ResultCache(client, "bench", CacheSettings())
    rows = []
    for label, size in SIZES.items():
        report = report_of_size(size, reports)
        cache.put(f"{size:064x}", report, target="bench")
        client.set(f"bench:json:{size}", json.dumps(report))
        time_calls(lambda: cache.get(f"{size:064x}"), 10)  # warm-up
        ours = time_calls(lambda: cache.get(f"{size:064x}"), samples)
        plain = time_calls(lambda: json.loads(client.get(f"bench:json:{size}")), samples)
        stored = client.strlen(cache.entry_name(f"{size:064x}"))
        rows.append({"size": label, "json_bytes": len(json.dumps(report)), "entry_bytes": stored,
                     "cache_p50_ms": round(pct(ours, 50), 3), "cache_p95_ms": round(pct(ours, 95), 3),
                     "json_p50_ms": round(pct(plain, 50), 3), "json_p95_ms": round(pct(plain, 95), 3),
                     "p95_ratio": round(pct(ours, 95) / pct(plain, 95), 2)})
    return rows


def compression(reports: list[dict]) -> dict:
    cfg = CacheSettings()
    raw = [len(msgpack.packb(r, use_bin_type=True)) for r in reports]
    stored = [len(encode(r, f"{i:064x}", cfg, None)) for i, r in enumerate(reports)]
    return {"reports": len(reports), "msgpack_bytes": sum(raw), "stored_bytes": sum(stored),
            "json_bytes": sum(len(json.dumps(r)) for r in reports),
            "ratio": round(sum(raw) / sum(stored), 2) if stored else None}


def through_celery(url: str, hits: int, data_dir: Path) -> dict:
    """Submit → result latency of cache hits through a real worker (scripted model)."""
    os.environ.update({"FLEET_REDIS_URL": url, "FLEET_DATA_DIR": str(data_dir), "FLEET_PREFIX": "benchcache",
                       "FLEET_LEARNING_EMBEDDER": "hash"})
    from celery.contrib.testing.worker import start_worker
    from celery.result import AsyncResult

    from fleet import config
    from fleet.celeryconf import GENERATE_QUEUE, celery_config
    from fleet.client import Client
    from fleet.jobs import Job, Options
    from fleet.llm.scripted import ScriptedBackend
    from workers import agent as agent_mod
    from workers.app import app

    settings = config.load()
    app.conf.update(**celery_config(settings))
    source = "def sign(x):\n    if x > 0:\n        return 1\n    return -1\n"
    reply = "sign\n\ndef test_positive():\n    assert sign(5) == 1\n\ndef test_negative():\n    assert sign(-2) == -1\n"
    agent_mod.install(agent_mod.Agent.start("agent-bench@bench", backend=ScriptedBackend([reply])))
    client = Client(settings)
    job = Job(module="signs", target_path="signs.py", files={"signs.py": source}, options=Options(max_iterations=1))
    times = []
    with start_worker(app, pool="solo", perform_ping_check=False, queues=[GENERATE_QUEUE], shutdown_timeout=30):
        job_id, _ = client.submit(job)
        AsyncResult(job_id, app=client.app).get(timeout=300)
        for _ in range(hits):
            AsyncResult(job_id, app=client.app).forget()
            client.redis.delete(client.keys.job(job_id, "submitted"))
            started = time.perf_counter()
            client.submit(job)
            report = AsyncResult(job_id, app=client.app).get(timeout=30)
            times.append((time.perf_counter() - started) * 1000)
            assert report["cached"] is True
    agent_mod.install(None)
    return {"hits": hits, "p50_ms": round(pct(times, 50), 2), "p95_ms": round(pct(times, 95), 2),
            "max_ms": round(max(times), 2)}


def main() -> None:
    args = _args()
    reports = real_reports()
    if not reports:
        sys.exit("no real job reports in benchmarks/results/quality*.json; run benchmarks/quality.py first")
    with tempfile.TemporaryDirectory() as tmp, redis_for(None) as url:
        if url is None:
            sys.exit("redis-server is not installed; the README's setup installs it")
        rows = latency_rows(redis.Redis.from_url(url), reports, args.samples)
        comp = compression(reports)
        celery_hits = through_celery(url, args.hits, Path(tmp) / "data")
    print(f"{'size':8} {'entry B':>9} {'cache p50':>10} {'cache p95':>10} {'json p50':>9} {'json p95':>9} {'p95 ratio':>9}")
    for r in rows:
        print(f"{r['size']:8} {r['entry_bytes']:9} {r['cache_p50_ms']:9.3f}m {r['cache_p95_ms']:9.3f}m "
              f"{r['json_p50_ms']:8.3f}m {r['json_p95_ms']:8.3f}m {r['p95_ratio']:9.2f}")
    print(f"compression on {comp['reports']} real job reports: msgpack {comp['msgpack_bytes']} B → stored "
          f"{comp['stored_bytes']} B (ratio {comp['ratio']}; plain JSON {comp['json_bytes']} B)")
    print(f"cache hit submit→result through Celery ({celery_hits['hits']} jobs): p50 {celery_hits['p50_ms']} ms, "
          f"p95 {celery_hits['p95_ms']} ms, max {celery_hits['max_ms']} ms")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"latency": rows, "compression": comp, "celery_hits": celery_hits}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
