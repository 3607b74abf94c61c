"""The refinement loop (TRM): generate → run → measure → feed back → regenerate.

Each iteration makes ``prompts_per_iteration`` attempts, and up to ``max_prompts_per_iteration``
while none of them has yet raised quality by ``quality_threshold``; each attempt asks the model for
tests of one focus (the whole public API first for small modules, then up to three segments
with the most uncovered lines and branches, segments that yielded nothing being tried later)
and judges the reply test by test (:mod:`fleet.trm.judge`), skipping tests it wrote before in this
job and sampling hotter while replies repeat (:mod:`fleet.trm.repeats`); failed tests are fed back
with their errors and where their path left the uncovered code (:mod:`fleet.trm.divergence`).
Kept tests are then re-aimed at uncovered sibling callables and classes
(:mod:`fleet.trm.siblings`) and copied with one input literal changed
(:mod:`fleet.trm.variants`), tests that failed on a ``TypeError`` about the kind of their
inputs are retried with those converted (:mod:`fleet.trm.retype`), and tests that pass ``None``
or a literal of the wrong type to an annotated parameter are retried with a value of that type
(:mod:`fleet.trm.typed`), without the model. The
iteration then scores the kept suite (:mod:`fleet.trm.quality`).
The kept suite only grows by tests that pass every rerun and add coverage, so quality never
drops below an earlier iteration's. It stops when:
quality ≥ convergence_threshold; improvement < quality_threshold on ``patience`` consecutive
iterations; max_iterations is reached; or the job's token or time budget is spent (a reply that
is still streaming then is cut, :mod:`fleet.trm.halting`).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, Callable

from fleet.analysis import Analysis, Segment, analyse, source_lines
from fleet.jobs import Job
from fleet.llm.base import Backend, Sampling
from fleet.mutation import mutation_score
from fleet.sandbox import Limits, Measure, Sandbox
from fleet.trm import oracle, prompts
from fleet.errors import JobFailed
from fleet.junit import COLLECTION
from fleet.trm.judge import MENDABLE_REASONS, Judge, Verdict, trim_error
from fleet.trm.parse import Parsed, Rejection, Unit, parse_reply
from fleet.trm.quality import FORMULA, quality
from fleet.trm.context import related_definitions
from fleet.trm.facts import Facts, without_hints
from fleet.trm.renames import Renames, misspelling, rewrite
from fleet.trm.repeats import Repeats
from fleet.trm.halting import StreamStop
from fleet.trm.siblings import Siblings
from fleet.trm.retype import Retypes
from fleet.trm.typed import TypedArguments
from fleet.trm.variants import Variants
from fleet.trm.repair import Context, absolute_imports, bundle_index
from fleet.trm.strategy import Strategy
from fleet.trm.suite import Suite

Progress = Callable[[dict[str, Any]], None]


class TargetImportError(JobFailed):
    """The target fails to import in the sandbox (a missing dependency, an error at import time)."""
WHOLE_MODULE_LINES = 120
FOCUS_LINES = 60
FOCUS_SEGMENTS = 3
KEPT_EXAMPLE_CHARS = 900  # kept tests shown per prompt as correct usage
MENDS = {"observed": "with observed expected values", "cut": "cut before a failing statement",
         "raises": "expecting the exception raised", "renamed": "with a misspelt name corrected"}
FEEDBACK_REASONS = {"assertion", "exception", "name-error", "import-error", "timeout", "syntax", "redefines-target",
                    "unsafe-call"}
# per attempt, of :meth:`_Run._amplify`
AMPLIFIED = ("clones", "clones_kept", "variants", "variants_kept", "retyped", "retyped_kept", "typed", "typed_kept")
NO_TESTS_COLLECTED = 5  # pytest's exit code for the baseline run, a module that only imports the target


@dataclass(frozen=True)
class EngineSettings:
    """Loop settings (``[engine]`` in config/default.toml)."""

    max_iterations: int = 7
    convergence_threshold: float = 0.95
    quality_threshold: float = 0.01
    patience: int = 2
    prompts_per_iteration: int = 2
    max_prompts_per_iteration: int = 4
    max_tokens: int = 120000
    time_budget: float = 1200.0
    reruns: int = 5
    max_source_chars: int = 12000
    max_error_chars: int = 600
    mutation_max_mutants: int = 30
    mutation_budget: float = 90.0
    repeat_temperature_step: float = 0.25
    max_temperature: float = 1.0
    max_clones: int = 12
    max_variants: int = 12
    # Parts switched off, for ablation benchmarks: acceptance, coverage-feedback, error-feedback,
    # segmenting, oracle, cut, hints, repeats, siblings, variants, retype, typed, runaway,
    # path-feedback.
    ablate: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Any) -> "EngineSettings":
        eng = settings["engine"]
        fields = {k: eng[k] for k in cls.__dataclass_fields__ if k in eng}
        return cls(**fields, time_budget=float(settings["celery"]["soft_time_limit"]) * 0.8)

    def for_job(self, job: Job) -> "EngineSettings":
        out = self
        if job.options.max_iterations:
            out = replace(out, max_iterations=job.options.max_iterations)
        if job.options.time_budget:
            out = replace(out, time_budget=min(out.time_budget, job.options.time_budget))
        return out


def _bundled_packages(job: Job) -> frozenset[str]:
    return frozenset(path.split("/")[0].removesuffix(".py") for path in job.files)


class Engine:
    """Runs jobs with one backend; holds no state between jobs."""

    def __init__(self, backend: Backend, *, sampling: Sampling, settings: EngineSettings, limits: Limits) -> None:
        self.backend, self.sampling, self.settings, self.limits = backend, sampling, settings, limits

    def with_backend(self, backend: Backend) -> "Engine":
        """The same engine on another backend (a job's routed provider)."""
        return Engine(backend, sampling=self.sampling, settings=self.settings, limits=self.limits)

    def run(self, job: Job, *, progress: Progress | None = None, examples: list[str] | None = None,
            strategy: Strategy | None = None, refine: bool = True) -> dict[str, Any]:
        """Generate a test module for ``job``; returns the report (a JSON-safe dict). ``strategy``
        (default: focused prompts at the configured temperature) is what the learning policy chose;
        ``examples`` are exemplar tests shown to the model; ``refine=False`` (flag trm.enabled off)
        makes a single generation pass: one iteration of one prompt."""
        settings = self.settings.for_job(job)
        if not refine:
            settings = replace(settings, max_iterations=1, prompts_per_iteration=1, max_prompts_per_iteration=1)
        with Sandbox(job.files, job.target_path, self.limits) as sandbox:
            return _Run(self, job, sandbox, progress or (lambda _: None), examples or [], strategy, settings).execute()


class _Run:
    """The state of one job's loop."""

    def __init__(self, engine: Engine, job: Job, sandbox: Sandbox, progress: Progress, examples: list[str],
                 strategy: Strategy | None, settings: EngineSettings) -> None:
        self.engine, self.job, self.sandbox, self.cfg = engine, job, sandbox, settings
        self.strategy = strategy or Strategy(temperature=engine.sampling.temperature)
        self.progress, self.examples = progress, examples
        self.source = job.target_source
        self.analysis: Analysis = analyse(self.source, job.module)
        self.ctx = Context(job.module, self.analysis, _bundled_packages(job), bundle_index(job.files, job.target_path),
                           is_package=job.target_path.endswith("__init__.py"))
        imports = absolute_imports(self.ctx)
        self.related = related_definitions(job.files, job.target_path, imports)
        self.base: Measure = sandbox.measure_base()
        self.judge = Judge(sandbox, self.ctx, self.base, reruns=self.cfg.reruns, max_error_chars=self.cfg.max_error_chars,
                           per_test="acceptance" not in self.cfg.ablate, source=self.source)
        self.suite = Suite()
        self.measure = self.base
        self.quality = 0.0
        self.history: list[dict[str, Any]] = []
        self.rejected: list[dict[str, Any]] = []
        self.trace: list[str] = []
        self.attempts: Counter[str] = Counter()
        self.asked = 0
        self.errors: list[str] = []
        self.facts = Facts()
        self.renames = Renames(self.source)
        self.repeats = Repeats(step=settings.repeat_temperature_step, max_temperature=settings.max_temperature)
        self.siblings = Siblings.of(self.source)
        self.variants = Variants.of(self.source, self.analysis.names)
        self.retypes = Retypes(self.variants.targets)
        self.typed = TypedArguments.of(self.source, imports, job.files, frozenset(self.analysis.names))
        self.tokens_in = self.tokens_out = 0
        self.started = time.monotonic()

    # -- focus -------------------------------------------------------------------------------
    def _focus(self) -> prompts.Focus:
        focus = self._segment_focus()
        ablate = self.cfg.ablate
        errors = [] if "error-feedback" in ablate else focus.errors
        if "hints" in ablate:
            errors = [without_hints(err) for err in errors]
        words = {part for seg in focus.segments for part in seg.name.split(".")} or set(self.analysis.public)
        passing = [] if "kept-examples" in ablate else self.suite.examples(words, KEPT_EXAMPLE_CHARS)
        return replace(focus, missing_lines=[] if "coverage-feedback" in ablate else focus.missing_lines,
                       errors=errors, facts=[] if "hints" in ablate else list(self.facts), passing=passing)

    def _segment_focus(self) -> prompts.Focus:
        """The module's public API first (small modules, first prompt), then the segments with the largest
        uncovered gap, ``gap / (1 + 2·attempts)``, grouped up to FOCUS_LINES source lines."""
        whole = self.asked == 1 and self.analysis.lines <= WHOLE_MODULE_LINES
        if whole or "segmenting" in self.cfg.ablate or self.strategy.prompt == "whole":
            return prompts.Focus((), errors=self.errors, examples=self.examples)
        scored = [(gap / (1 + 2 * self.attempts[seg.name]), seg) for gap, seg in self._gap_by_segment()]
        chosen: list[Segment] = []
        for _, seg in sorted(scored, key=lambda item: -item[0]):
            size = sum(len(s.lines()) for s in chosen) + len(seg.lines())
            if chosen and (size > FOCUS_LINES or len(chosen) == FOCUS_SEGMENTS):
                break
            chosen.append(seg)
        if not chosen:
            return prompts.Focus((), errors=self.errors, examples=self.examples)
        missing, sources = self._missing()
        lines = source_lines(self.source)
        spans = set().union(*(set(seg.lines()) for seg in chosen))
        text = [lines[n - 1] for n in sorted(missing.union(sources) & spans) if n <= len(lines)]
        return prompts.Focus(tuple(chosen), missing_lines=text, errors=self.errors, examples=self.examples)

    def _gap_by_segment(self) -> list[tuple[int, Segment]]:
        """``(gap, segment)`` for each segment with uncovered lines or branch sources, where gap
        counts both, in source order."""
        missing, sources = self._missing()
        scored = [(len(missing.intersection(seg.lines())) + len(sources.intersection(seg.lines())), seg)
                  for seg in self.analysis.segments]
        return [(gap, seg) for gap, seg in scored if gap]

    def _missing(self) -> tuple[set[int], set[int]]:
        """The kept suite's uncovered lines, and the source lines of its uncovered branch arcs."""
        return set(self.measure.missing_lines), {a for a, _ in self.measure.missing_branches}

    # -- one iteration -----------------------------------------------------------------------
    def _ask(self, focus: prompts.Focus, attempt: int, temperature: float):
        messages = prompts.build(self.job.module, self.source, self.analysis, focus,
                                 max_source_chars=self.cfg.max_source_chars, related=self.related,
                                 edge_cases=self.strategy.prompt == "edge-cases")
        sampling = replace(self.engine.sampling, seed=self.engine.sampling.seed + attempt,
                           temperature=temperature)
        prefill = prompts.prefill(self.job.module, prompts.import_names(self.analysis, focus))
        halt = StreamStop(self.started + self.cfg.time_budget, runaway="runaway" not in self.cfg.ablate)
        completion = self.engine.backend.complete(messages, prefill=prefill, stop=prompts.STOP, sampling=sampling,
                                                  halt=halt)
        self.tokens_in += completion.prompt_tokens
        self.tokens_out += completion.completion_tokens
        if completion.finish_reason == "halted":
            completion = replace(completion, finish_reason=f"halted at a {halt.why}")
        text = halt.kept(completion.text)
        if completion.full_reply:  # a provider that cannot prefill: the reply carries its own fence
            return completion, text
        return completion, prefill.removeprefix("```python\n") + text

    def _record(self, iteration: int, rejected: list[Rejection], feed: bool = True) -> None:
        """Report the rejections; with ``feed``, they become the next prompt's feedback: the
        failures' errors, then the tests that covered nothing new, each with where its path left
        the uncovered code (:mod:`fleet.trm.divergence`; not with ``path-feedback`` ablated)."""
        for r in rejected:
            path = {"path": r.path} if r.path else {}
            self.rejected.append({"name": r.name, "reason": r.reason, "detail": r.detail, "iteration": iteration, **path})
        if not feed:
            return
        paths = "path-feedback" not in self.cfg.ablate
        failed = [r for r in rejected if (r.reason in FEEDBACK_REASONS or Repeats.failed(r)) and r.detail]
        idle = [r for r in rejected if paths and r.reason == "no-new-coverage" and r.path]
        self.errors = [f"{r.name}: {r.detail[:240]}" + (f"; {r.path}" if paths and r.path else "")
                       for r in failed + idle]
        self.facts.learn([r.detail for r in failed])

    def _attempt(self, iteration: int) -> dict[str, Any]:
        """One prompt: choose a focus, ask, parse, judge, mend failed tests; the attempt's figures."""
        self.asked += 1
        focus = self._focus()
        label = ", ".join(seg.name for seg in focus.segments) or "module"
        for seg in focus.segments:
            self.attempts[seg.name] += 1
        temperature = self.repeats.temperature(self.strategy.temperature)
        completion, code = self._ask(focus, self.asked, temperature)
        parsed = parse_reply(code, self.analysis.names)
        corrected = 0 if "hints" in self.cfg.ablate else self.renames.apply(parsed)
        candidates = self.suite.absorb(parsed)
        candidates, repeated = self._fresh(candidates)
        verdict, mended = self._settle(candidates)
        self.repeats.record(verdict.rejected)
        self._record(iteration, parsed.rejected + repeated + verdict.rejected)
        self.trace.append(
            f"iteration {iteration}: focus {label}; temperature {temperature:g}; reply {completion.completion_tokens} "
            f"tokens ({completion.finish_reason}); {len(candidates)} new candidate(s) and {len(repeated)} repeat(s) "
            f"not judged again; {len(verdict.accepted)} kept "
            f"({', '.join(f'{mended[origin]} {text}' for origin, text in MENDS.items())}); "
            f"{corrected} definition(s) corrected before judging")
        failed = {r.name: r.detail for r in verdict.rejected if r.reason == "exception"}
        made, cloned = self._amplify(iteration, [(u, failed[u.name]) for u in candidates if u.name in failed])
        return {"focus": label, "kept": len(verdict.accepted) + len(cloned.accepted),
                "rejected": len(parsed.rejected) + len(repeated) + len(verdict.rejected) + len(cloned.rejected),
                "tokens_in": completion.prompt_tokens, "tokens_out": completion.completion_tokens,
                "prompt_seconds": round(completion.prompt_seconds, 3), "cached_tokens": completion.cached_tokens,
                "sandbox_runs": verdict.runs + cloned.runs, "repeats": len(repeated), "temperature": temperature,
                **{key: made.get(key, 0) for key in AMPLIFIED}, "reply": code}

    def _amplify(self, iteration: int, failed: list[tuple[Unit, str]]) -> tuple[dict[str, int], Verdict]:
        """Kept tests re-aimed at uncovered siblings (:mod:`fleet.trm.siblings`, origin ``clone``),
        ``failed`` (test, error) pairs with their inputs of the kind a ``TypeError`` names converted
        (:mod:`fleet.trm.retype`, origin ``retyped``), failed and kept tests with their unfit
        arguments given values of the annotated types (:mod:`fleet.trm.typed`, origin ``typed``),
        and kept tests with one input literal changed (:mod:`fleet.trm.variants`, origin
        ``variant``; retyped and typed ones count against ``max_variants``), without the model;
        judged and mended like the model's tests in one
        batch, their errors not fed back (the model did not write them). How many of each were
        made and kept, and their verdict."""
        cfg = self.cfg
        if self._spent():
            return {}, Verdict()
        gaps = [seg for _, seg in sorted(self._gap_by_segment(), key=lambda item: -item[0])]
        clones = [] if "siblings" in cfg.ablate or cfg.max_clones <= 0 else \
            self.siblings.clones(self.suite.units, [seg.name for seg in gaps], cfg.max_clones)
        retyped = [] if "retype" in cfg.ablate or cfg.max_variants <= 0 else \
            self.retypes.retype(failed, cfg.max_variants)
        typed = [] if "typed" in cfg.ablate or cfg.max_variants <= len(retyped) else \
            self.typed.typed([u for u, _ in failed] + self.suite.units, cfg.max_variants - len(retyped))
        room = cfg.max_variants - len(retyped) - len(typed)
        variants = [] if "variants" in cfg.ablate or room <= 0 else \
            self.variants.variants(self.suite.units, gaps, room, lambda unit: self.suite.support_of([unit]))
        made = clones + retyped + typed + variants
        if not made:
            return {}, Verdict()
        batch = self.suite.absorb(Parsed(units=made))
        origin = {absorbed.name: unit.origin for absorbed, unit in zip(batch, made)}
        verdict, mended = self._settle(batch)
        self._record(iteration, verdict.rejected, feed=False)
        kept = Counter(origin.get(u.name, u.origin) for u in verdict.accepted)
        self.suite.units = [replace(u, origin=origin.get(u.name, u.origin)) if u in verdict.accepted else u
                            for u in self.suite.units]
        self.trace.append(f"iteration {iteration}: {len(clones)} clone(s) of kept tests aimed at uncovered siblings, "
                          f"{kept['clone']} kept; {len(retyped)} failed test(s) retyped, {kept['retyped']} kept; "
                          f"{len(typed)} test(s) given typed arguments, {kept['typed']} kept; "
                          f"{len(variants)} variant(s) with an input changed, {kept['variant']} kept "
                          f"({mended['observed']} with observed expected values)")
        return {"clones": len(clones), "clones_kept": kept["clone"], "retyped": len(retyped),
                "retyped_kept": kept["retyped"], "typed": len(typed), "typed_kept": kept["typed"],
                "variants": len(variants), "variants_kept": kept["variant"]}, verdict

    def _settle(self, candidates: list[Unit]) -> tuple[Verdict, Counter[str]]:
        """Judge ``candidates``, mend the failed ones (:meth:`_second_chance`) and take the kept
        suite's coverage; the verdict and how many mends were kept, by origin."""
        verdict = self.judge.judge(self.suite, candidates)
        mended = self._second_chance(candidates, verdict)
        if verdict.measure is not None:
            self.measure = verdict.measure
        return verdict, mended

    def _fresh(self, candidates: list[Unit]) -> tuple[list[Unit], list[Rejection]]:
        """The candidates to judge, and rejections of those that repeat a test judged earlier in
        this job (:mod:`fleet.trm.repeats`); every candidate is judged when ``repeats`` is ablated."""
        if "repeats" in self.cfg.ablate:
            return candidates, []
        return self.repeats.split(candidates, lambda unit: self.suite.support_of([unit]))

    def _iterate(self, iteration: int) -> dict[str, Any]:
        """One refinement round: attempts on different foci while :meth:`_another` allows, then the
        suite is scored once."""
        started, before = time.monotonic(), self.quality
        steps = [self._attempt(iteration)]
        while self._another(len(steps), before):
            steps.append(self._attempt(iteration))
        self.quality = max(self.quality, self._score())
        self.trace.append(f"iteration {iteration}: quality {before:.3f} → {self.quality:.3f}")
        total = {key: sum(s[key] for s in steps) for key in
                 ("kept", "rejected", "tokens_in", "tokens_out", "prompt_seconds", "cached_tokens", "sandbox_runs",
                  "repeats", *AMPLIFIED)}
        return {
            "iteration": iteration, "focus": "; ".join(s["focus"] for s in steps), "quality": self.quality,
            "improvement": round(self.quality - before, 4), "line": round(self.measure.line_rate, 4),
            "branch": round(self.measure.branch_rate, 4), "tests_total": len(self.suite.units), **total,
            "prompt_seconds": round(total["prompt_seconds"], 3), "seconds": round(time.monotonic() - started, 3),
            "attempts": [{k: v for k, v in s.items() if k != "reply"} for s in steps],
            "reply": "\n\n".join(s["reply"] for s in steps),
        }

    def _score(self) -> float:
        return quality(self.measure, [u.asserts for u in self.suite.units])

    def _another(self, made: int, before: float) -> bool:
        """Whether an iteration that made ``made`` attempts makes one more: never once a budget is
        spent or nothing is left uncovered; always below ``prompts_per_iteration``; below
        ``max_prompts_per_iteration`` while quality has not yet risen by ``quality_threshold`` over
        ``before`` (its value when the iteration began). So an iteration tries other foci before it
        counts towards the plateau stop."""
        cfg = self.cfg
        if self._spent() or not self._gaps():
            return False
        if made < cfg.prompts_per_iteration:
            return True
        stalled = self._score() - before < cfg.quality_threshold
        return stalled and made < cfg.max_prompts_per_iteration

    def _second_chance(self, candidates: list[Unit], verdict: Verdict) -> Counter[str]:
        """Judge once more, in one batch, the failed tests that can be mended: with a misspelt
        attribute corrected (:mod:`fleet.trm.renames`), else with observed expected values
        (:mod:`fleet.trm.oracle`), else expecting the exception the code raised, else cut before
        the failing statement (both :mod:`fleet.trm.truncate`). A test with observed values that
        still fails further on is judged a third time, mended the same way (:meth:`_raise_or_cut`).
        Merges into ``verdict``; returns how many were kept, by origin."""
        ablate = self.cfg.ablate
        details = {r.name: r.detail for r in verdict.rejected if r.reason in MENDABLE_REASONS}
        failed = [u for u in candidates if u.name in details]
        renamed = [] if "hints" in ablate else self._renamed(failed, details)
        mended = {u.name for u in renamed}
        fixed = [] if "oracle" in ablate else oracle.repair(self.sandbox, self.suite, self.ctx,
                                                             [u for u in failed if u.name not in mended])
        mended |= {u.name for u in fixed}
        batch = renamed + fixed + self._raise_or_cut(verdict, {u.name for u in failed} - mended)
        if not batch:
            return Counter()
        verdict.runs += oracle.PROBE_RUNS if fixed else 0
        second = self._rejudge(batch, verdict)
        again = [replace(u, origin="observed") for u in self._raise_or_cut(second, {u.name for u in fixed})]
        third = self._rejudge(again, verdict) if again else Verdict()
        return Counter(u.origin for u in second.accepted + third.accepted)

    def _raise_or_cut(self, verdict: Verdict, names: set[str]) -> list[Unit]:
        """The failed units of ``names`` in ``verdict`` expecting the exception they raised, else
        cut before their failure (each mend unless ablated); one per name."""
        ablate = self.cfg.ablate
        expecting = [] if "raises" in ablate else [u for u in verdict.expecting if u.name in names]
        taken = {u.name for u in expecting}
        cuts = [] if "cut" in ablate else [u for u in verdict.cut if u.name in names - taken]
        return expecting + cuts

    def _rejudge(self, units: list[Unit], verdict: Verdict) -> Verdict:
        """Judge mended ``units`` and merge the outcome into ``verdict``: kept ones leave its
        rejections, failures join them (a mend that adds no coverage is not reported again)."""
        again = self.judge.judge(self.suite, units)
        verdict.accepted += again.accepted
        verdict.rejected += [r for r in again.rejected if r.reason != "no-new-coverage"]
        verdict.runs += again.runs
        verdict.measure = again.measure or verdict.measure
        kept = {u.name for u in again.accepted}
        verdict.rejected = [r for r in verdict.rejected if r.name not in kept]
        return again

    def _renamed(self, failed: list[Unit], details: dict[str, str]) -> list[Unit]:
        """The failed units whose error names a misspelt attribute, corrected in the unit or in the
        support it uses; the corrections are learned for later replies."""
        self.renames.learn(list(details.values()))
        found = {name: pair for name, pair in ((n, misspelling(d)) for n, d in details.items()) if pair}
        mapping = dict(found.values())
        touched = self.suite.rewrite_support(lambda source: rewrite(source, mapping)) if mapping else set()
        out = []
        for unit in (u for u in failed if u.name in found):
            fixed = Renames.mend(unit, *found[unit.name])
            if fixed is None and self.suite.needs_any(unit, touched):
                fixed = replace(unit, origin="renamed")
            if fixed is not None:
                out.append(fixed)
        return out

    # -- stopping ----------------------------------------------------------------------------
    def _stop_reason(self) -> str | None:
        cfg = self.cfg
        if self.quality >= cfg.convergence_threshold:
            return "converged"
        recent = [h["improvement"] for h in self.history[-cfg.patience :]]
        stalled = len(recent) == cfg.patience and all(i < cfg.quality_threshold for i in recent)
        if stalled and self.quality > 0:
            return "plateau"
        spent = self._spent()
        if spent:
            return spent
        if not self._gaps() and self.suite.units:
            return "fully-covered"
        return None

    def _spent(self) -> str | None:
        """``token-budget`` or ``time-budget`` once the job's budget is used up, else None."""
        if self.cfg.max_tokens and self.tokens_in + self.tokens_out >= self.cfg.max_tokens:
            return "token-budget"
        if time.monotonic() - self.started >= self.cfg.time_budget:
            return "time-budget"
        return None

    def _gaps(self) -> bool:
        return bool(self.measure.missing_lines or self.measure.missing_branches)

    def execute(self) -> dict[str, Any]:
        baseline = self._baseline()
        self.measure = baseline
        reason = "max-iterations"
        for iteration in range(1, self.cfg.max_iterations + 1):
            self.history.append(self._iterate(iteration))
            step = {k: v for k, v in self.history[-1].items() if k != "reply"}
            self.progress({**step, "of": self.cfg.max_iterations})
            stop = self._stop_reason()
            if stop:
                reason = stop
                break
        return self._report(baseline, reason)

    def _baseline(self) -> Measure:
        """Coverage before: the target imported by an empty test module (import-time lines only)."""
        run = self.sandbox.run(f"import {self.job.module}\n")
        broken = run.outcomes.get(COLLECTION)
        if broken is not None or run.timed_out or run.returncode != NO_TESTS_COLLECTED:
            detail = trim_error(broken.message if broken else "timed out" if run.timed_out else
                                f"the interpreter exited with code {run.returncode} while importing it "
                                "(os._exit, a crash or a signal)", 1500)
            raise TargetImportError(f"{self.job.module} cannot be imported on this agent, so no test can run: {detail}. "
                                    "Install its dependencies where the agents run, or bundle them with --project.")
        lines = run.lines_by_context.get("", set())
        return self.base.with_covered(lines, run.arcs_by_context.get("", set()))

    def _final_check(self) -> tuple[str, int]:
        """The final module and how many of ``reruns`` runs passed every kept test. Rendered with
        the model's imports, or, if that does not pass every run, without them when that does better."""
        if not self.suite.units:
            return "", 0
        best: tuple[str, int] = ("", -1)
        for model_imports in (True, False):
            module = self.suite.render(self.suite.units, self.ctx, model_imports=model_imports)
            passed = sum(
                all(run.outcomes.get(u.name) is not None and run.outcomes[u.name].passed for u in self.suite.units)
                for run in (self.sandbox.run(module) for _ in range(self.cfg.reruns))
            )
            best = max(best, (module, passed), key=lambda mp: mp[1])
            if passed == self.cfg.reruns:
                break
        return best

    def _mutation(self, module: str, passed: int) -> dict[str, Any] | None:
        """Mutation score of the final suite; None when off, or when the suite itself does not pass
        every run (each mutant would count as killed)."""
        if not module or self.cfg.mutation_max_mutants <= 0:
            return None
        if passed < self.cfg.reruns:
            self.trace.append(f"mutation: not measured, the final suite passed {passed}/{self.cfg.reruns} runs")
            return None
        result = mutation_score(self.sandbox, module, self.source, max_mutants=self.cfg.mutation_max_mutants,
                                budget_seconds=self.cfg.mutation_budget)
        self.trace.append(f"mutation: {result.killed}/{result.tested} killed ({result.generated} possible)")
        return result.as_dict()

    def _report(self, baseline: Measure, reason: str) -> dict[str, Any]:
        module, passed = self._final_check()
        mutation = self._mutation(module, passed)
        verified = (f"verified: each test passed {passed}/{self.cfg.reruns} runs" if passed == self.cfg.reruns else
                    f"NOT verified: the suite passed {passed}/{self.cfg.reruns} final runs")
        header = f'"""Tests for {self.job.module}, generated by the test-generation fleet and {verified}."""\n'
        return {
            "job_id": self.job.job_id,
            "module": self.job.module,
            "status": "ok" if self.suite.units else "no-tests",
            "model": {"id": self.engine.backend.model_id, "sha256": self.engine.backend.sha256},
            "test_module": header + module if module else "",
            "tests_kept": len(self.suite.units),
            "tests": [{"name": u.name, "asserts": u.asserts, "oracle": u.origin} for u in self.suite.units],
            "rejected": self.rejected,
            "rejected_by_reason": dict(Counter(r["reason"] for r in self.rejected)),
            "reruns": self.cfg.reruns,
            "final_runs_passed": passed,
            "coverage_before": baseline.as_dict(),
            "coverage_after": self.measure.as_dict(),
            "missing": {"lines": self.measure.missing_lines, "branches": [list(a) for a in self.measure.missing_branches]},
            "target": {"path": self.job.target_path, "source": self.source},
            "quality": self.quality,
            "quality_formula": FORMULA,
            "strategy": self.strategy.name,
            "mutation": mutation,
            "iterations": self.history,
            "converged": reason in ("converged", "fully-covered"),
            "stop_reason": reason,
            "trace": self.trace,
            "tokens": {"in": self.tokens_in, "out": self.tokens_out},
            "seconds": round(time.monotonic() - self.started, 3),
            "sandbox": self.sandbox.facts(),
        }
