"""Shared patterns and the learned policy on real jobs: do they raise the first-iteration pass rate
and coverage against a frozen policy? For each module of a list, one iteration (one prompt, same
seed) runs with each of four arms (:data:`ARMS`): the three prompt styles without examples, and
``focused`` with shared patterns. The patterns are leave-one-out: built (k-means++ over llama.cpp
embeddings, as consolidation does) from the kept tests of the *other* modules' earlier runs
(``--from`` JSON of benchmarks/quality.py), cosine top-k retrieved for the module. The policy is
leave-one-out too (:func:`leave_one_out`): trained on the other modules' measured rewards, it picks
an arm for the held-out module, and that arm's measured outcome is its score.

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
from benchmarks.learning import print_table  # noqa: E402
from benchmarks.quality import BIG, DEFAULT_LIST  # noqa: E402
from fleet import config  # noqa: E402
from fleet.bundle import build_bundle  # noqa: E402
from fleet.jobs import Job, Options  # noqa: E402
from fleet.llm.base import Sampling  # noqa: E402
from fleet.llm.local import LocalBackend  # noqa: E402
from fleet.llm.models import resolve  # noqa: E402
from fleet.sandbox import Limits  # noqa: E402
from fleet.sona import patterns as pat  # noqa: E402
from fleet.sona.features import Featurizer, LlamaEmbedder, pattern_vector  # noqa: E402
from fleet.sona.learner import fresh_head  # noqa: E402
from fleet.sona.reward import reward  # noqa: E402
from fleet.sona.settings import LearningSettings  # noqa: E402
from fleet.trm.loop import Engine, EngineSettings  # noqa: E402
from fleet.trm.strategy import Strategy  # noqa: E402


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("list", nargs="?", type=Path, default=DEFAULT_LIST)
    p.add_argument("--from", dest="source", type=Path, default=ROOT / "benchmarks" / "results" / "quality.json")
    p.add_argument("--only", action="append", default=[])
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--epochs", type=int, default=20, help="Replay passes when fitting the leave-one-out policy.")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "patterns_real.json")
    return p.parse_args()


ARMS = (Strategy("focused", 0.2, False), Strategy("whole", 0.2, False), Strategy("edge-cases", 0.2, False),
        Strategy("focused", 0.2, True))


def samples(rows: list[dict], featurizer: Featurizer) -> list[pat.Sample]:
    """One sample per earlier job that kept tests: its pattern vector (as consolidation stores it),
    reward and kept module."""
    out = []
    for r in rows:
        report = r.get("engine_report") or {}
        if report.get("tests_kept"):
            x = featurizer.features(_source(r), r["module"])
            out.append(pat.Sample(report["job_id"], "bench", r["module"], pattern_vector(x), reward(report),
                                  report["test_module"]))
    return out


def _source(row: dict) -> str:
    python = envs.env_for(row["requirement"], config.load().data_dir / "bench-envs")
    return envs.module_file(python, row["module"]).read_text()


def first_iteration(engine: Engine, job: Job, strategy: Strategy, examples: list[str]) -> dict:
    """One iteration of one prompt with ``strategy``: pass rate, coverage and the job's reward r."""
    report = engine.run(job, examples=examples if strategy.few_shot else [], strategy=strategy)
    it = report["iterations"][0]
    judged = it["kept"] + it["rejected"]
    return {"kept": it["kept"], "rejected": it["rejected"], "pass_rate": it["kept"] / judged if judged else 0.0,
            "line": it["line"], "branch": it["branch"], "reward": reward(report)}


def leave_one_out(results: list[dict], cfg: LearningSettings, epochs: int) -> None:
    """For each module, a fresh head (the fleet's version-0 weights over :data:`ARMS`) is trained
    with the product's update (one BCE step per outcome, ``epochs`` passes) on the *other* modules'
    measured (features, arm, reward); its greedy arm on the held-out module is recorded as
    ``learned``, the untrained head's greedy arm as ``frozen``, the best measured arm as ``oracle``."""
    for held in results:
        head = fresh_head(cfg, len(ARMS))
        frozen = int(np.argmax(head.logits(held["x"])))
        for _ in range(epochs):
            for other in results:
                if other is not held:
                    for a, arm in enumerate(ARMS):
                        head.update(other["x"], a, other["arms"][arm.name]["reward"], lr=cfg.lr, clip=cfg.clip)
        held["policy"] = {"frozen": ARMS[frozen].name, "learned": ARMS[int(np.argmax(head.logits(held["x"])))].name,
                          "oracle": max(ARMS, key=lambda s: held["arms"][s.name]["reward"]).name}


def summary(results: list[dict]) -> list[tuple]:
    """Mean first-iteration pass rate, line coverage and reward per arm and per policy choice."""
    picks = {f"arm {s.name}": [s.name] * len(results) for s in ARMS}
    picks.update({f"policy {k}": [r["policy"][k] for r in results] for k in ("frozen", "learned", "oracle")})
    rows = []
    for label, chosen in picks.items():
        got = [r["arms"][c] for r, c in zip(results, chosen)]
        rows.append((label, len(got), *(f"{statistics.mean(g[k] for g in got):.3f}" for k in ("pass_rate", "line", "reward"))))
    return rows


def main() -> None:
    args = _args()
    settings = config.load()
    cfg = LearningSettings.from_settings(settings)
    rows = json.loads(args.source.read_text())["rows"]
    model = resolve(settings)
    embedder = LlamaEmbedder(model.path, model_id=model.model_id, n_ctx=cfg.embed_ctx)
    featurizer = Featurizer(embedder, dim=cfg.feature_dim, seed=cfg.seed)
    pool = samples(rows, featurizer)
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
        source = path.read_text()
        others = [s for s in pool if s.module != target.module]
        built = pat.build_patterns(others, k=min(4, len(others)), min_reward=0.0, rng=np.random.default_rng(7), version=1)
        x = featurizer.features(source, target.module)
        found = pat.retrieve(built, pattern_vector(x), top_k=args.top_k, min_confidence=0.0)
        engine.limits = replace(engine.limits, python=str(python))
        job = Job.from_bundle(build_bundle(path, BIG), Options())
        row = {"module": target.module, "patterns_from": [p.module for p, _ in found],
               "x": x, "arms": {}}
        for arm in ARMS:
            row["arms"][arm.name] = first_iteration(engine, job, arm, [p.exemplar for p, _ in found])
            print(f"{target.module} {arm.name}: {row['arms'][arm.name]}", flush=True)
        results.append(row)
    leave_one_out(results, cfg, args.epochs)
    for r in results:
        print(f"{r['module']}: policy {r['policy']}")
    print_table(f"First iteration on real jobs (n = {len(results)} modules, one seed)",
                ("arm / policy", "n", "pass rate", "line", "reward"), summary(results))
    for r in results:
        r.pop("x")
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
