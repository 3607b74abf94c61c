"""The streaming stop rule (fleet.trm.halting): a reply is cut when the job's time is up."""

from __future__ import annotations

from fleet.jobs import Job, Options
from fleet.llm.base import Sampling
from fleet.llm.scripted import ScriptedBackend
from fleet.sandbox import Limits
from fleet.trm.halting import StreamStop
from fleet.trm.loop import Engine, EngineSettings
from tests.clock import FakeClock

A = "def test_a():\n    assert f(1) == 2\n\n"
A_AGAIN = "def test_a_2():\n    assert f(1) == 2\n\n"
B = "def test_b():\n    assert f(0) == 1\n"


def test_the_deadline_halts_and_keeps_the_complete_lines():
    clock = FakeClock()
    stop = StreamStop(deadline=clock.now + 10.0, clock=clock)
    assert not stop(A) and stop.why == ""
    clock.advance(10.0)
    assert stop(A + "def test_b():\n    assert f(0)")
    assert stop.why == "deadline"
    assert stop.kept(A + "def test_b():\n    assert f(0)") == A + "def test_b():\n"


def test_a_repeat_halts_before_the_deadline_unless_runaway_is_off():
    text = A + A_AGAIN + "def test_b():\n"
    stop = StreamStop(deadline=2000.0, clock=FakeClock())
    assert stop(text) and stop.why == "repeat" and stop.kept(text) == A + A_AGAIN
    off = StreamStop(deadline=2000.0, runaway=False, clock=FakeClock())
    assert not off(text) and off.kept(text) == text


def test_the_engine_cuts_a_reply_that_outlasts_the_time_budget():
    """The reply arrives after the budget is spent: it is cut at its first line, and nothing past
    the budget is judged."""
    source = "def f(x):\n    if x:\n        return x + 1\n    return 1\n"
    job = Job(module="m", target_path="m.py", files={"m.py": source}, options=Options(max_iterations=3))

    def run(delay: float, budget: float) -> dict:
        backend = ScriptedBackend([A + B], delay=delay)
        settings = EngineSettings(reruns=2, mutation_max_mutants=0, max_variants=0, time_budget=budget,
                                  prompts_per_iteration=1, max_prompts_per_iteration=1)
        return Engine(backend, sampling=Sampling(), limits=Limits(), settings=settings).run(job)

    late = run(delay=3.0, budget=2.0)
    assert "(halted at a deadline)" in late["trace"][0]
    assert late["tests_kept"] == 0 and late["stop_reason"] == "time-budget"
    on_time = run(delay=0.0, budget=600.0)
    assert "(stop)" in on_time["trace"][0] and on_time["tests_kept"] == 2
