"""Learning benchmark: continual learning, a 1000-job stream, and micro-benchmarks of the policy
head, consolidation and learning state, on the real fleet.sona code in a seeded environment
(benchmarks/learning_sim.py) whose rewards are drawn around the rewards of real jobs.

1. Continual learning. T task families arrive one after another (stage k = S jobs of family
   order[k], round-robin over the agents: ε-greedy PolicyHead.choose, Beta reward, one
   PolicyHead.update per job), then consolidate() folds the agents' micro deltas and the replay
   into the BaseLoRA and the MicroLoRAs are reset (as the publisher does). After stage k:

       R[k, j] = mean over family j's frozen held-out tasks of μ_j(greedy arm) / max_a μ_j(a)

   (1 = always the best arm). With R the T×T matrix over families in presentation order:

       ACC        = (1/T) Σ_j R[T−1, j]
       BWT        = (1/(T−1)) Σ_{j<T−1} (R[T−1, j] − R[j, j])
       forgetting = (1/(T−1)) Σ_{j<T−1} max_{j≤k<T−1} (R[k, j] − R[T−1, j])     (not clipped at 0)
       ρ          = (1/(T−1)) Σ_{j<T−1} R[T−1, j] / R[j, j]         (old families only; the newest
                                                                    family's ratio is 1 by definition)

   each reported as mean ± half-width of a 95 % Student-t interval over seeds (each seed: its
   own environment, held-out sets and family order). Methods: frozen head; naive fine-tuning
   (λ = 0, replay = this stage); replay-only (λ = 0, + a reservoir of past stages' jobs); joint
   (λ = 0, every job so far); EWC++ (λ from settings or --lam, replay = this stage), a λ sweep,
   and the production cadence (a consolidation every consolidate_after_jobs jobs inside a stage).
2. Stream. A mixed stream of jobs (a random family each) through real Learners (agents with their
   own MicroLoRA in Redis) and the real consolidate_fleet once consolidate_after_jobs updates are
   pending, against a frozen fleet (learning.enabled = false) on the same tasks.
3. Micro-benchmarks. PolicyHead.logits/update latency; consolidate() and consolidate_fleet time for
   10 and 100 agents; the bytes of the learning blobs and their zlib ratio.

    python benchmarks/learning.py [--seeds 5] [--quick] [--lam 50] [--only continual|stream|micro] [--redis URL]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.learning_sim import Env, Grounding  # noqa: E402
from benchmarks.tmpredis import redis_for  # noqa: E402
from fleet import config  # noqa: E402
from fleet.sona import codec  # noqa: E402
from fleet.sona.consolidate import Replay, consolidate  # noqa: E402
from fleet.sona.ewc import EwcState  # noqa: E402
from fleet.sona.learner import Learner, Plan, fresh_head  # noqa: E402
from fleet.sona.lora import LowRank  # noqa: E402
from fleet.sona.policy import PolicyHead, arms_from  # noqa: E402
from fleet.sona.publisher import consolidate_fleet, current_base  # noqa: E402
from fleet.sona.reward import reward  # noqa: E402
from fleet.sona.settings import LearningSettings  # noqa: E402
from fleet.sona.store import Micro, SonaStore, binary_client  # noqa: E402
from fleet.store import Keys  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "learning.json"
# Student-t 0.975 quantiles for 1..30 degrees of freedom (normal beyond).
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
SWEEP = (5.0, 50.0, 500.0)


@dataclass(frozen=True)
class Sizes:
    """Benchmark sizes (full run, or --quick)."""

    families: int = 5
    stage_jobs: int = 300
    held_out: int = 200
    agents: int = 3
    stream_jobs: int = 1000
    window: int = 100
    calls: int = 5000
    fleet_agents: tuple[int, ...] = (10, 100)

    @classmethod
    def quick(cls) -> "Sizes":
        return cls(families=3, stage_jobs=100, held_out=50, stream_jobs=300, calls=1000, fleet_agents=(10,))


# -- statistics and tables ---------------------------------------------------------------------
def ci95(values: list[float] | np.ndarray) -> tuple[float, float]:
    """(mean, half-width) of the 95 % t-interval: t_{0.975, n−1} · s / √n (0 for one value)."""
    v = np.asarray(values, float)
    if len(v) < 2:
        return float(v.mean()), 0.0
    t = T975[len(v) - 2] if len(v) - 1 <= len(T975) else 1.96
    return float(v.mean()), float(t * v.std(ddof=1) / np.sqrt(len(v)))


def fmt(values: list[float] | np.ndarray, digits: int = 3) -> str:
    mean, half = ci95(values)
    return f"{mean:.{digits}f} ± {half:.{digits}f}"


def print_table(title: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    table = [columns] + [tuple(str(c) for c in row) for row in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    print(f"\n{title}")
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


# -- the in-process fleet (continual learning) -------------------------------------------------
@dataclass(frozen=True)
class Method:
    """A continual-learning method: EWC λ, what the consolidation replays, and its cadence
    (``every`` jobs, or once at the end of each stage when None)."""

    label: str
    lam: float = 0.0
    replay: str = "stage"          # none | stage | reservoir | joint
    every: int | None = None


class Experience:
    """Jobs as (x, arm, reward) rows, appended in order."""

    def __init__(self) -> None:
        self.x: list[np.ndarray] = []
        self.arms: list[int] = []
        self.rewards: list[float] = []

    def add(self, x: np.ndarray, arm: int, r: float) -> None:
        self.x.append(x)
        self.arms.append(arm)
        self.rewards.append(r)

    def __len__(self) -> int:
        return len(self.arms)

    def replay(self, rows: list[int] | range | None = None) -> Replay:
        rows = range(len(self)) if rows is None else rows
        return Replay(np.stack([self.x[i] for i in rows]), np.asarray([self.arms[i] for i in rows]),
                      np.asarray([self.rewards[i] for i in rows]))


class Reservoir:
    """Algorithm R over row indices: a uniform sample of at most ``cap`` of the rows offered."""

    def __init__(self, cap: int, rng: np.random.Generator) -> None:
        self.cap, self.rng, self.rows, self.seen = cap, rng, [], 0

    def offer(self, rows: range) -> None:
        for row in rows:
            self.seen += 1
            if len(self.rows) < self.cap:
                self.rows.append(row)
            elif (j := int(self.rng.integers(self.seen))) < self.cap:
                self.rows[j] = row


class SimFleet:
    """Agents with their own MicroLoRA over a shared (W0, BaseLoRA, EWC state): the in-process twin
    of Learner + consolidate_fleet (ε-greedy choice, one PolicyHead.update per job, consolidate()
    then every MicroLoRA reset to the version-0 template)."""

    def __init__(self, cfg: LearningSettings, k: int, agents: int, rng: np.random.Generator) -> None:
        head = fresh_head(cfg, k)
        self.cfg, self.rng = cfg, rng
        self.w0, self.base, self.template = head.w0, head.base, head.micro
        self.ewc = EwcState.empty(k, cfg.feature_dim)
        self.micros = [head.micro.copy() for _ in range(agents)]
        self.updates = [0] * agents

    def job(self, agent: int, x: np.ndarray, env: Env, family: int) -> tuple[int, float]:
        head = PolicyHead(self.w0, self.base, self.micros[agent])
        arm, _ = head.choose(x, epsilon=self.cfg.epsilon, rng=self.rng)
        r = env.sample(family, arm, self.rng)
        head.update(x, arm, r, lr=self.cfg.lr, clip=self.cfg.clip)
        self.updates[agent] += 1
        return arm, r

    def consolidate(self, replay: Replay, lam: float) -> dict[str, Any]:
        deltas = [m.delta() for m, n in zip(self.micros, self.updates) if n]
        out = consolidate(self.w0, self.base, self.ewc, deltas, replay, replace(self.cfg.fit(), lam=lam))
        self.base, self.ewc = out.base, out.ewc
        self.micros = [self.template.copy() for _ in self.micros]
        self.updates = [0] * len(self.micros)
        return out.report

    def greedy(self, x: np.ndarray) -> np.ndarray:
        """argmax_a logit_a for each row of x (n×d), with the MicroLoRAs reset."""
        return np.argmax(PolicyHead(self.w0, self.base, self.template).logits(x.T), axis=0)


@dataclass
class World:
    """One seed's environment: families, their frozen held-out tasks, the order and the stage tasks."""

    env: Env
    held: list[np.ndarray]
    order: np.ndarray
    stages: list[np.ndarray]

    @classmethod
    def draw(cls, seed: int, grounding: Grounding, cfg: LearningSettings, k: int, sizes: Sizes) -> "World":
        rng = np.random.default_rng([seed, 0])
        env = Env.draw(grounding, sizes.families, k, cfg.feature_dim, rng)
        held = [env.tasks(f, sizes.held_out, rng) for f in range(env.families)]
        order = rng.permutation(env.families)
        return cls(env, held, order, [env.tasks(int(f), sizes.stage_jobs, rng) for f in order])

    def scores(self, fleet: SimFleet) -> np.ndarray:
        """R row: held-out score of every family, in presentation order."""
        return np.asarray([self.env.score(int(f), fleet.greedy(self.held[f])) for f in self.order])


def _replay(method: Method, log: Experience, window: range, past: Reservoir) -> Replay:
    if method.replay == "joint":
        return log.replay()
    extra = past.rows if method.replay == "reservoir" else []
    return log.replay(list(window) + list(extra))


def run_stages(world: World, method: Method, cfg: LearningSettings, sizes: Sizes, seed: int) -> np.ndarray:
    """R (T×T) for one method on one world (module docstring)."""
    rng = np.random.default_rng([seed, 1])
    fleet, log = SimFleet(cfg, world.env.means.shape[1], sizes.agents, rng), Experience()
    past = Reservoir(cfg.replay_per_agent, np.random.default_rng([seed, 4]))
    rows = []
    for k, tasks in enumerate(world.stages):
        stage_start = start = len(log)
        for i, x in enumerate(tasks):
            log.add(x, *fleet.job(i % sizes.agents, x, world.env, int(world.order[k])))
            last = i == len(tasks) - 1
            if method.replay != "none" and (last or (method.every and len(log) - start >= method.every)):
                fleet.consolidate(_replay(method, log, range(start, len(log)), past), method.lam)
                start = len(log)
        past.offer(range(stage_start, len(log)))
        rows.append(world.scores(fleet))
    return np.stack(rows)


def frozen_scores(world: World, cfg: LearningSettings, sizes: Sizes) -> np.ndarray:
    """R of the frozen head: its (version-0) scores repeated for every stage."""
    fleet = SimFleet(cfg, world.env.means.shape[1], sizes.agents, np.random.default_rng(0))
    return np.tile(world.scores(fleet), (sizes.families, 1))


def metrics(r: np.ndarray) -> dict[str, float]:
    """ACC, BWT, forgetting and ρ of the module docstring from R (T×T)."""
    t = len(r) - 1
    old = range(t)
    return {"ACC": float(r[t].mean()),
            "BWT": float(np.mean([r[t, j] - r[j, j] for j in old])),
            "forgetting": float(np.mean([max(r[k, j] - r[t, j] for k in range(j, t)) for j in old])),
            "rho": float(np.mean([r[t, j] / r[j, j] for j in old])),
            "new": float(np.mean(np.diag(r)))}


def continual_methods(cfg: LearningSettings, lam: float) -> list[Method]:
    every = cfg.consolidate_after_jobs
    sweep = [Method(f"EWC++ λ={x:g}", x) for x in sorted(set(SWEEP) - {lam})]
    return [Method("frozen head", replay="none"), Method("naive fine-tuning"),
            Method("replay-only", replay="reservoir"), Method("joint (all data)", replay="joint"),
            Method(f"EWC++ (ours) λ={lam:g}", lam), *sweep,
            Method(f"naive, consolidate every {every}", every=every),
            Method(f"EWC++ λ={lam:g}, consolidate every {every}", lam, every=every)]


def run_continual(cfg: LearningSettings, grounding: Grounding, sizes: Sizes, seeds: int, lam: float) -> dict[str, Any]:
    k = len(arms_from(cfg.arm_config()))
    methods = continual_methods(cfg, lam)
    per: dict[str, list[np.ndarray]] = {m.label: [] for m in methods}
    for seed in range(seeds):
        world = World.draw(seed, grounding, cfg, k, sizes)
        for m in methods:
            per[m.label].append(frozen_scores(world, cfg, sizes) if m.replay == "none"
                                else run_stages(world, m, cfg, sizes, seed))
    out = {"methods": [asdict(m) for m in methods], "reservoir": cfg.replay_per_agent, "R": {}, "metrics": {}}
    for m in methods:
        ms = [metrics(r) for r in per[m.label]]
        out["R"][m.label] = [r.round(4).tolist() for r in per[m.label]]
        out["metrics"][m.label] = {key: [x[key] for x in ms] for key in ms[0]}
    return out


def print_continual(res: dict[str, Any], sizes: Sizes, seeds: int) -> None:
    rows = []
    for m in res["methods"]:
        got = res["metrics"][m["label"]]
        replay = {"none": "-", "stage": "stage", "reservoir": "stage+reservoir", "joint": "all so far"}[m["replay"]]
        rows.append((m["label"], f"{m['lam']:g}", replay, fmt(got["ACC"]), fmt(got["BWT"]), fmt(got["forgetting"]),
                     fmt(got["rho"]), fmt(got["new"])))
    print_table(f"Continual learning: {sizes.families} families × {sizes.stage_jobs} jobs, {sizes.agents} agents, "
                f"{seeds} seeds (mean ± 95% t-interval); R = expected reward of the greedy arm / best arm's",
                ("method", "λ", "replay", "ACC", "BWT", "forgetting", "ρ (old)", "R[j,j] (new)"), rows)
    label = next(m["label"] for m in res["methods"] if m["label"].startswith("EWC++ (ours)"))
    mean_r = np.mean(res["R"][label], axis=0)
    print_table(f"mean R[k, j] for {label} (rows: after stage k; columns: family j in presentation order)",
                ("k",) + tuple(f"j={j}" for j in range(len(mean_r))),
                [(k,) + tuple(f"{v:.3f}" for v in row) for k, row in enumerate(mean_r)])
    print(f"R is normalised by the best arm's expected reward. Replay-only mixes a reservoir of "
          f"{res['reservoir']} past-stage jobs into each consolidation. ρ above 1 means an old family's score rose "
          f"after its own stage (a low R[j,j]), not better-than-perfect retention: read ρ with ACC and R[j,j].")


# -- the stream through real Learners and consolidate_fleet --------------------------------------
class TaskFeatures:
    """Stands in for the Featurizer: the simulated features of a task, keyed by its module name."""

    def __init__(self, tasks: np.ndarray) -> None:
        self.tasks = tasks

    def features(self, source: str, module: str) -> np.ndarray:
        return self.tasks[int(module.removeprefix("task"))]


RESOLUTION = 1000


def report_for(r: float) -> dict[str, Any]:
    """An engine report whose every reward part (gain, pass rate, stability, mutation) is r, so that
    fleet.sona.reward.reward(report) = round(r·1000)/1000."""
    n = round(r * RESOLUTION)
    if n == 0:
        return {"tests_kept": 0, "module": "sim"}
    return {"module": "sim", "tests_kept": n, "rejected": [""] * (RESOLUTION - n), "final_runs_passed": n,
            "reruns": RESOLUTION, "coverage_before": {"lines_total": RESOLUTION, "lines_covered": 0},
            "coverage_after": {"lines_total": RESOLUTION, "lines_covered": n},
            "mutation": {"tested": RESOLUTION, "killed": n}}


@dataclass
class StreamRun:
    rewards: np.ndarray      # realised reward per job
    expected: np.ndarray     # true mean reward of the chosen arm per job
    best: np.ndarray         # chosen arm was the family's best
    consolidations: list[dict[str, Any]]


def stream_fleet(store: SonaStore, cfg: LearningSettings, env: Env, tasks: np.ndarray, families: np.ndarray,
                 agents: int, seed: int) -> StreamRun:
    """Jobs round-robin over ``agents`` real Learners; consolidate_fleet whenever
    store.pending_jobs() ≥ consolidate_after_jobs (the production trigger)."""
    feats = TaskFeatures(tasks)
    learners = [Learner(store, feats, cfg, f"agent{a}", seed=seed * 1000 + a) for a in range(agents)]
    rng = np.random.default_rng([seed, 2])
    rewards, expected, best, reports = [], [], [], []
    for i, f in enumerate(families):
        learner = learners[i % agents]
        plan = learner.plan("", f"task{i}")
        report = report_for(env.sample(int(f), plan.arm, rng))
        learner.learn(f"job{i}", plan, report)
        rewards.append(reward(report))
        expected.append(env.means[f, plan.arm])
        best.append(plan.arm == env.best[f])
        if cfg.enabled and store.pending_jobs() >= cfg.consolidate_after_jobs:
            reports.append(consolidate_fleet(store, cfg))
    return StreamRun(np.asarray(rewards), np.asarray(expected), np.asarray(best), reports)


def stream_sim(cfg: LearningSettings, env: Env, tasks: np.ndarray, families: np.ndarray, agents: int,
               seed: int) -> StreamRun:
    """The same stream through SimFleet (no Redis): consolidate() every consolidate_after_jobs jobs."""
    rng = np.random.default_rng([seed, 2])
    fleet, log, start, reports = SimFleet(cfg, env.means.shape[1], agents, rng), Experience(), 0, []
    if not cfg.enabled:
        arms = fleet.greedy(tasks)
        return StreamRun(np.asarray([env.sample(int(f), int(a), rng) for f, a in zip(families, arms)]),
                         env.means[families, arms], arms == env.best[families], [])
    for i, (x, f) in enumerate(zip(tasks, families)):
        log.add(x, *fleet.job(i % agents, x, env, int(f)))
        if len(log) - start >= cfg.consolidate_after_jobs:
            reports.append(fleet.consolidate(log.replay(range(start, len(log))), cfg.ewc_lambda))
            start = len(log)
    arms = np.asarray(log.arms)
    return StreamRun(np.asarray(log.rewards), env.means[families, arms], arms == env.best[families], reports)


@contextlib.contextmanager
def scratch_store(url: str | None, name: str) -> Iterator[SonaStore | None]:
    """A SonaStore under a private key prefix (deleted afterwards), or None without Redis."""
    if url is None:
        yield None
        return
    client = binary_client(url, 5.0)
    prefix = f"bench-learning-{os.getpid()}-{name}"
    try:
        yield SonaStore(client, Keys(prefix))
    finally:
        keys = list(client.scan_iter(f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i:i + 1000])
        client.close()


def run_stream(cfg: LearningSettings, grounding: Grounding, sizes: Sizes, seeds: int, url: str | None) -> dict[str, Any]:
    k = len(arms_from(cfg.arm_config()))
    runs: dict[str, list[StreamRun]] = {"frozen": [], "learning": []}
    for seed in range(seeds):
        rng = np.random.default_rng([seed, 3])
        env = Env.draw(grounding, sizes.families, k, cfg.feature_dim, rng)
        families = rng.integers(env.families, size=sizes.stream_jobs)
        tasks = np.stack([env.tasks(int(f), 1, rng)[0] for f in families])
        for name, enabled in (("frozen", False), ("learning", True)):
            c = replace(cfg, enabled=enabled)
            with scratch_store(url, f"{name}-{seed}") as store:
                runs[name].append(stream_fleet(store, c, env, tasks, families, sizes.agents, seed) if store
                                  else stream_sim(c, env, tasks, families, sizes.agents, seed))
    return {**summarise_stream(runs, sizes, "redis" if url else "in-process"),
            "frozen_arm": arms_from(cfg.arm_config())[0].name}


def _gain(learning: np.ndarray, frozen: np.ndarray) -> float:
    """100 · (mean learning / mean frozen − 1)."""
    return float(100 * (learning.mean() / frozen.mean() - 1))


def summarise_stream(runs: dict[str, list[StreamRun]], sizes: Sizes, backend: str) -> dict[str, Any]:
    w, n = sizes.window, sizes.stream_jobs
    windows = [(s, min(s + w, n)) for s in range(0, n, w)]
    table = []
    for s, e in windows:
        fr = [r.rewards[s:e].mean() for r in runs["frozen"]]
        le = [r.rewards[s:e].mean() for r in runs["learning"]]
        table.append({"jobs": f"{s + 1}-{e}", "frozen": fr, "learning": le,
                      "best_arm_learning": [r.best[s:e].mean() for r in runs["learning"]],
                      "best_arm_frozen": [r.best[s:e].mean() for r in runs["frozen"]]})
    half = n // 2
    gains = {f"{what} {part}": [_gain(getattr(lr, what)[sl], getattr(fr, what)[sl])
                                for lr, fr in zip(runs["learning"], runs["frozen"])]
             for what in ("rewards", "expected") for part, sl in (("last half", slice(half, n)), ("whole", slice(0, n)))}
    return {"backend": backend, "windows": table, "gains_pct": gains,
            "consolidations": [r.consolidations for r in runs["learning"]]}


def print_stream(res: dict[str, Any], sizes: Sizes, seeds: int) -> None:
    rows = [(t["jobs"], f"{np.mean(t['frozen']):.3f}", f"{np.mean(t['learning']):.3f}",
             f"{100 * (np.mean(t['learning']) / np.mean(t['frozen']) - 1):+.1f}",
             f"{100 * np.mean(t['best_arm_frozen']):.0f}", f"{100 * np.mean(t['best_arm_learning']):.0f}")
            for t in res["windows"]]
    print_table(f"Stream: {sizes.stream_jobs} jobs of {sizes.families} mixed families, {sizes.agents} agents "
                f"({res['backend']}), mean realised reward per {sizes.window}-job window over {seeds} seeds",
                ("jobs", "frozen", "learning", "gain %", "best arm % frozen", "best arm % learning"), rows)
    g = res["gains_pct"]
    print(f"gain of learning over frozen, last {sizes.stream_jobs - sizes.stream_jobs // 2} jobs: "
          f"{fmt(g['rewards last half'], 1)} % realised reward ({fmt(g['expected last half'], 1)} % expected reward "
          f"of the chosen arms); whole stream: {fmt(g['rewards whole'], 1)} % ({fmt(g['expected whole'], 1)} %). "
          f"The frozen policy is the version-0 head: every logit is 0, so argmax picks arm 0 "
          f"({res['frozen_arm']}) for every job.")


# -- micro-benchmarks ------------------------------------------------------------------------
def latencies(fn: Callable[[int], Any], calls: int) -> dict[str, float]:
    """p50/p95/max in ms of ``fn(i)`` over ``calls`` calls (after 50 warm-up calls)."""
    for i in range(50):
        fn(i)
    times = np.empty(calls)
    for i in range(calls):
        t = time.perf_counter()
        fn(i)
        times[i] = time.perf_counter() - t
    ms = 1000 * times
    return {"calls": calls, "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "max_ms": float(ms.max())}


def trained_micro(cfg: LearningSettings, k: int, rng: np.random.Generator, steps: int = 30) -> LowRank:
    """The version-0 MicroLoRA after ``steps`` PolicyHead.update calls on random tasks."""
    head = fresh_head(cfg, k)
    for _ in range(steps):
        x = rng.normal(0, 0.1, cfg.feature_dim).astype(np.float32)
        head.update(x, int(rng.integers(k)), float(rng.random()), lr=cfg.lr, clip=cfg.clip)
    return head.micro


def head_latency(cfg: LearningSettings, k: int, calls: int) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(11)
    head = fresh_head(cfg, k)
    head.micro = trained_micro(cfg, k, rng)
    xs = rng.normal(0, 0.1, (calls + 50, cfg.feature_dim)).astype(np.float32)
    arms, rs = rng.integers(k, size=calls + 50), rng.random(calls + 50)
    return {"PolicyHead.logits": latencies(lambda i: head.logits(xs[i]), calls),
            "PolicyHead.update": latencies(lambda i: head.update(xs[i], int(arms[i]), float(rs[i]), lr=cfg.lr,
                                                                 clip=cfg.clip), calls)}


def replay_sizes(cfg: LearningSettings, agents: int) -> dict[str, int]:
    """Entries per agent: the job trigger's window (consolidate_after_jobs spread over the agents)
    and the cap a consolidation reads (replay_per_agent each)."""
    return {"trigger window": max(1, cfg.consolidate_after_jobs // agents), "replay_per_agent": cfg.replay_per_agent}


def populate(store: SonaStore, cfg: LearningSettings, k: int, agents: int, per_agent: int, rng: np.random.Generator) -> None:
    """Every agent: a MicroLoRA that learned, and ``per_agent`` experience entries written in the
    Learner's own format (Learner._experience)."""
    xs = rng.normal(0, 0.1, (per_agent, cfg.feature_dim)).astype(np.float32)
    for a in range(agents):
        learner = Learner(store, TaskFeatures(xs), cfg, f"agent{a}", seed=a)
        pipe = store.client.pipeline(transaction=False)
        pipe.set(store.micro_key(learner.agent_id), Micro(trained_micro(cfg, k, rng, 5), 1, "j", 0, per_agent).blob())
        for i, x in enumerate(xs):
            arm, r = int(rng.integers(k)), float(rng.random())
            plan = Plan(arm, learner.arms[arm], False, x, 0, 1)
            pipe.xadd(store.experience_key(learner.agent_id), learner._experience(f"j{a}-{i}", plan, report_for(r), r))
        pipe.execute()


def time_consolidation(cfg: LearningSettings, k: int, agents: int, per_agent: int, url: str | None,
                       repeats: int) -> dict[str, Any]:
    """Seconds of consolidate() on agents·per_agent samples, and of consolidate_fleet end to end."""
    rng = np.random.default_rng(agents)
    head = fresh_head(cfg, k)
    n = agents * per_agent
    replay = Replay(rng.normal(0, 0.1, (n, cfg.feature_dim)).astype(np.float32), rng.integers(k, size=n), rng.random(n))
    deltas = [trained_micro(cfg, k, rng, 5).delta() for _ in range(agents)]
    math = []
    for _ in range(repeats):
        t = time.perf_counter()
        consolidate(head.w0, head.base, EwcState.empty(k, cfg.feature_dim), deltas, replay, cfg.fit())
        math.append(time.perf_counter() - t)
    out: dict[str, Any] = {"agents": agents, "per_agent": per_agent, "samples": n, "consolidate_s": math}
    if url:
        out["consolidate_fleet_s"], out["blobs"] = fleet_consolidation(cfg, k, agents, per_agent, url, repeats)
    return out


def fleet_consolidation(cfg: LearningSettings, k: int, agents: int, per_agent: int, url: str,
                        repeats: int) -> tuple[list[float], dict[str, int]]:
    """consolidate_fleet wall time on freshly populated Redis state (population not timed), and the
    sizes of the resulting Base blob and of an agent's Micro blob."""
    times, blobs = [], {}
    for rep in range(repeats):
        with scratch_store(url, f"micro-{agents}-{per_agent}-{rep}") as store:
            populate(store, cfg, k, agents, per_agent, np.random.default_rng(rep))
            blobs = {"micro": store.load_micro("agent0").blob()}
            stream_bytes = int(store.client.memory_usage(store.experience_key("agent0")) or 0)
            t = time.perf_counter()
            report = consolidate_fleet(store, cfg)
            times.append(time.perf_counter() - t)
            assert report.get("ran") and report["samples"] == agents * per_agent, report
            blobs["base"] = current_base(store, cfg).blob()
    measured = {name: {"bytes": len(b), "raw_bytes": codec.raw_size(b)} for name, b in blobs.items()}
    return times, {**measured, "experience entry": {"bytes": stream_bytes // per_agent, "raw_bytes": None}}


def run_micro(cfg: LearningSettings, sizes: Sizes, url: str | None) -> dict[str, Any]:
    k = len(arms_from(cfg.arm_config()))
    out: dict[str, Any] = {"head": head_latency(cfg, k, sizes.calls), "consolidation": []}
    for agents in sizes.fleet_agents:
        for case, per_agent in replay_sizes(cfg, agents).items():
            repeats = 1 if agents * per_agent > 5000 else 3
            out["consolidation"].append({"case": case, **time_consolidation(cfg, k, agents, per_agent, url, repeats)})
    return out


def print_micro(res: dict[str, Any]) -> None:
    print_table("Policy head latency (one task, K arms, d features; target p95 ≤ 1 ms)",
                ("call", "calls", "p50 ms", "p95 ms", "max ms"),
                [(name, v["calls"], f"{v['p50_ms']:.4f}", f"{v['p95_ms']:.4f}", f"{v['max_ms']:.3f}")
                 for name, v in res["head"].items()])
    rows = []
    for c in res["consolidation"]:
        fleet_s = c.get("consolidate_fleet_s")
        rows.append((c["agents"], c["case"], c["per_agent"], c["samples"], len(c["consolidate_s"]),
                     f"{np.median(c['consolidate_s']):.3f}", f"{max(c['consolidate_s']):.3f}",
                     f"{np.median(fleet_s):.3f}" if fleet_s else "-", f"{max(fleet_s):.3f}" if fleet_s else "-"))
    print_table("Consolidation time in seconds (target ≤ 2 s for 100 agents): consolidate() = the math alone; "
                "consolidate_fleet = gather from Redis + fit + patterns + publish + micro resets",
                ("agents", "replay", "per agent", "samples", "runs", "consolidate() median", "max",
                 "consolidate_fleet median", "max"), rows)
    print("replay 'trigger window' = the consolidate_after_jobs jobs that trigger a consolidation, spread over the "
          "agents; 'replay_per_agent' = the most a consolidation reads (every agent at its cap).")
    last = next((c for c in reversed(res["consolidation"]) if c.get("blobs")), None)
    if last:
        print_table(f"Learning state in Redis after a consolidation of {last['agents']} agents (one agent's MicroLoRA; "
                    f"the published BaseLoRA with W0, EWC state and {last['agents']} stream cursors; one experience "
                    f"entry = Redis MEMORY USAGE of a stream / entries, not compressed)",
                    ("blob", "bytes", "raw msgpack bytes", "compression ratio"),
                    [(name, b["bytes"], b["raw_bytes"] or "-", f"{b['raw_bytes'] / b['bytes']:.2f}" if b["raw_bytes"]
                      else "-") for name, b in last["blobs"].items()])


# -- main ------------------------------------------------------------------------------------
def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=5, help="seeds (environments and family orders), default 5")
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    p.add_argument("--lam", type=float, help="EWC λ of 'ours' and of the stream (default: learning.ewc_lambda)")
    p.add_argument("--only", action="append", default=[], choices=["continual", "stream", "micro"],
                   help="run only this part (repeatable)")
    p.add_argument("--redis", help="Redis URL for the stream and consolidate_fleet (default: a temporary redis-server)")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "quality*.json"),
                   help="glob of bench results whose engine reports ground the rewards")
    p.add_argument("--out", type=Path, help=f"JSON output (default {RESULTS.relative_to(ROOT)})")
    return p.parse_args()


def main() -> None:
    args = _args()
    started = time.perf_counter()
    cfg = LearningSettings.from_settings(config.load())
    lam = cfg.ewc_lambda if args.lam is None else args.lam
    cfg = replace(cfg, ewc_lambda=lam)
    sizes = Sizes.quick() if args.quick else Sizes()
    seeds = min(args.seeds, 2) if args.quick else args.seeds
    parts = args.only or ["continual", "stream", "micro"]
    grounding = Grounding.from_results(args.results)
    print(f"Simulated rewards are grounded in {grounding.describe()}. Each family's arm means are drawn around a "
          f"real reward (best arm +g, other families' best arms −g, the rest ±g/2), so every family has a different "
          f"best arm that is bad elsewhere; features share a common embedding direction, the AST statistics and the "
          f"bias, so families interfere.")
    out: dict[str, Any] = {"settings": asdict(cfg), "sizes": asdict(sizes), "seeds": seeds, "lam": lam,
                           "grounding": {**asdict(grounding), "mean": grounding.mean, "sd": grounding.sd,
                                         "kappa": grounding.kappa}}
    with threadpool_limits(1), redis_for(args.redis) as url:
        if "continual" in parts:
            out["continual"] = run_continual(cfg, grounding, sizes, seeds, lam)
            print_continual(out["continual"], sizes, seeds)
        if "stream" in parts:
            out["stream"] = run_stream(cfg, grounding, sizes, seeds, url)
            print_stream(out["stream"], sizes, seeds)
        if "micro" in parts:
            out["micro"] = run_micro(cfg, sizes, url)
            print_micro(out["micro"])
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(f"\nruntime {out['seconds']} s")
    path = args.out or RESULTS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, default=str))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
