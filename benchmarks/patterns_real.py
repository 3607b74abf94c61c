"""Shared patterns on real jobs: does showing retrieved exemplar tests raise the first-iteration pass
rate and coverage? Leave-one-out over a module list: for each module, shared patterns are built
(k-means++ over llama.cpp embeddings, as consolidation does) from the kept tests of the *other*
modules' earlier runs (``--from`` JSON of benchmarks/quality.py), the cosine top-k are retrieved for
the module, and one iteration (one prompt) runs twice with the same seed: without and with those
examples. The learned policy is not involved (arm fixed: focused, configured temperature).

    python benchmarks/patterns_real.py [LIST] [--from benchmarks/results/quality.json] [--only NAME]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import envs, modlist  # noqa: E402
from benchmarks.quality import BIG, DEFAULT_LIST  # noqa: E402
from fleet import config  # noqa: E402
from fleet.bundle import build_bundle  # noqa: E402
from fleet.jobs import Job, Options  # noqa: E402
from fleet.llm.base import Sampling  # noqa: E402
from fleet.llm.local import LocalBackend  # noqa: E402
from fleet.llm.models import resolve  # noqa: E402
from fleet.sandbox import Limits  # noqa: E402
from fleet.sona import patterns as pat  # noqa: E402
from fleet.sona.features import LlamaEmbedder  # noqa: E402
from fleet.sona.reward import reward  # noqa: E402
from fleet.trm.loop import Engine, EngineSettings  # noqa: E402


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("list", nargs="?", type=Path, default=DEFAULT_LIST)
    p.add_argument("--from", dest="source", type=Path, default=ROOT / "benchmarks" / "results" / "quality.json")
    p.add_argument("--only", action="append", default=[])
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "patterns_real.json")
    return p.parse_args()


def samples(rows: list[dict], embed) -> list[pat.Sample]:
    """One sample per earlier job that kept tests: its target's embedding, reward and kept module."""
    out = []
    for r in rows:
        report = r.get("engine_report") or {}
        if report.get("tests_kept"):
            source = _source(r)
            out.append(pat.Sample(report["job_id"], "bench", r["module"], embed(source), reward(report),
                                  report["test_module"]))
    return out


def _source(row: dict) -> str:
    python = envs.env_for(row["requirement"], config.load().data_dir / "bench-envs")
    return envs.module_file(python, row["module"]).read_text()


def first_iteration(engine: Engine, job: Job, examples: list[str]) -> dict:
    report = engine.run(job, examples=examples)
    it = report["iterations"][0]
    judged = it["kept"] + it["rejected"]
    return {"kept": it["kept"], "rejected": it["rejected"], "pass_rate": it["kept"] / judged if judged else 0.0,
            "line": it["line"], "branch": it["branch"]}


def main() -> None:
    args = _args()
    settings = config.load()
    rows = json.loads(args.source.read_text())["rows"]
    model = resolve(settings)
    embedder = LlamaEmbedder(model.path, model_id=model.model_id)
    embed = lambda text: embedder.embed(text)  # noqa: E731
    pool = samples(rows, embed)
    backend = LocalBackend(model, n_ctx=settings["model"]["n_ctx"], n_threads=settings["model"]["n_threads"])
    engine = Engine(backend, sampling=Sampling.from_settings(settings),
                    settings=replace(EngineSettings.from_settings(settings), max_iterations=1, prompts_per_iteration=1,
                                     mutation_max_mutants=0, time_budget=600), limits=Limits.from_settings(settings))
    results = []
    for target in modlist.read(args.list):
        if args.only and not any(o in target.module for o in args.only):
            continue
        python = envs.env_for(target.requirement, settings.data_dir / "bench-envs")
        path = envs.module_file(python, target.module)
        others = [s for s in pool if s.module != target.module]
        built = pat.build_patterns(others, k=min(4, len(others)), min_reward=0.0, rng=np.random.default_rng(7), version=1)
        found = pat.retrieve(built, embed(path.read_text()), top_k=args.top_k, min_confidence=0.0)
        engine.limits = replace(engine.limits, python=str(python))
        job = Job.from_bundle(build_bundle(path, BIG), Options())
        row = {"module": target.module, "patterns_from": [p.module for p, _ in found],
               "without": first_iteration(engine, job, []), "with": first_iteration(engine, job, [p.exemplar for p, _ in found])}
        print(f"{target.module}: without {row['without']}  with {row['with']} (from {row['patterns_from']})", flush=True)
        results.append(row)
    for key in ("pass_rate", "line"):
        a = [r["without"][key] for r in results]
        b = [r["with"][key] for r in results]
        if results:
            print(f"{key}: without {statistics.mean(a):.3f}, with patterns {statistics.mean(b):.3f} (n = {len(results)})")
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
