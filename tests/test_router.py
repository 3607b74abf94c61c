"""fleet.complexity, fleet.llm.breaker and fleet.llm.router: pure Python, fake backends, fake clock."""

from __future__ import annotations

import json
import threading
import time

import pytest

from fleet.complexity import Cutoffs, Level, measure
from fleet.config import Settings, load
from fleet.errors import ConfigError, FleetError
from fleet.jobs import Job
from fleet.llm.base import Completion, Message, Sampling, Usage
from fleet.llm.breaker import CircuitBreaker
from fleet.llm.router import (
    STRATEGIES, Decision, NoProvider, RoutedBackend, RouterSettings, decide, make_breakers, route, trm_suitable,
)
from fleet.llm.scripted import ScriptedBackend
from tests.clock import FakeClock

MESSAGES = [Message("user", "write tests")]
TARGET = "pkg/mod.py"
MARKER = "# fleet: private"


class FakeBackend:
    """Answers (10 prompt, 5 completion tokens, ``cpu`` seconds) or raises while ``down``."""

    def __init__(self, name: str, *, down: bool = False, cpu: float = 0.0) -> None:
        self.name = name
        self.error = f"{name} is down"
        self.model_id = f"{name}-model"
        self.sha256 = name[0] * 64
        self.down = down
        self.cpu = cpu
        self.calls = 0

    def complete(self, messages, *, prefill, stop, sampling, halt=None) -> Completion:
        self.calls += 1
        if self.down:
            raise ConnectionError(self.error)
        return Completion(f"reply from {self.name}", 10, 5, 0.1, 0.0, provider=self.name, cpu_seconds=self.cpu)


def ask(backend: RoutedBackend) -> Completion:
    return backend.complete(MESSAGES, prefill="", stop=[], sampling=Sampling())


def branchy(n: int) -> str:
    """``n`` functions of 4 lines and McCabe 2 each: score = 2n + 4n/50 = 2.08·n."""
    return "".join(f"def f{i}(x):\n    if x > {i}:\n        return {i}\n    return -{i}\n" for i in range(n))


# n → level under the default cut-offs (2.08, 12.48, 41.6, 93.6)
SOURCES = {Level.SIMPLE: branchy(1), Level.MODERATE: branchy(6), Level.COMPLEX: branchy(20),
           Level.VERY_COMPLEX: branchy(45)}


def job(source: str, *, path: str = TARGET, extra: dict[str, str] | None = None) -> Job:
    return Job(module=path.removesuffix(".py").replace("/", "."), target_path=path,
               files={path: source, **(extra or {})})


# --- complexity --------------------------------------------------------------------------------


def test_tiny_module_is_simple_with_its_facts():
    c = measure("def add(a, b):\n    return a + b\n", Cutoffs())
    assert (c.lines, c.cyclomatic, c.max_cyclomatic, c.classes, c.functions, c.max_nesting) == (2, 1, 1, 0, 1, 1)
    assert c.score == pytest.approx(1 + 2 / 50)
    assert c.level is Level.SIMPLE


def test_branchy_module_with_classes_is_very_complex():
    methods = "".join(
        f"    def m{i}(self, xs):\n"
        f"        for x in xs:\n"
        f"            if x > {i} and x < 100:\n"
        f"                return x\n"
        f"            elif x == 0:\n"
        f"                continue\n"
        f"        return None\n"
        for i in range(4)
    )
    source = "".join(f"class C{k}:\n{methods}\n" for k in range(6))
    c = measure(source, Cutoffs())
    # each method: 1 + for + if + and + elif = 5; 24 methods
    assert (c.cyclomatic, c.max_cyclomatic, c.classes, c.functions, c.max_nesting) == (120, 5, 6, 24, 4)
    assert c.level is Level.VERY_COMPLEX


@pytest.mark.parametrize("level", list(Level))
def test_generated_sources_have_the_intended_level(level):
    assert measure(SOURCES[level], Cutoffs()).level is level


def test_max_nesting_counts_compound_statements_and_keeps_elif_at_its_if_depth():
    source = (
        "class A:\n"                          # 1
        "    def m(self, xs):\n"              # 2
        "        for x in xs:\n"              # 3
        "            if x:\n"                 # 4
        "                pass\n"
        "            elif x is None:\n"       # 4 (elif)
        "                while True:\n"       # 5
        "                    break\n"
        "        return xs\n"
        "def f():\n"                          # 1
        "    with open('x') as fh:\n"         # 2
        "        return fh\n"
    )
    assert measure(source, Cutoffs()).max_nesting == 5


def test_max_nesting_of_long_elif_chain_is_flat():
    chain = "def f(x):\n    if x == 0:\n        return 0\n" + "".join(
        f"    elif x == {i}:\n        return {i}\n" for i in range(1, 8))
    assert measure(chain, Cutoffs()).max_nesting == 2


@pytest.mark.parametrize("source, depth", [
    ("def g(v):\n    match v:\n        case 1:\n            if v:\n                pass\n", 3),
    ("try:\n    pass\nexcept ValueError:\n    for i in []:\n        pass\nfinally:\n    pass\n", 2),
    ("x = 1\n", 0),
])
def test_max_nesting_looks_into_match_cases_and_handlers(source, depth):
    assert measure(source, Cutoffs()).max_nesting == depth


def test_score_formula_by_hand():
    source = (
        "class Box:\n"
        "    def get(self, k):\n"
        "        if k and self.ok:\n"
        "            for i in k:\n"
        "                if i:\n"
        "                    return i\n"
        "        return None\n"
    )
    c = measure(source, Cutoffs())
    # McCabe 1 + if + and + for + if = 5; nesting class, def, if, for, if = 5; 7 lines
    assert (c.cyclomatic, c.classes, c.max_nesting, c.lines) == (5, 1, 5, 7)
    # 5 + 2·1 + 3·(5 − 2) + 7/50
    assert c.score == pytest.approx(16.14)
    assert c.level is Level.MODERATE
    assert c.as_dict()["score"] == 16.14 and c.as_dict()["level"] == "moderate"
    json.dumps(c.as_dict())


def test_nested_function_is_counted_once_in_cyclomatic():
    source = (
        "def outer(x):\n"
        "    def inner(y):\n"
        "        if y:\n"
        "            return 1\n"
        "        return 0\n"
        "    if x:\n"
        "        return inner(x)\n"
        "    return 0\n"
    )
    c = measure(source, Cutoffs())
    assert (c.cyclomatic, c.max_cyclomatic, c.functions) == (3, 3, 2)


@pytest.mark.parametrize("score, level", [
    (0.0, Level.SIMPLE), (7.99, Level.SIMPLE), (8.0, Level.MODERATE), (24.99, Level.MODERATE),
    (25.0, Level.COMPLEX), (79.99, Level.COMPLEX), (80.0, Level.VERY_COMPLEX), (500.0, Level.VERY_COMPLEX),
])
def test_cutoffs_are_the_lowest_score_of_each_level(score, level):
    assert Cutoffs().level(score) is level


def test_cutoffs_must_increase():
    with pytest.raises(ValueError, match="moderate < complex"):
        Cutoffs(moderate=30.0, complex=25.0)


# --- trm_suitable ------------------------------------------------------------------------------


@pytest.mark.parametrize("level, refine, expected", [
    (Level.SIMPLE, False, False), (Level.MODERATE, False, True), (Level.COMPLEX, False, True),
    (Level.VERY_COMPLEX, False, False), (Level.SIMPLE, True, True), (Level.VERY_COMPLEX, True, True),
])
def test_trm_suitable_between_the_extremes_or_on_request(level, refine, expected):
    assert trm_suitable(level, refine) is expected


# --- settings ----------------------------------------------------------------------------------


def test_settings_defaults_match_default_toml_and_a_missing_section():
    assert RouterSettings.from_settings(load(environ={})) == RouterSettings()
    assert RouterSettings.from_settings(Settings(values={}, sources={})) == RouterSettings()
    assert RouterSettings().cutoffs == Cutoffs()


def test_settings_from_the_environment():
    env = {"FLEET_ROUTER_STRATEGY": "local-only", "FLEET_ROUTER_PRIVATE_GLOBS": "secret/*, *_keys.py"}
    cfg = RouterSettings.from_settings(load(environ=env))
    assert cfg.strategy == "local-only" and cfg.private_globs == ("secret/*", "*_keys.py")


def test_settings_read_and_converted_from_the_router_section():
    values = {"router": {"strategy": "quality-first", "private_globs": ["secret/*"], "moderate": 5,
                         "breaker_failures": 2, "refine_request": True}}
    cfg = RouterSettings.from_settings(Settings(values=values, sources={}))
    assert cfg.strategy == "quality-first" and cfg.private_globs == ("secret/*",)
    assert cfg.cutoffs == Cutoffs(moderate=5.0) and isinstance(cfg.moderate, float)
    assert cfg.breaker_failures == 2 and cfg.refine_request is True


def test_unknown_strategy_lists_the_choices():
    with pytest.raises(ConfigError) as err:
        RouterSettings.from_settings(Settings(values={"router": {"strategy": "cheapest"}}, sources={}))
    assert "'cheapest'" in str(err.value) and all(s in str(err.value) for s in STRATEGIES)


@pytest.mark.parametrize("section, words", [
    ({"stratgy": "local-only"}, "stratgy"),
    ({"breaker_failures": "3"}, "router.breaker_failures must be int"),
    ({"private_globs": "secret/*"}, "router.private_globs"),
    ({"refine_request": 1}, "router.refine_request must be bool"),
    ({"complex": 5.0}, "cut-offs"),
    ({"breaker_reset": 0}, "breaker_reset > 0"),
])
def test_bad_router_settings_raise_config_error(section, words):
    with pytest.raises(ConfigError, match=words):
        RouterSettings.from_settings(Settings(values={"router": section}, sources={}))


# --- decide ------------------------------------------------------------------------------------

EXPECTED = {
    "cost-optimized": {Level.SIMPLE: "local", Level.MODERATE: "local", Level.COMPLEX: "local",
                       Level.VERY_COMPLEX: "remote"},
    "quality-first": {Level.SIMPLE: "local", Level.MODERATE: "remote", Level.COMPLEX: "remote",
                      Level.VERY_COMPLEX: "remote"},
    "local-only": dict.fromkeys(Level, "local"),
    "cloud-only": dict.fromkeys(Level, "remote"),
}


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("level", list(Level))
def test_decide_by_strategy_and_level(strategy, level):
    d = decide(job(SOURCES[level]), RouterSettings(strategy=strategy), remote_available=True)
    assert d.provider == EXPECTED[strategy][level]
    assert d.strategy == strategy and strategy in d.reason
    assert d.complexity["level"] == level.value and d.private is False
    assert d.trm_suitable is trm_suitable(level, False)
    assert d.refine is (d.provider == "local" or trm_suitable(level, False))  # local jobs always refine


def test_decide_passes_refine_request_to_trm_suitable():
    d = decide(job(SOURCES[Level.SIMPLE]), RouterSettings(refine_request=True), remote_available=True)
    assert d.trm_suitable is True


@pytest.mark.parametrize("path, globs", [("secret/keys.py", ("secret/*",)), ("pkg/internal_mod.py", ("*internal*",))])
def test_private_glob_keeps_a_cloud_only_job_local(path, globs):
    d = decide(job(SOURCES[Level.VERY_COMPLEX], path=path), RouterSettings(strategy="cloud-only", private_globs=globs),
               remote_available=True)
    assert (d.provider, d.private) == ("local", True)
    assert f"{path} matches the private glob {globs[0]!r}" in d.reason


def test_non_matching_glob_leaves_the_strategy_in_charge():
    d = decide(job("x = 1\n"), RouterSettings(strategy="cloud-only", private_globs=("secret/*",)),
               remote_available=True)
    assert (d.provider, d.private) == ("remote", False)


def test_private_marker_keeps_a_cloud_only_job_local():
    d = decide(job(f"{MARKER}\nx = 1\n"), RouterSettings(strategy="cloud-only"), remote_available=True)
    assert (d.provider, d.private) == ("local", True)
    assert "private marker" in d.reason and "cloud-only" in d.reason


def test_private_marker_in_a_bundled_sibling_keeps_the_job_local():
    d = decide(job("x = 1\n", extra={"pkg/keys.py": f"    {MARKER}  \nK = 2\n"}), RouterSettings(strategy="cloud-only"),
               remote_available=True)
    assert (d.provider, d.private) == ("local", True) and "pkg/keys.py" in d.reason


def test_marker_must_be_a_whole_line_and_empty_marker_disables_it():
    quoted = job(f"NOTE = {MARKER!r}\n\n")
    assert decide(quoted, RouterSettings(strategy="cloud-only"), remote_available=True).provider == "remote"
    blank_lines = RouterSettings(strategy="cloud-only", private_marker="")
    assert decide(quoted, blank_lines, remote_available=True).provider == "remote"


@pytest.mark.parametrize("strategy, level", [("cloud-only", Level.SIMPLE), ("cost-optimized", Level.VERY_COMPLEX),
                                             ("quality-first", Level.COMPLEX)])
def test_remote_unavailable_runs_locally_and_says_so(strategy, level):
    d = decide(job(SOURCES[level]), RouterSettings(strategy=strategy), remote_available=False)
    assert d.provider == "local" and "no remote provider is configured" in d.reason


# --- breaker -----------------------------------------------------------------------------------


def open_breaker(failures: int = 3, reset: float = 60.0) -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock()
    breaker = CircuitBreaker(failures, reset, clock=clock)
    for _ in range(failures):
        breaker.record_failure()
    return breaker, clock


def test_breaker_opens_after_n_consecutive_failures():
    breaker = CircuitBreaker(3, 60.0, clock=FakeClock())
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    assert breaker.snapshot() == {"state": "open", "consecutive_failures": 3, "opened_at": 1000.0, "opens": 1}


def test_a_success_resets_the_consecutive_count():
    breaker = CircuitBreaker(3, 60.0, clock=FakeClock())
    for outcome in ("f", "f", "s", "f", "f"):
        breaker.record_failure() if outcome == "f" else breaker.record_success()
    assert breaker.state == "closed" and breaker.snapshot()["consecutive_failures"] == 2
    breaker.record_failure()
    assert breaker.state == "open"


def test_breaker_half_opens_after_reset_and_lets_exactly_one_probe():
    breaker, clock = open_breaker(reset=60.0)
    clock.advance(59.9)
    assert breaker.state == "open" and not breaker.allow()
    clock.advance(0.1)
    assert breaker.state == "half-open"
    assert breaker.allow() is True
    assert breaker.allow() is False and breaker.allow() is False
    assert breaker.state == "half-open"


def test_probe_success_closes():
    breaker, clock = open_breaker()
    clock.advance(60)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.snapshot() == {"state": "closed", "consecutive_failures": 0, "opened_at": None, "opens": 1}
    assert breaker.allow() and breaker.allow()


def test_probe_failure_reopens_for_another_period():
    breaker, clock = open_breaker(reset=60.0)
    clock.advance(60)
    assert breaker.allow()
    breaker.record_failure()
    snap = breaker.snapshot()
    assert (snap["state"], snap["opens"], snap["opened_at"]) == ("open", 2, 1060.0)
    clock.advance(59)
    assert not breaker.allow()
    clock.advance(1)
    assert breaker.allow()


def test_a_lost_probe_is_replaced_after_another_period():
    breaker, clock = open_breaker(reset=60.0)
    clock.advance(60)
    assert breaker.allow()
    clock.advance(59)
    assert not breaker.allow()
    clock.advance(1)
    assert breaker.allow() and not breaker.allow()


@pytest.mark.parametrize("failures, reset", [(0, 60.0), (3, 0.0)])
def test_breaker_rejects_bad_parameters(failures, reset):
    with pytest.raises(ValueError):
        CircuitBreaker(failures, reset)


def run_threads(count: int, target) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def body() -> None:
        try:
            barrier.wait()
            target()
        except BaseException as exc:  # collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=body) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_breaker_counts_stay_consistent_under_threads():
    breaker = CircuitBreaker(5, 3600.0)

    def hammer() -> None:
        for _ in range(300):
            breaker.allow()
            breaker.record_failure()
            breaker.state

    assert run_threads(16, hammer) == []
    snap = breaker.snapshot()
    assert (snap["consecutive_failures"], snap["opens"], snap["state"]) == (16 * 300, 1, "open")


def test_the_clock_is_read_under_the_lock():
    """White-box: every method reading the clock holds the breaker's lock (the GIL hides races)."""
    held: list[bool] = []
    breaker = CircuitBreaker(1, 60.0, clock=lambda: held.append(breaker._lock.locked()) or 0.0)
    breaker.allow()
    breaker.record_failure()
    breaker.state
    breaker.snapshot()
    assert held == [True] * 4


def test_concurrent_callers_get_exactly_one_probe():
    breaker, clock = open_breaker()
    clock.advance(60)
    granted: list[bool] = []
    lock = threading.Lock()

    def try_probe() -> None:
        allowed = breaker.allow()
        with lock:
            granted.append(allowed)

    assert run_threads(32, try_probe) == []
    assert sorted(granted) == [False] * 31 + [True]


# --- RoutedBackend -----------------------------------------------------------------------------


def local_decision(**overrides) -> Decision:
    settings = RouterSettings(strategy=overrides.pop("strategy", "cost-optimized"), **overrides)
    d = decide(job(SOURCES[Level.MODERATE]), settings, remote_available=True)
    assert d.provider == "local"
    return d


def routed(local: FakeBackend, remote: FakeBackend | None, clock: FakeClock | None = None,
           **overrides) -> RoutedBackend:
    breakers = make_breakers(RouterSettings(breaker_failures=3, breaker_reset=60.0), clock or FakeClock())
    return RoutedBackend(local, remote, breakers, local_decision(**overrides))


def test_primary_failing_falls_back_and_is_recorded():
    local, remote = FakeBackend("local", down=True), FakeBackend("remote")
    backend = routed(local, remote)
    assert backend.model_id == "local-model"
    assert ask(backend).text == "reply from remote"
    assert backend.model_id == "remote-model" and backend.sha256 == "r" * 64
    rec = backend.record()
    assert rec["decision"] == "local" and rec["provider_used"] == ["remote"] and rec["fallback_taken"] is True
    assert rec["fallback_errors"] == ["local: ConnectionError: local is down"]
    assert rec["breakers"]["local"]["consecutive_failures"] == 1 and rec["breakers"]["remote"]["state"] == "closed"
    json.dumps(rec)


def test_healthy_primary_serves_without_fallback():
    local, remote = FakeBackend("local"), FakeBackend("remote")
    backend = routed(local, remote)
    ask(backend)
    rec = backend.record()
    assert (remote.calls, rec["provider_used"], rec["fallback_taken"], rec["fallback_errors"]) == (0, ["local"], False, [])


def test_open_breaker_skips_the_primary_without_calling_it():
    local, remote = FakeBackend("local", down=True), FakeBackend("remote")
    backend = routed(local, remote)
    for _ in range(5):
        ask(backend)
    assert (local.calls, remote.calls) == (3, 5)
    rec = backend.record()
    assert rec["breakers"]["local"]["state"] == "open" and rec["fallback_errors"][-1] == "local: breaker open"


def test_breakers_are_shared_across_jobs():
    local, remote = FakeBackend("local", down=True), FakeBackend("remote")
    breakers = make_breakers(RouterSettings(breaker_failures=2), FakeClock())
    for _ in range(2):
        ask(RoutedBackend(local, remote, breakers, local_decision()))
    ask(RoutedBackend(local, remote, breakers, local_decision()))
    assert local.calls == 2 and breakers["local"].state == "open"


def test_half_open_probe_after_reset_reaches_the_primary_once():
    clock = FakeClock()
    local, remote = FakeBackend("local", down=True), FakeBackend("remote")
    backend = routed(local, remote, clock)
    for _ in range(4):
        ask(backend)
    clock.advance(60)
    ask(backend)  # the probe fails: re-opened, served by the fallback
    assert local.calls == 4 and backend.record()["breakers"]["local"]["opens"] == 2
    ask(backend)
    assert local.calls == 4
    clock.advance(60)
    local.down = False
    assert ask(backend).text == "reply from local"
    assert local.calls == 5 and backend.model_id == "local-model"
    rec = backend.record()
    assert rec["breakers"]["local"]["state"] == "closed" and rec["fallback_taken"] is True


def test_usage_sums_per_provider():
    local, remote = FakeBackend("local", cpu=0.5), FakeBackend("remote")
    backend = routed(local, remote)
    ask(backend)
    ask(backend)
    local.down = True
    ask(backend)
    assert backend.usage() == [Usage("local", "local-model", 20, 10, 1.0), Usage("remote", "remote-model", 10, 5, 0.0)]
    assert backend.record()["provider_used"] == ["local", "remote"]


def test_scripted_backend_without_a_name_takes_the_decisions_provider():
    scripted = ScriptedBackend(["def test_x():\n    assert True\n"])
    breakers = make_breakers(RouterSettings(), FakeClock())
    backend = RoutedBackend(scripted, None, breakers, local_decision())
    ask(backend)
    assert backend.provider == "local" and backend.usage()[0].provider == "local"
    assert backend.usage()[0].model_id == "scripted" and backend.usage()[0].prompt_tokens == len("write tests") // 4


def test_a_nameless_fallback_is_the_other_provider():
    local = FakeBackend("local", down=True)
    backend = RoutedBackend(local, ScriptedBackend(["ok"]), make_breakers(RouterSettings()), local_decision())
    assert ask(backend).text == "ok"
    assert backend.provider == "remote" and backend.record()["provider_used"] == ["remote"]
    assert backend.record()["breakers"]["remote"]["state"] == "closed"


def test_both_down_raises_no_provider():
    local, remote = FakeBackend("local", down=True), FakeBackend("remote", down=True)
    backend = routed(local, remote)
    with pytest.raises(NoProvider, match="local: ConnectionError.*remote: ConnectionError") as err:
        ask(backend)
    assert isinstance(err.value, FleetError) and (local.calls, remote.calls) == (1, 1)


def test_open_breaker_and_no_fallback_raises_no_provider():
    local = FakeBackend("local", down=True)
    backend = routed(local, None)
    for _ in range(3):
        with pytest.raises(NoProvider):
            ask(backend)
    with pytest.raises(NoProvider, match="local: breaker open"):
        ask(backend)
    assert local.calls == 3


@pytest.mark.parametrize("overrides, why", [({"private_globs": ("pkg/*",)}, "the job is private"),
                                            ({"strategy": "local-only"}, "the strategy is local-only")])
def test_private_or_local_only_job_never_falls_back_to_remote(overrides, why):
    local, remote = FakeBackend("local", down=True), FakeBackend("remote")
    backend = routed(local, remote, **overrides)
    with pytest.raises(NoProvider):
        ask(backend)
    assert remote.calls == 0 and backend.record()["fallback_withheld"] == f"no remote fallback: {why}"


def test_remote_primary_for_a_private_job_is_refused():
    decision = local_decision(private_globs=("pkg/*",))
    with pytest.raises(ValueError, match="must stay local"):
        RoutedBackend(FakeBackend("remote"), None, make_breakers(RouterSettings()), decision)


def test_a_provider_without_a_breaker_is_refused():
    with pytest.raises(ValueError, match="no circuit breaker for provider"):
        RoutedBackend(FakeBackend("local"), FakeBackend("remote"), {"local": CircuitBreaker()}, local_decision())


def test_long_errors_are_trimmed_and_only_the_latest_kept():
    local, remote = FakeBackend("local", down=True), FakeBackend("remote")
    local.error = "x" * 1000
    breakers = {"local": CircuitBreaker(1000), "remote": CircuitBreaker()}
    backend = RoutedBackend(local, remote, breakers, local_decision())
    for _ in range(15):
        ask(backend)
    errors = backend.record()["fallback_errors"]
    assert len(errors) == 10 and all(len(e) == 200 for e in errors)


# --- route -------------------------------------------------------------------------------------


def test_route_wraps_the_chosen_provider_with_the_other_as_fallback():
    local, remote = FakeBackend("local"), FakeBackend("remote")
    backend = route(job("x = 1\n"), RouterSettings(strategy="cloud-only"), {"local": local, "remote": remote},
                    make_breakers(RouterSettings()))
    remote.down = True
    assert ask(backend).text == "reply from local" and backend.record()["decision"] == "remote"


def test_route_without_remote_runs_locally_and_without_local_refuses():
    cfg = RouterSettings(strategy="cloud-only")
    backend = route(job("x = 1\n"), cfg, {"local": FakeBackend("local")}, make_breakers(cfg))
    assert backend.provider == "local" and "no remote provider" in backend.record()["reason"]
    with pytest.raises(NoProvider, match="local provider is not configured"):
        route(job("x = 1\n"), RouterSettings(strategy="local-only"), {"remote": FakeBackend("remote")},
              make_breakers(cfg))


def test_real_clock_is_the_default():
    breaker = CircuitBreaker(1, 0.05)
    breaker.record_failure()
    assert not breaker.allow()
    time.sleep(0.06)
    assert breaker.allow()
