"""Quality benchmark: generate tests for real modules and re-measure the kept suites.

For each ``<pip requirement> <module>`` line of a list file: install the pin into its own venv
(reused), bundle the module's package from there, run one job with the same engine the agents
run (in-process, no Celery: the point is the engine), the sandbox using that venv's python,
within a per-module time budget; then re-measure the kept suite from scratch (5 reruns, line +
branch coverage) and its mutation score. Prints a table and writes JSON.

    python benchmarks/quality.py [LIST] [--model GGUF] [--budget 600] [--iterations N] [--ablate PART]
                                 [--only NAME] [--mutants N]

One run is one draw: a different feedback text changes every later reply, so a module's figure
moves by tens of points between runs. Compare engine versions over several sampling seeds
(``FLEET_MODEL_SEED=<n>``; the seed is written to the JSON).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import envs, modlist  # noqa: E402
from benchmarks.remeasure import remeasure  # noqa: E402
from fleet import config  # noqa: E402
from fleet.bundle import Limits as BundleLimits, build_bundle  # noqa: E402
from fleet.jobs import Job, Options  # noqa: E402
from fleet.llm.base import Sampling  # noqa: E402
from fleet.llm.local import LocalBackend  # noqa: E402
from fleet.llm.models import ResolvedModel, file_sha256, resolve  # noqa: E402
from fleet.sandbox import Limits  # noqa: E402
from fleet.trm.facts import without_hints  # noqa: E402
from fleet.trm.loop import Engine, EngineSettings  # noqa: E402

DEFAULT_LIST = ROOT.parent / "shared" / "bench" / "dev-modules.txt"
BIG = BundleLimits(max_file_bytes=4 << 20, max_bundle_bytes=64 << 20, max_files=5000)
COLUMNS = ("module", "ours l+b %", "CoverUp", "CodaMosa", "kept", "pass 5/5", "iters", "tokens", "minutes", "mutation")


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("list", nargs="?", type=Path, default=DEFAULT_LIST, help="module list file")
    p.add_argument("--model", type=Path, help="GGUF file (default: the configured, verified model)")
    p.add_argument("--budget", type=float, default=600.0, help="seconds per module (default 600)")
    p.add_argument("--iterations", type=int, help="refinement iterations per module (default "
                   "engine.max_iterations); with a large --budget the run no longer depends on the machine's speed")
    p.add_argument("--ablate", action="append", default=[], choices=[
                   "acceptance", "coverage-feedback", "oracle", "error-feedback", "segmenting", "hints", "cut", "raises",
                   "kept-examples", "repeats", "siblings", "variants", "retype", "typed", "runaway", "path-feedback"],
                   help="switch a part off (repeatable)")
    p.add_argument("--only", action="append", default=[], help="run only modules whose name contains this")
    p.add_argument("--mutants", type=int, help="mutants scored per module (default engine.mutation_max_mutants; 0 = skip)")
    p.add_argument("--envs", type=Path, help="where the venvs live (default <data_dir>/bench-envs)")
    p.add_argument("--out", type=Path, help="JSON output (default benchmarks/results/quality[-ablation].json)")
    return p.parse_args()


def _engine(args: argparse.Namespace, settings) -> Engine:
    model = (ResolvedModel(args.model, args.model.stem, file_sha256(args.model)) if args.model else resolve(settings))
    backend = LocalBackend(model, n_ctx=settings["model"]["n_ctx"], n_threads=settings["model"]["n_threads"],
                           seed=settings["model"]["seed"])
    eng = replace(EngineSettings.from_settings(settings), time_budget=args.budget, ablate=tuple(args.ablate))
    if args.iterations:
        eng = replace(eng, max_iterations=args.iterations)
    if args.mutants is not None:
        eng = replace(eng, mutation_max_mutants=args.mutants)
    return Engine(backend, sampling=Sampling.from_settings(settings), settings=eng, limits=Limits.from_settings(settings))


def run_one(engine: Engine, target: modlist.Target, envs_dir: Path) -> dict:
    python = envs.env_for(target.requirement, envs_dir)
    bundle = build_bundle(envs.module_file(python, target.module), BIG)
    job = Job.from_bundle(bundle, Options())
    engine.limits = replace(engine.limits, python=str(python))
    started = time.monotonic()
    report = engine.run(job, progress=lambda p: print(f"  {target.module}: iteration {p['iteration']} quality "
                                                      f"{p['quality']:.3f}", file=sys.stderr, flush=True))
    minutes = (time.monotonic() - started) / 60
    measured = remeasure(python, job.files, job.target_path, report["test_module"]) if report["tests_kept"] else {
        "passes": 0, "reruns": 5, "line_branch": 0.0}
    mutation = report.get("mutation") or {}
    return {
        "module": target.module, "requirement": target.requirement, "line_branch": measured["line_branch"],
        "coverup": target.coverup, "codamosa": target.codamosa, "tests_kept": report["tests_kept"],
        "passes": f"{measured['passes']}/{measured['reruns']}", "iterations": len(report["iterations"]),
        "tokens": report["tokens"]["in"] + report["tokens"]["out"], "minutes": round(minutes, 2),
        "mutation": mutation.get("score"), "remeasured": measured, "kv": kv_reuse(report),
        "repeated_errors": repeated_errors(report), "engine_report": report,
    }


def kv_reuse(report: dict) -> dict | None:
    """Prompt-eval seconds of the job's first (cold) prompt against its later ones, and the share
    of later prompt tokens served from llama.cpp's KV cache."""
    prompts = [a for it in report.get("iterations") or [] for a in it.get("attempts", [it])]
    if len(prompts) < 2:
        return None
    later = prompts[1:]
    return {"cold_prompt_s": prompts[0]["prompt_seconds"],
            "warm_prompt_s": round(statistics.mean(p["prompt_seconds"] for p in later), 3),
            "cached_share": round(statistics.mean(p["cached_tokens"] / max(1, p["tokens_in"]) for p in later), 3)}


def repeated_errors(report: dict) -> dict:
    """Failed tests (reason ``exception``, ``name-error``, ``import-error``) and how many of them
    repeat an error of an earlier iteration of the job: same first line, hints and object
    addresses removed. Feedback that teaches the model lowers the share of repeats."""
    seen: dict[str, int] = {}
    failed = repeats = 0
    for r in report.get("rejected") or []:
        if r["reason"] not in {"exception", "name-error", "import-error"}:
            continue
        key = re.sub(r"0x[0-9a-f]+", "0x", without_hints(r["detail"]).splitlines()[0] if r["detail"] else "")
        failed += 1
        repeats += seen.get(key, r["iteration"]) < r["iteration"]
        seen.setdefault(key, r["iteration"])
    return {"failed": failed, "repeats": repeats}


def _row(r: dict) -> tuple:
    mut = "-" if r["mutation"] is None else f"{100 * r['mutation']:.0f}%"
    return (r["module"], f"{r['line_branch']:.1f}", r["coverup"] or "-", r["codamosa"] or "-", r["tests_kept"],
            r["passes"], r["iterations"], r["tokens"], f"{r['minutes']:.1f}", mut)


def print_table(rows: list[dict]) -> None:
    table = [COLUMNS] + [tuple(str(c) for c in _row(r)) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    ours = [r["line_branch"] for r in rows]
    pub = [r["coverup"] for r in rows if r["coverup"] is not None]
    if ours:
        print(f"median line+branch: ours {statistics.median(ours):.1f}%"
              + (f", CoverUp+GPT-4o {statistics.median(pub):.1f}%" if pub else ""))
    errs = [r["repeated_errors"] for r in rows if r.get("repeated_errors")]
    if errs:
        failed, repeats = sum(e["failed"] for e in errs), sum(e["repeats"] for e in errs)
        print(f"failed tests: {failed}, of which {repeats} repeat an error of an earlier iteration")
    kv = [r["kv"] for r in rows if r.get("kv")]
    if kv:
        cold = statistics.mean(k["cold_prompt_s"] for k in kv)
        warm = statistics.mean(k["warm_prompt_s"] for k in kv)
        print(f"KV reuse: cold prompt {cold:.1f}s, later prompts {warm:.1f}s (ratio {warm / max(cold, 1e-9):.2f}), "
              f"{100 * statistics.mean(k['cached_share'] for k in kv):.0f}% of later prompt tokens cached")


def main() -> None:
    args = _args()
    settings = config.load()
    targets = [t for t in modlist.read(args.list) if not args.only or any(o in t.module for o in args.only)]
    engine = _engine(args, settings)
    rows = []
    for target in targets:
        print(f"{target.module} ({target.requirement})", file=sys.stderr, flush=True)
        try:
            rows.append(run_one(engine, target, args.envs or settings.data_dir / "bench-envs"))
        except Exception as exc:  # one broken pin must not end the run
            print(f"  {target.module}: FAILED {type(exc).__name__}: {exc}", file=sys.stderr)
            rows.append({"module": target.module, "requirement": target.requirement, "error": str(exc),
                         "line_branch": 0.0, "coverup": target.coverup, "codamosa": target.codamosa, "tests_kept": 0,
                         "passes": "0/5", "iterations": 0, "tokens": 0, "minutes": 0.0, "mutation": None})
    print_table(rows)
    suffix = "-" + "-".join(args.ablate) if args.ablate else ""
    out = args.out or ROOT / "benchmarks" / "results" / f"quality{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"list": str(args.list), "ablate": args.ablate, "budget_s": args.budget,
                               "iterations": args.iterations, "seed": settings["model"]["seed"],
                               "rows": rows}, indent=1, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
