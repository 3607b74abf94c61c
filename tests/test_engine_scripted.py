"""The refinement loop (fleet.trm.loop.Engine) with a scripted backend and the real sandbox.

The engine prefills every reply with the fence, ``import pytest`` and a complete import of the
focus's names (``from calc import add, sign``) and parses prefill + reply, so a scripted reply
starts with test code.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from fleet.jobs import Job
from fleet.llm.base import Sampling
from fleet.llm.scripted import ScriptedBackend
from fleet.sandbox import Limits
from fleet.trm.loop import Engine, EngineSettings

SRC = """\
def add(a, b):
    return a + b


def sign(x):
    if x > 0:
        return 1
    if x < 0:
        return -1
    return 0
"""
T_ADD = "def test_add():\n    assert add(1, 2) == 3\n    assert add(-1, 1) == 0\n"
T_POS = "def test_sign_positive():\n    assert sign(5) == 1\n"
T_NEG = "def test_sign_negative():\n    assert sign(-5) == -1\n"
T_ZERO = "def test_sign_zero():\n    assert sign(0) == 0\n"
T_WRONG = "def test_sign_wrong():\n    assert sign(5) == 7\n"


def reply(*tests: str) -> str:
    return "\n\n".join(tests)


def job() -> Job:
    return Job(module="calc", target_path="calc.py", files={"calc.py": SRC})


def engine_settings(**overrides) -> EngineSettings:
    """EngineSettings for these tests: few reruns, one prompt per iteration (one scripted reply =
    one iteration, even without a gain), and no mutation scoring (it multiplies the sandbox runs)."""
    overrides.setdefault("reruns", 2)
    overrides.setdefault("prompts_per_iteration", 1)
    overrides.setdefault("max_prompts_per_iteration", 1)
    overrides.setdefault("ablate", ("oracle",))  # these tests are about rejection and feedback; see test_oracle.py
    overrides.setdefault("mutation_max_mutants", 0)
    overrides.setdefault("max_variants", 0)  # see test_variants.py
    return EngineSettings(**overrides)


def run_engine(replies: list[str], **settings) -> tuple[dict, ScriptedBackend]:
    backend = ScriptedBackend(replies)
    engine = Engine(backend, sampling=Sampling(), settings=engine_settings(**settings), limits=Limits())
    return engine.run(job()), backend


def kept(report: dict) -> list[str]:
    return [t["name"] for t in report["tests"]]


def rejections(report: dict) -> dict[str, str]:
    """Rejected test name → reason (the last one recorded)."""
    return {r["name"]: r["reason"] for r in report["rejected"]}


@pytest.fixture
def tmp_marker(open_dir):
    """A file the sandboxed tests may use as a run counter: 0666 in a directory outside /tmp, so it
    outlives each sandbox run even where the sandbox gives every run its own private /tmp."""
    path = open_dir / "counter"
    path.write_text("0")
    path.chmod(0o666)
    return path


def counting_test(name: str, marker: Path, body: str, on_second: str) -> str:
    """A test that counts its runs in ``marker`` and does ``on_second`` on every second run."""
    return (
        f"def {name}():\n"
        f"    import os\n"
        f"    path = {str(marker)!r}\n"
        f"    n = int(open(path).read()) if os.path.exists(path) else 0\n"
        f"    with open(path, 'w') as fh:\n"
        f"        fh.write(str(n + 1))\n"
        f"    if n % 2 == 1:\n"
        f"        {on_second}\n"
        f"{body}"
    )


# -- a good reply ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good():
    return run_engine([reply(T_ADD, T_POS)], max_iterations=1, reruns=3)


def test_good_reply_report(good):
    report, backend = good
    assert report["status"] == "ok"
    assert report["module"] == "calc"
    assert report["tests_kept"] >= 1
    assert set(kept(report)) == {"test_add", "test_sign_positive"}
    assert report["coverage_after"]["line"] > report["coverage_before"]["line"]
    assert report["coverage_after"]["lines_covered"] == 5  # 2 defs, add's return, sign's first if + return
    assert report["coverage_after"]["lines_total"] == 8
    assert report["reruns"] == 3
    assert report["final_runs_passed"] == report["reruns"]
    assert report["rejected"] == []
    assert report["stop_reason"] == "max-iterations"
    assert len(report["iterations"]) == 1 and len(backend.prompts) == 1
    assert {t["name"]: t["asserts"] for t in report["tests"]} == {"test_add": 2, "test_sign_positive": 1}
    assert report["tokens"]["in"] > 0 and report["tokens"]["out"] > 0
    assert report["model"]["id"] == "scripted"
    assert report["job_id"] == job().job_id


def test_replies_are_prefilled_with_the_import_of_their_focus():
    _, backend = run_engine([reply(T_ADD, T_POS), reply(T_NEG)], max_iterations=2, patience=5)
    assert backend.prefills[0] == "```python\nimport pytest\nfrom calc import add, sign\n\n"  # whole module first
    assert backend.prefills[1] == "```python\nimport pytest\nfrom calc import sign\n\n"  # then sign's gaps


def test_good_reply_prompt_shows_the_target(good):
    _, backend = good
    system, user = backend.prompts[0]
    assert system.role == "system" and user.role == "user"
    assert SRC.strip() in user.content
    assert "`add`" in user.content and "`sign`" in user.content


def test_good_reply_test_module_runs_green(good, tmp_path):
    report, _ = good
    text = report["test_module"]
    assert "def test_add" in text and "def test_sign_positive" in text
    (tmp_path / "calc.py").write_text(SRC)
    (tmp_path / "test_calc.py").write_text(text)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_calc.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, text + "\n" + done.stdout + done.stderr
    assert "2 passed" in done.stdout


# -- rejections --------------------------------------------------------------------------------

def test_failing_test_rejected_and_fed_back():
    report, backend = run_engine([reply(T_ADD, T_WRONG), reply(T_POS)], max_iterations=2, patience=5)
    assert len(backend.prompts) == 2
    wrong = [r for r in report["rejected"] if r["name"] == "test_sign_wrong"]
    assert wrong and wrong[0]["reason"] == "assertion" and wrong[0]["iteration"] == 1
    assert "7" in wrong[0]["detail"]
    assert "test_sign_wrong" not in kept(report)
    assert set(kept(report)) == {"test_add", "test_sign_positive"}
    first, second = backend.prompts[0][-1].content, backend.prompts[1][-1].content
    assert "test_sign_wrong" not in first
    assert "test_sign_wrong" in second
    assert "assert 1 == 7" in second  # the error text itself, not just the name


def test_test_without_new_coverage_is_rejected():
    twin = "def test_add_again():\n    assert add(2, 3) == 5\n"
    report, _ = run_engine([reply(T_ADD, twin)], max_iterations=1)
    names = {"test_add", "test_add_again"}
    assert len(set(kept(report)) & names) == 1
    (other,) = names - set(kept(report))
    assert rejections(report)[other] == "no-new-coverage"


def test_flaky_test_is_rejected(tmp_marker):
    flaky = counting_test("test_flaky_negative", tmp_marker, "    assert sign(-3) == -1\n",
                          "assert False, 'every second run fails'")
    report, _ = run_engine([reply(T_ADD, flaky)], max_iterations=1, reruns=3)
    assert rejections(report).get("test_flaky_negative") == "flaky"
    assert kept(report) == ["test_add"]
    assert int(tmp_marker.read_text()) >= 2  # it really ran more than once
    assert report["final_runs_passed"] == report["reruns"] == 3
    assert "test_flaky_negative" not in report["test_module"]


def test_redefinition_of_target_is_rejected_and_real_code_tested():
    fake = "def sign(x):\n    return 42\n"
    report, _ = run_engine([reply(fake, "def test_sign_fake():\n    assert sign(1) == 1\n")], max_iterations=1)
    assert rejections(report)["sign"] == "redefines-target"
    assert kept(report) == ["test_sign_fake"]
    assert "return 42" not in report["test_module"]


# -- the loop ----------------------------------------------------------------------------------

def test_quality_history_is_non_decreasing():
    replies = [reply(T_ADD), reply(T_POS), reply(T_WRONG), reply(T_NEG, T_ZERO)]
    report, _ = run_engine(replies, max_iterations=4, patience=3)
    quality = [h["quality"] for h in report["iterations"]]
    assert len(quality) == 4
    assert quality == sorted(quality)
    assert quality[-1] > quality[1] > quality[0] > 0
    assert quality[2] == quality[1]  # the failing reply changed nothing
    totals = [h["tests_total"] for h in report["iterations"]]
    assert totals == [1, 2, 2, 4]
    assert report["quality"] == quality[-1]


def test_convergence_stops_early():
    full = "def test_sign_all():\n    assert sign(3) == 1\n    assert sign(-3) == -1\n    assert sign(0) == 0\n"
    report, backend = run_engine([reply(T_ADD, full)], max_iterations=4)
    assert report["stop_reason"] in ("converged", "fully-covered")
    assert report["converged"] is True
    assert len(report["iterations"]) == 1 < 4
    assert len(backend.prompts) == 1
    assert report["coverage_after"]["line"] == 1.0 and report["coverage_after"]["branch"] == 1.0
    assert report["quality"] >= 0.95


def test_plateau_when_replies_add_nothing():
    report, backend = run_engine([reply(T_ADD)], max_iterations=6, patience=2)
    assert report["stop_reason"] == "plateau"
    assert report["converged"] is False
    assert len(report["iterations"]) == 3 < 6
    assert [h["improvement"] for h in report["iterations"]][1:] == [0.0, 0.0]
    assert kept(report) == ["test_add"]  # the repeats (renamed test_add_2, …) are not judged again
    assert set(rejections(report).values()) == {"repeat"}
    assert [h["sandbox_runs"] for h in report["iterations"]][1:] == [0, 0]
    assert len(backend.prompts) == 3


def test_repeats_heat_sampling_and_carry_their_earlier_error():
    """A reply that repeats judged tests (renamed, other comments and messages) is not judged
    again; each further prompt samples 0.25 hotter while replies repeat (capped), a new reply
    resets it, and a repeated failure's error is fed back again."""
    again = "def test_sign_wrong_again():\n    # the same test\n    assert sign(5) == 7, 'five'\n"
    report, backend = run_engine([reply(T_ADD, T_WRONG), reply(again), reply(T_ADD), reply(T_POS), reply(T_NEG)],
                                 max_iterations=5, patience=9, max_temperature=0.7)
    assert [round(s.temperature, 2) for s in backend.samplings] == [0.3, 0.3, 0.55, 0.7, 0.3]
    assert kept(report) == ["test_add", "test_sign_positive", "test_sign_negative"]
    repeat = [r for r in report["rejected"] if r["reason"] == "repeat"]
    assert [r["name"] for r in repeat] == ["test_sign_wrong_again", "test_add_2"]
    assert "which failed: assert 1 == 7" in repeat[0]["detail"]
    assert "test_sign_wrong_again: the same test as an earlier one, which failed" in backend.prompts[2][1].content
    assert [h["repeats"] for h in report["iterations"]] == [0, 1, 1, 0, 0]


def test_repeats_are_judged_again_when_ablated():
    report, backend = run_engine([reply(T_ADD)], max_iterations=2, patience=9, ablate=("oracle", "repeats"))
    assert set(rejections(report).values()) == {"no-new-coverage"}
    assert [round(s.temperature, 2) for s in backend.samplings] == [0.3, 0.3]


def test_token_budget_stops_after_one_iteration():
    report, backend = run_engine([reply(T_ADD)], max_iterations=5, max_tokens=1)
    assert report["stop_reason"] == "token-budget"
    assert len(report["iterations"]) == 1 and len(backend.prompts) == 1
    assert report["tokens"]["in"] + report["tokens"]["out"] >= 1
    assert report["status"] == "ok"  # what was kept before the budget ran out is still reported


def test_max_iterations_from_job_options():
    from dataclasses import replace

    from fleet.jobs import Options

    backend = ScriptedBackend([reply(T_ADD)])
    engine = Engine(backend, sampling=Sampling(), settings=engine_settings(max_iterations=7, patience=9),
                    limits=Limits())
    report = engine.run(replace(job(), options=Options(max_iterations=2)))
    assert len(report["iterations"]) == 2
    assert report["stop_reason"] == "max-iterations"


def test_garbage_reply_yields_no_tests():
    garbage = "I'm sorry, but as an AI model I cannot help with that request. ¯\\_(ツ)_/¯ {{{ ]]]"
    progress: list[dict] = []
    backend = ScriptedBackend([garbage])
    engine = Engine(backend, sampling=Sampling(), settings=engine_settings(max_iterations=3), limits=Limits())
    report = engine.run(job(), progress=progress.append)
    assert report["status"] == "no-tests"
    assert report["tests_kept"] == 0 and report["tests"] == []
    assert report["test_module"] == ""
    assert report["final_runs_passed"] == 0
    assert report["quality"] == 0.0
    assert report["rejected"] and {r["reason"] for r in report["rejected"]} == {"syntax"}
    # nothing kept yet: no plateau stop, the loop keeps trying until its iterations are spent
    assert report["stop_reason"] == "max-iterations" and len(report["iterations"]) == 3
    assert [p["iteration"] for p in progress] == [1, 2, 3]


def test_no_tests_does_not_report_lower_coverage_than_before():
    report, _ = run_engine(["nothing useful here"], max_iterations=2)
    assert report["status"] == "no-tests"
    assert report["coverage_after"]["lines_covered"] >= report["coverage_before"]["lines_covered"]


# -- hostile replies ---------------------------------------------------------------------------

def test_hostile_tests_cannot_reach_parent_socket_or_environment():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    env_before = dict(os.environ)
    home = os.environ.get("HOME", "")
    tag = uuid.uuid4().hex
    # getattr hides the socket calls from the static unsafe-call check: the sandbox must hold anyway
    net = (
        "def test_phone_home():\n"
        "    import socket\n"
        f"    s = getattr(socket, 'create_connection')(('127.0.0.1', {port}), timeout=3)\n"
        "    s.sendall(b'exfiltrated')\n"
        "    s.close()\n"
        "    assert sign(-2) == -1\n"
    )
    raw_net = (
        "def test_raw_socket():\n"
        "    import socket\n"
        "    s = getattr(socket, 'socket')(socket.AF_INET, socket.SOCK_STREAM)\n"
        "    s.settimeout(3)\n"
        f"    s.connect(('127.0.0.1', {port}))\n"
        "    s.sendall(b'exfiltrated')\n"
        "    assert sign(-4) == -1\n"
    )
    env = (
        "def test_env_tamper():\n"
        "    import os\n"
        f"    assert os.environ.get('HOME') != {home!r}\n"
        "    os.environ['HOME'] = '/pwned'\n"
        f"    os.environ['FLEET_PWNED_{tag}'] = '1'\n"
        "    os.environ.pop('PATH', None)\n"
        "    assert sign(0) == 0\n"
    )
    try:
        report, _ = run_engine([reply(T_ADD, net, raw_net, env)], max_iterations=1)
        readable, _, _ = select.select([listener], [], [], 0.5)
        assert readable == [], "a sandboxed test connected to the parent's listening socket"
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
    reasons = rejections(report)
    assert reasons.get("test_phone_home") == "sandbox-violation"
    assert reasons.get("test_raw_socket") == "sandbox-violation"
    assert "test_env_tamper" in kept(report)  # it ran, passed, and saw a scrubbed HOME
    assert dict(os.environ) == env_before
    assert f"FLEET_PWNED_{tag}" not in os.environ


# -- bugs --------------------------------------------------------------------------------------

def test_candidate_crashing_a_rerun_does_not_drop_earlier_kept_tests(tmp_marker):
    crasher = counting_test("test_sign_positive", tmp_marker, "    assert sign(4) == 1\n", "getattr(os, '_exit')(3)")
    report, _ = run_engine([reply(T_ADD), reply(crasher)], max_iterations=2, patience=5)
    assert rejections(report).get("test_sign_positive") == "flaky"
    assert report["iterations"][0]["tests_total"] == 1
    assert kept(report) == ["test_add"]  # kept in iteration 1, passed every rerun since


T_CRASH = "def test_sign_crash():\n    import os\n    assert sign(1) == 1\n    getattr(os, '_exit')(3)\n"
T_BAD_PARAMS = ("@pytest.mark.parametrize('x', NOT_DEFINED_ANYWHERE)\n"
                "def test_sign_params(x):\n    assert sign(x) == 1\n")


@pytest.mark.parametrize("culprit", [T_CRASH, T_BAD_PARAMS], ids=["crash", "collection-error"])
def test_one_test_that_stops_the_module_loading_costs_only_itself(culprit):
    """A test that kills pytest (no result at all) or breaks the module's collection is found by
    halving the batch; the other tests of the reply are judged without it and kept."""
    report, _ = run_engine([reply(T_ADD, T_POS, culprit, T_NEG, T_ZERO)], max_iterations=1)
    assert sorted(kept(report)) == ["test_add", "test_sign_negative", "test_sign_positive", "test_sign_zero"]
    (rejection,) = report["rejected"]
    assert rejection["name"] in ("test_sign_crash", "test_sign_params")
    assert rejection["detail"].startswith("the test module fails to load with this test alone")
    assert report["final_runs_passed"] == report["reruns"]


def test_one_culprit_is_sought_per_batch():
    """Two crashing tests: the first is singled out; the rest still does not load and is rejected
    as a whole, as it would be without the search."""
    second = "def test_sign_abort():\n    import os\n    assert sign(-2) == -1\n    getattr(os, 'abort')()\n"
    report, _ = run_engine([reply(T_CRASH, T_POS, second, T_NEG)], max_iterations=1)
    assert kept(report) == []
    details = {r["name"]: r["detail"] for r in report["rejected"]}
    assert details["test_sign_crash"] == ("the test module fails to load with this test alone: "
                                          "pytest ended with exit code 3 without a result")
    for name in ("test_sign_positive", "test_sign_abort", "test_sign_negative"):
        assert details[name].startswith("the test module failed to load"), details


def test_coverage_through_a_fixture_counts_for_its_test():
    fixture_reply = (
        "@pytest.fixture\ndef negative():\n    return sign(-5)\n\n\n"
        + "def test_negative(negative):\n    assert negative == -1\n"
    )
    report, _ = run_engine([fixture_reply], max_iterations=1)
    assert kept(report) == ["test_negative"]
    assert report["coverage_after"]["line"] > report["coverage_before"]["line"]


def test_a_target_that_cannot_be_imported_fails_fast_with_the_reason():
    from fleet.trm.loop import TargetImportError

    broken = Job(module="calc", target_path="calc.py", files={"calc.py": "import not_installed_anywhere_xyz\n"})
    backend = ScriptedBackend([reply(T_ADD)])
    engine = Engine(backend, sampling=Sampling(), settings=engine_settings(), limits=Limits())
    with pytest.raises(TargetImportError, match="not_installed_anywhere_xyz"):
        engine.run(broken)
    assert backend.prompts == []


def test_an_iteration_makes_several_attempts_until_nothing_is_left_to_cover():
    replies = [reply(T_ADD, T_POS), reply(T_NEG), reply(T_ZERO), reply(T_WRONG)]
    report, backend = run_engine(replies, prompts_per_iteration=2, max_iterations=3)
    first, second = report["iterations"]
    assert [a["focus"] for a in first["attempts"]] == ["module", "sign"]
    assert [a["kept"] for a in first["attempts"]] == [2, 1]
    assert first["kept"] == 3 and first["tokens_in"] == sum(a["tokens_in"] for a in first["attempts"])
    assert len(second["attempts"]) == 1  # sign(0) covers the rest: no second attempt
    assert report["stop_reason"] in ("converged", "fully-covered")
    assert set(kept(report)) == {"test_add", "test_sign_positive", "test_sign_negative", "test_sign_zero"}
    assert len(backend.prompts) == 3


def test_a_stalled_iteration_tries_further_foci_up_to_its_maximum():
    replies = [reply(T_ADD), reply(T_WRONG), reply(T_WRONG), reply(T_POS), reply(T_NEG)]
    report, backend = run_engine(replies, max_prompts_per_iteration=3, max_iterations=2, patience=5)
    first, second = report["iterations"]
    assert [a["kept"] for a in first["attempts"]] == [1]  # a gain: no further attempt
    assert [a["kept"] for a in second["attempts"]] == [0, 0, 1]  # two without gain, then the third
    assert second["improvement"] > 0 and len(backend.prompts) == 4


def test_without_a_gain_an_iteration_stops_at_its_maximum():
    report, backend = run_engine([reply(T_ADD), reply(T_WRONG)], max_prompts_per_iteration=2, max_iterations=3)
    assert [len(h["attempts"]) for h in report["iterations"]] == [1, 2, 2]
    assert report["stop_reason"] == "plateau" and len(backend.prompts) == 5


def test_an_api_hint_is_kept_as_a_fact_for_later_prompts():
    bad_call = "def test_sign_keyword():\n    assert sign(value=3) == 1\n"
    report, backend = run_engine([reply(T_ADD, bad_call), reply(T_POS), reply(T_NEG)], max_iterations=3, patience=5)
    detail = next(r["detail"] for r in report["rejected"] if r["name"] == "test_sign_keyword")
    assert "[hint] the signature is sign(x)" in detail
    first, second, third = (p[-1].content for p in backend.prompts)
    assert "learned from earlier failed tests" not in first
    fact = "sign() got an unexpected keyword argument 'value' → the signature is sign(x)"
    assert fact in second
    assert fact in third and "test_sign_keyword" not in third  # the error is gone, the fact stays


def test_hints_ablation_removes_facts_and_hints():
    bad_call = "def test_sign_keyword():\n    assert sign(value=3) == 1\n"
    _, backend = run_engine([reply(T_ADD, bad_call), reply(T_POS)], max_iterations=2, patience=5, ablate=("oracle", "hints"))
    second = backend.prompts[1][-1].content
    assert "got an unexpected keyword argument 'value'" in second and "[hint]" not in second
    assert "learned from earlier failed tests" not in second


def test_a_failing_method_does_not_cost_its_class_siblings():
    klass = ("class TestSign:\n    def test_sign_positive(self):\n        assert sign(5) == 1\n"
             "    def test_sign_wrong(self):\n        assert sign(5) == 7\n")
    report, _ = run_engine([reply(T_ADD, klass)], max_iterations=1)
    assert sorted(kept(report)) == ["test_add", "test_sign_positive"]  # accepted best coverage first
    assert rejections(report) == {"test_sign_wrong": "assertion"}


T_PARTLY = ("def test_sign_cases():\n    assert sign(5) == 1\n    assert sign(-5) == -1\n"
            "    assert sign(0) == 9\n    assert sign(0) == 0\n")


def test_a_failing_test_is_kept_cut_before_its_failing_statement():
    report, _ = run_engine([reply(T_ADD, T_PARTLY)], max_iterations=1)
    assert sorted(kept(report)) == ["test_add", "test_sign_cases"]
    cut = next(t for t in report["tests"] if t["name"] == "test_sign_cases")
    assert cut["oracle"] == "cut" and cut["asserts"] == 2
    assert "sign(-5) == -1" in report["test_module"] and "== 9" not in report["test_module"]
    assert "sign(0) == 0" not in report["test_module"]  # after the failure: never ran
    assert "1 cut before a failing statement" in " ".join(report["trace"])


def test_the_cut_ablation_drops_the_whole_failing_test():
    report, _ = run_engine([reply(T_ADD, T_PARTLY)], max_iterations=1, ablate=("oracle", "cut"))
    assert kept(report) == ["test_add"]
    assert rejections(report) == {"test_sign_cases": "assertion"}


def test_an_import_that_breaks_collection_does_not_reach_the_final_module():
    bad = "from os import no_such_name\nfrom calc import NOT_IN_CALC\n\ndef test_sign_zero():\n    assert sign(0) == no_such_name\n"
    report, _ = run_engine([reply(T_ADD), reply(bad), reply(T_POS)], max_iterations=3, patience=5)
    assert sorted(kept(report)) == ["test_add", "test_sign_positive"]
    assert "no_such_name" not in report["test_module"] and "NOT_IN_CALC" not in report["test_module"]
    assert report["final_runs_passed"] == report["reruns"]


def test_a_suite_failing_its_final_runs_is_not_called_verified_nor_mutation_scored(tmp_marker):
    late = ("def test_sign_late():\n    import os\n"
            f"    path = {str(tmp_marker)!r}\n"
            "    n = int(open(path).read())\n"
            "    with open(path, 'w') as fh:\n        fh.write(str(n + 1))\n"
            "    assert n < 3, 'fails from its fourth run on'\n    assert sign(2) == 1\n")
    report, _ = run_engine([reply(late)], max_iterations=1, mutation_max_mutants=3)
    assert kept(report) == ["test_sign_late"]  # passed its first run and both reruns
    assert report["final_runs_passed"] == 0
    assert "NOT verified: the suite passed 0/2 final runs" in report["test_module"]
    assert report["mutation"] is None
    assert "mutation: not measured, the final suite passed 0/2 runs" in report["trace"]


T_MISSPELT = "def test_sign_positive():\n    import math\n    assert sign(math.flor(5.5)) == 1\n"
T_MISSPELT_AGAIN = "def test_sign_negative():\n    import math\n    assert sign(-math.flor(5.5)) == -1\n"
T_MISSPELT_FIXTURE = ("@pytest.fixture\ndef five():\n    import math\n    return math.flor(5.5)\n\n\n"
                      "def test_sign_zero(five):\n    assert sign(five - 5) == 0\n")


def test_a_misspelt_attribute_is_corrected_in_the_test_and_in_later_replies():
    report, _ = run_engine([reply(T_ADD, T_MISSPELT), reply(T_MISSPELT_AGAIN)], max_iterations=2, patience=5)
    assert sorted(kept(report)) == ["test_add", "test_sign_negative", "test_sign_positive"]
    origins = {t["name"]: t["oracle"] for t in report["tests"]}
    assert origins["test_sign_positive"] == "renamed" and origins["test_sign_negative"] == "model"
    assert "math.flor" not in report["test_module"] and "math.floor(5.5)" in report["test_module"]
    trace = " ".join(report["trace"])
    assert "1 with a misspelt name corrected" in trace and "1 definition(s) corrected before judging" in trace


def test_a_misspelt_attribute_in_a_fixture_is_corrected_there():
    report, _ = run_engine([reply(T_ADD, T_MISSPELT_FIXTURE)], max_iterations=1)
    assert sorted(kept(report)) == ["test_add", "test_sign_zero"]
    assert "return math.floor(5.5)" in report["test_module"]


def test_without_hints_nothing_is_renamed():
    report, _ = run_engine([reply(T_ADD, T_MISSPELT), reply(T_MISSPELT_AGAIN)], max_iterations=2, patience=5,
                           ablate=("oracle", "hints", "cut"))
    assert kept(report) == ["test_add"]
    assert rejections(report) == {"test_sign_positive": "exception", "test_sign_negative": "exception"}


def test_later_prompts_show_kept_tests_that_use_the_focus():
    _, backend = run_engine([reply(T_ADD, T_POS), reply(T_NEG)], max_iterations=2, patience=5)
    first, second = (p[-1].content for p in backend.prompts)
    assert "already pass" not in first
    shown = second.split("already pass", 1)[1].split("Task:", 1)[0]
    assert "assert sign(5) == 1" in shown and "add(1, 2)" not in shown  # the focus is sign


def test_the_kept_examples_ablation_shows_none():
    _, backend = run_engine([reply(T_ADD, T_POS), reply(T_NEG)], max_iterations=2, patience=5,
                            ablate=("oracle", "kept-examples"))
    assert "already pass" not in backend.prompts[1][-1].content


T_NONE = "def test_sign_none():\n    assert sign(None) == 0\n"


def test_an_exception_the_code_did_not_raise_on_purpose_stays_a_failure():
    report, backend = run_engine([reply(T_ADD, T_NONE), reply(T_POS)], max_iterations=2, patience=5)
    assert "test_sign_none" not in kept(report)
    assert rejections(report)["test_sign_none"] == "exception"
    assert "'>' not supported between instances of 'NoneType' and 'int'" in backend.prompts[1][-1].content
