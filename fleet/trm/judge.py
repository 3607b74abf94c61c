"""Judge candidate tests one by one against the suite kept so far, by running them.

1. Run kept + candidates once under coverage (one context per test). A collection error is
   retried without the imports the reply added, then with only repaired imports. If the module
   still does not load (a crash, a hang pytest-timeout cannot cut, a collection error), the one
   candidate that causes it is sought by halving the batch; it is rejected and the others are
   judged without it.
2. A failing candidate is rejected with a reason from its error; a passing one is accepted only
   if it covers a line or branch arc the suite (and the candidates accepted before it, best
   first) did not.
3. The suite with the accepted candidates is run ``reruns`` times; a candidate that fails in any
   run is rejected as flaky, and if an earlier-kept test fails, the new candidates are rejected as
   breaking it. Runs repeat until one set passes all reruns.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field

from fleet.analysis import source_lines
from fleet.junit import COLLECTION, Outcome
from fleet.sandbox import Measure, RunResult, Sandbox
from fleet.trm.divergence import divergence
from fleet.trm.facts import without_hints
from fleet.trm.parse import Rejection, Unit
from fleet.trm.repair import Context
from fleet.trm.suite import Suite
from fleet.trm.truncate import before_failure, expecting_failure

_REASONS = (
    ("blocked in the fleet sandbox", "sandbox-violation"),
    ("Network is unreachable", "sandbox-violation"),
    ("from pytest-timeout", "timeout"),  # pytest-timeout's failure: "Timeout (>10.0s) from pytest-timeout."
    ("Failed: Timeout >", "timeout"),  # the same, from pytest-timeout before 2.0
    ("ModuleNotFoundError", "import-error"),
    ("ImportError", "import-error"),
    ("NameError", "name-error"),
)
_ASSERTION = ("AssertionError", "assert ")  # only at the start of the first line: the test's own source follows


LOAD_FAILED = "the test module failed to load"  # every candidate of the run rejected alike
CULPRIT = "the test module fails to load with this test alone"  # found by halving the batch
MENDABLE_REASONS = {"assertion", "exception"}  # failures the oracle or a cut may mend


@dataclass
class Verdict:
    """Outcome of judging one batch: what was accepted and rejected, and the suite's coverage."""

    accepted: list[Unit] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    measure: Measure | None = None
    runs: int = 0
    module: str = ""
    cut: list[Unit] = field(default_factory=list)  # failing candidates cut before their failure
    expecting: list[Unit] = field(default_factory=list)  # failing candidates expecting the exception raised


def reason_of(outcome: Outcome, timed_out: bool = False) -> str:
    """Rejection reason from an outcome's status and message."""
    if timed_out:
        return "timeout"
    if outcome.status == "skipped":
        return "skipped"
    message = without_hints(outcome.message)  # a quoted source line must not decide the reason
    for needle, reason in _REASONS:
        if needle in message:
            return reason
    return "assertion" if message.startswith(_ASSERTION) else "exception"


def trim_error(message: str, limit: int) -> str:
    """The informative lines of a pytest failure: the summary and the ``E`` lines, each once (an
    ``E`` line that repeats the summary is dropped), capped at ``limit`` characters."""
    lines = message.splitlines()
    keep = [ln for ln in lines[:1] + [ln for ln in lines if ln.startswith("E ")] if ln.strip()]
    unique = dict.fromkeys(ln.removeprefix("E").strip() for ln in keep)
    text = "\n".join(unique) or message
    return text[:limit]


def _unit_of_context(context: str) -> str | None:
    """pytest-cov's ``tests/test_generated.py::TestX::test_y[1]|setup`` → ``TestX`` (the unit);
    setup and teardown phases count for their test, so fixture work is credited correctly."""
    nodeid = context.rsplit("|", 1)[0]
    parts = nodeid.split("::")
    if len(parts) < 2 or not parts[0].endswith("test_generated.py"):
        return None
    return parts[1].split("[", 1)[0]


_PerUnit = dict[str, tuple[set[int], set[tuple[int, int]]]]


def _coverage_by_unit(run: RunResult) -> _PerUnit:
    out: _PerUnit = {}
    for context, lines in run.lines_by_context.items():
        unit = _unit_of_context(context)
        if unit is None:
            continue
        old_lines, old_arcs = out.setdefault(unit, (set(), set()))
        old_lines |= lines
        old_arcs |= run.arcs_by_context.get(context, set())
    return out


def covered(run: RunResult, base: Measure) -> Measure:
    """The target coverage of a whole run (all contexts, import time included)."""
    lines = set().union(*run.lines_by_context.values()) if run.lines_by_context else set()
    arcs = set().union(*run.arcs_by_context.values()) if run.arcs_by_context else set()
    return base.with_covered(lines, arcs)


class Judge:
    """Runs batches of candidates in one sandbox against one suite."""

    def __init__(self, sandbox: Sandbox, ctx: Context, base: Measure, *, reruns: int, max_error_chars: int,
                 per_test: bool = True, source: str = "") -> None:
        self.sandbox, self.ctx, self.base = sandbox, ctx, base
        self.reruns, self.max_error_chars, self.per_test = reruns, max_error_chars, per_test
        self.source_lines = source_lines(source)

    def _first_run(self, suite: Suite, units: list[Unit], verdict: Verdict) -> RunResult:
        """Run kept + candidates once. If the module has a collection error, the imports the reply
        added are dropped for good (every later run, the reruns and the final module included, uses
        the suite's imports) and it is run again; failing that, once more without any model import.
        A run that crashed or timed out without reporting is not retried (imports do not cause that)."""
        module = suite.render(units, self.ctx)
        run = self.sandbox.run(module)
        verdict.runs += 1
        if COLLECTION in run.outcomes and suite.drop_fresh_imports():
            module = suite.render(units, self.ctx)
            run = self.sandbox.run(module)
            verdict.runs += 1
        if COLLECTION in run.outcomes and suite.imports:
            module = suite.render(units, self.ctx, model_imports=False)
            run = self.sandbox.run(module)
            verdict.runs += 1
        verdict.module = module
        return run

    def _reject_all(self, units: list[Unit], run: RunResult, verdict: Verdict, why: str = LOAD_FAILED) -> None:
        """The test module did not even load (collection error, crash or timeout): every candidate
        is rejected with the module-level error, classified like a test's."""
        silent = (f"no result within the sandbox's {self.sandbox.limits.timeout:g} s" if run.timed_out
                  else f"pytest ended with exit code {run.returncode} without a result")
        error = run.outcomes.get(COLLECTION) or Outcome("error", run.output[-2000:])
        error = Outcome(error.status, error.message or run.output[-2000:] or silent)
        reason = reason_of(error, run.timed_out)
        detail = trim_error(error.message, self.max_error_chars)
        verdict.rejected += [Rejection(u.name, reason, f"{why}: {detail}") for u in units]

    def _culprit(self, suite: Suite, candidates: list[Unit], verdict: Verdict) -> tuple[Unit, RunResult] | None:
        """The candidate that stops kept + ``candidates`` loading, and its lone run, found by
        halving: of the two halves, the first that does not load with the kept suite is halved
        again, so one culprit among n costs at most 2⌈log2 n⌉ runs. None when both halves load
        (the batch fails only as a whole)."""
        part, run = candidates, None
        while len(part) > 1:
            half = len(part) // 2
            for piece in (part[:half], part[half:]):
                trial = self.sandbox.run(suite.render(suite.units + piece, self.ctx))
                verdict.runs += 1
                if not trial.collected:
                    part, run = piece, trial
                    break
            else:
                return None
        return (part[0], run) if run is not None else None

    def _path(self, unit: Unit, per_unit: _PerUnit, kept: Measure) -> str:
        """Where ``unit``'s path left the code that the ``kept`` suite misses
        (:mod:`fleet.trm.divergence`), or ""."""
        ran, took = per_unit.get(unit.name, (set(), set()))
        found = divergence(ran, took, kept.missing_branches, kept.statements, set(kept.missing_lines))
        return found.describe(self.source_lines) if found else ""

    def _reject_failed(self, unit: Unit, outcome: Outcome, verdict: Verdict, path: str = "") -> None:
        """Record a candidate that failed its first run, and its mends if any: cut before the
        failure, and expecting the exception it raised in the code under test."""
        reason = reason_of(outcome)
        verdict.rejected.append(Rejection(unit.name, reason, trim_error(outcome.message, self.max_error_chars), path))
        if reason not in MENDABLE_REASONS:
            return
        cut = before_failure(unit, verdict.module, outcome.message)
        if cut is not None:
            verdict.cut.append(cut)
        expecting = expecting_failure(unit, verdict.module, outcome.message, self._nameable)
        if expecting is not None:
            verdict.expecting.append(expecting)

    def _nameable(self, name: str) -> bool:
        """An exception class a test can name: a builtin, or a name of the target or its package."""
        builtin = getattr(builtins, name, None)
        if isinstance(builtin, type) and issubclass(builtin, BaseException):
            return True
        return name in self.ctx.analysis.names or name in self.ctx.elsewhere

    def _select(self, suite: Suite, candidates: list[Unit], run: RunResult, verdict: Verdict) -> list[Unit]:
        """The passing candidates that add coverage, best first; the others are rejected, each
        with where its path left the code the kept suite misses."""
        per_unit = _coverage_by_unit(run)
        lines: set[int] = set(run.lines_by_context.get("", set()))  # import time: covered by any suite
        arcs: set[tuple[int, int]] = set(run.arcs_by_context.get("", set()))
        for unit in suite.units:
            got = per_unit.get(unit.name, (set(), set()))
            lines |= got[0]
            arcs |= got[1]
        branches = self.base.branches
        passing = []
        kept = self.base.with_covered(lines, arcs)
        for unit in candidates:
            outcome = run.outcomes.get(unit.name, Outcome("error", "the test did not run"))
            if outcome.passed:
                passing.append(unit)
            else:
                self._reject_failed(unit, outcome, verdict, self._path(unit, per_unit, kept))

        def gain(u: Unit) -> int:
            ul, ua = per_unit.get(u.name, (set(), set()))
            return len((ul & self.base.statements) - lines) + len((ua & branches) - arcs)

        accepted, idle = [], []
        for unit in sorted(passing, key=gain, reverse=True):
            if gain(unit) > 0:
                accepted.append(unit)
                ul, ua = per_unit.get(unit.name, (set(), set()))
                lines |= ul
                arcs |= ua
            else:
                idle.append(unit)
        kept = self.base.with_covered(lines, arcs) if accepted else kept
        verdict.rejected += [Rejection(u.name, "no-new-coverage", "covers nothing the kept tests miss",
                                       self._path(u, per_unit, kept)) for u in idle]
        return accepted

    def _whole(self, candidates: list[Unit], run: RunResult, verdict: Verdict) -> list[Unit]:
        """Acceptance switched off (ablation): a reply is kept or dropped as a whole."""
        failed = [u for u in candidates if not run.outcomes.get(u.name, Outcome("error")).passed]
        if not failed:
            return list(candidates)
        detail = f"{failed[0].name} failed in the same reply"
        verdict.rejected += [Rejection(u.name, "batch-failed", detail) for u in candidates]
        return []

    def _rerun(self, suite: Suite, units: list[Unit], verdict: Verdict) -> tuple[str, dict[str, Outcome], RunResult | None]:
        """Run ``units`` together ``reruns`` times; the module, the first failure of each failing
        unit, and the last run."""
        module = suite.render(units, self.ctx)
        failing: dict[str, Outcome] = {}
        last = None
        for _ in range(self.reruns):
            last = self.sandbox.run(module)
            verdict.runs += 1
            for unit in units:
                outcome = last.outcomes.get(unit.name, Outcome("error", "the test did not run"))
                if not outcome.passed:
                    failing.setdefault(unit.name, outcome)
        return module, failing, last

    def _stabilise(self, suite: Suite, accepted: list[Unit], verdict: Verdict) -> RunResult | None:
        """Rerun kept + accepted until one set passes ``reruns`` times in a row; return its last run.

        A new test that fails a rerun is rejected as flaky. If only earlier-kept tests fail, the new
        tests broke them: all new tests are rejected as breaking others. Earlier-kept tests that
        still fail with no new test beside them are dropped as flaky (recorded)."""
        while True:
            units = suite.units + accepted
            if not units:
                return None
            module, failing, last = self._rerun(suite, units, verdict)
            if not failing:
                verdict.module = module
                return last
            new_failing = [u for u in accepted if u.name in failing]
            old_failing = [u for u in suite.units if u.name in failing]
            if new_failing:
                drop, reason = new_failing, "flaky"
            elif accepted:
                drop, reason = list(accepted), "breaks-others"
            else:
                drop, reason = old_failing, "flaky"
            for unit in drop:
                cause = failing.get(unit.name) or failing[old_failing[0].name]
                detail = trim_error(cause.message, self.max_error_chars)
                if reason == "breaks-others":
                    detail = f"{old_failing[0].name} fails beside it: {detail}"
                verdict.rejected.append(Rejection(unit.name, reason, detail))
            dropped = {u.name for u in drop}
            accepted[:] = [u for u in accepted if u.name not in dropped]
            suite.units = [u for u in suite.units if u.name not in dropped]

    def judge(self, suite: Suite, candidates: list[Unit]) -> Verdict:
        """Judge ``candidates`` against ``suite``; accepted ones are appended to ``suite.units``."""
        verdict = Verdict()
        if candidates:
            self._judge(suite, candidates, verdict, isolate=self.per_test)
        return verdict

    def _judge(self, suite: Suite, candidates: list[Unit], verdict: Verdict, *, isolate: bool) -> None:
        """Judge into ``verdict``. A batch that does not load loses only its culprit when
        ``isolate`` and one is found (:meth:`_culprit`; one per batch), else all its candidates."""
        run = self._first_run(suite, suite.units + candidates, verdict)
        if not run.collected:
            found = self._culprit(suite, candidates, verdict) if isolate and len(candidates) > 1 else None
            if found is None:
                self._reject_all(candidates, run, verdict)
                return
            culprit, alone = found
            self._reject_all([culprit], alone, verdict, CULPRIT)
            self._judge(suite, [u for u in candidates if u is not culprit], verdict, isolate=False)
            return
        accepted = self._select(suite, candidates, run, verdict) if self.per_test else self._whole(candidates, run, verdict)
        final = self._stabilise(suite, accepted, verdict) if accepted else None
        suite.units.extend(accepted)
        verdict.accepted += accepted
        if final is not None:
            verdict.measure = covered(final, self.base)
