"""fleet.sandbox.Sandbox: real sandboxed pytest runs of small test modules."""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from pathlib import Path

import pytest

from fleet.sandbox import (Limits, Measure, Sandbox, namespace_available, private_tmp_available,
                           private_tmp_dirs, tmpfs_script)

TARGET = "def f(x):\n    if x > 0:\n        return 1\n    return -1\n"
TESTS = """\
from m import f

def test_pos():
    assert f(5) == 1

def test_neg():
    assert f(-5) == -1

def test_wrong():
    assert f(0) == 1

class TestGroup:
    def test_in_class(self):
        assert f(1) == 1
"""
SPIN = "def test_spin():\n    while True:\n        pass\n\ndef test_ok():\n    pass\n"


# --- outcomes and coverage ---------------------------------------------------------------------


def test_outcomes_of_passing_and_failing_tests(make_sandbox):
    result = make_sandbox().run(TESTS)
    assert {k: o.status for k, o in result.outcomes.items()} == {
        "test_pos": "passed", "test_neg": "passed", "test_wrong": "failed", "TestGroup": "passed"}
    assert "assert -1 == 1" in result.outcomes["test_wrong"].message
    assert result.returncode == 1
    assert not result.timed_out
    assert result.collected
    assert "1 failed, 3 passed" in result.output


def test_all_passing_returncode_zero(make_sandbox):
    result = make_sandbox().run("from m import f\n\ndef test_pos():\n    assert f(1) == 1\n")
    assert result.returncode == 0
    assert result.outcomes["test_pos"].passed


def test_per_test_coverage_contexts(make_sandbox):
    result = make_sandbox().run(TESTS)
    lines, arcs = result.lines_by_context, result.arcs_by_context
    assert lines[""] == {1}  # import time: the def line only
    assert lines["tests/test_generated.py::test_pos|run"] == {2, 3}
    assert lines["tests/test_generated.py::test_neg|run"] == {2, 4}
    assert lines["tests/test_generated.py::TestGroup::test_in_class|run"] == {2, 3}
    assert (2, 3) in arcs["tests/test_generated.py::test_pos|run"] and (2, 4) not in arcs["tests/test_generated.py::test_pos|run"]
    assert (2, 4) in arcs["tests/test_generated.py::test_neg|run"] and (2, 3) not in arcs["tests/test_generated.py::test_neg|run"]
    assert all(a > 0 for ctx in arcs.values() for a, _ in ctx)  # entry arcs (-1, n) are dropped


def test_select_runs_only_named_tests(make_sandbox):
    result = make_sandbox().run(TESTS, select=["test_neg", "TestGroup"])
    assert set(result.outcomes) == {"test_neg", "TestGroup"}
    assert "tests/test_generated.py::test_pos|run" not in result.lines_by_context
    assert result.returncode == 0


def test_measure_base_statements_and_branches(make_sandbox):
    sb = make_sandbox()
    base = sb.measure_base()
    assert base.statements == {1, 2, 3, 4}
    assert base.branches == {(2, 3), (2, 4)}
    assert (base.line_rate, base.branch_rate) == (0.0, 0.0)
    pos = sb.run(TESTS, select=["test_pos"])
    measured = base.with_covered(set().union(*pos.lines_by_context.values()),
                                 set().union(*pos.arcs_by_context.values()))
    assert measured.missing_lines == [4]
    assert measured.missing_branches == [(2, 4)]
    assert measured.as_dict() == {"line": 0.75, "branch": 0.5, "lines_covered": 3, "lines_total": 4,
                                  "branches_covered": 1, "branches_total": 2}


def test_measure_without_statements_or_branches_is_full():
    assert Measure(frozenset(), frozenset()).line_rate == 1.0
    assert Measure(frozenset({1}), frozenset()).branch_rate == 1.0


def test_collection_error_means_not_collected(make_sandbox):
    result = make_sandbox().run("def test_x(:\n    pass\n")
    assert not result.collected


# --- limits -------------------------------------------------------------------------------------


def test_infinite_loop_cut_by_wall_timeout(make_sandbox):
    result = make_sandbox(Limits(timeout=2)).run(SPIN)  # pytest-timeout would be 5 s: the wall wins
    assert result.timed_out
    assert result.seconds < 10
    assert result.returncode == -signal.SIGKILL
    assert result.outcomes == {} and not result.collected


def test_infinite_loop_cut_by_pytest_timeout(make_sandbox):
    result = make_sandbox(Limits(timeout=12)).run(SPIN)  # pytest-timeout is 6 s
    assert not result.timed_out
    assert result.outcomes["test_spin"].status == "failed"
    assert "Timeout" in result.outcomes["test_spin"].message
    assert result.outcomes["test_ok"].passed
    assert result.seconds < 12


def test_output_is_capped(make_sandbox):
    source = ("import sys\n\ndef test_loud(capsys):\n    with capsys.disabled():\n"
              "        sys.stdout.write('x' * 1_000_000)\n")
    result = make_sandbox(Limits(output_cap=4096)).run(source)
    assert result.outcomes["test_loud"].passed
    assert result.output.startswith("x" * 4000)
    assert result.output.endswith("\n[output truncated]")
    assert len(result.output) == 4096 + len("\n[output truncated]")


def test_big_file_write_stopped_by_rlimit_fsize(make_sandbox):
    source = ("import os\n\ndef test_write():\n    path = os.path.join(os.environ['HOME'], 'big.bin')\n"
              "    with open(path, 'wb') as fh:\n        for _ in range(64):\n"
              "            fh.write(b'\\0' * 1024 * 1024)\n")
    result = make_sandbox().run(source)  # file_bytes defaults to 16 MiB
    assert result.outcomes["test_write"].status == "failed"
    assert "File too large" in result.outcomes["test_write"].message


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _gone(marker: str, grace: float) -> bool:
    deadline = time.monotonic() + grace
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _processes_with(marker)


@pytest.mark.parametrize("escape", [False, True], ids=["child", "setsid-child"])
def test_forked_children_die_with_the_run(make_sandbox, escape):
    marker = f"{uuid.uuid4().int % 10**6}.{uuid.uuid4().int % 10**6}"
    source = ("import os\n\ndef test_fork():\n    if os.fork() == 0:\n"
              + ("        os.setsid()\n" if escape else "")
              + f"        os.execvp('sleep', ['sleep', '{marker}'])\n")
    result = make_sandbox().run(source)
    assert result.outcomes["test_fork"].passed, result.output
    try:
        assert _gone(marker, grace=3.0)  # the SIGKILL is delivered asynchronously
    finally:
        for pid in _processes_with(marker):
            os.kill(pid, signal.SIGKILL)


# --- environment and network --------------------------------------------------------------------


def test_environment_is_scrubbed(make_sandbox, monkeypatch):
    monkeypatch.setenv("FLEET_SECRET", "hunter2")
    monkeypatch.setenv("FLEET_REDIS_URL", "redis://:pw@example:6379/0")
    monkeypatch.setenv("REDIS_PASSWORD", "pw")
    source = ("import os\n\ndef test_env():\n    assert not [k for k in os.environ if 'REDIS' in k]\n"
              "    assert 'FLEET_SECRET' not in os.environ\n"
              "    assert 'hunter2' not in os.environ.values()\n")
    result = make_sandbox().run(source)
    assert result.outcomes["test_env"].passed, result.output


NET_TESTS = """\
import socket
import pytest

def test_create_connection():
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", {port}), timeout=3)

def test_socket_connect():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(3)
    with pytest.raises(OSError):
        s.connect(("127.0.0.1", {port}))
"""


@pytest.mark.parametrize("limits", [Limits(network="guard"), Limits()], ids=["guard", "default"])
def test_network_is_blocked(make_sandbox, limits):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.setblocking(False)
        port = server.getsockname()[1]
        sb = make_sandbox(limits)
        expected = "guard" if limits.network == "guard" or not namespace_available() else "namespace"
        assert sb.network == expected
        result = sb.run(NET_TESTS.format(port=port))
        assert {k: o.status for k, o in result.outcomes.items()} == {
            "test_create_connection": "passed", "test_socket_connect": "passed"}, result.output
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing got through
        socket.create_connection(("127.0.0.1", port), timeout=3).close()  # but the port is reachable


UDP_TEST = """\
import socket

def test_sendmsg():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendmsg([b"leak"], [], 0, ("127.0.0.1", {port}))
    except OSError:
        pass
"""


@pytest.mark.parametrize(
    "network",
    [
        "guard",
        pytest.param("namespace", marks=pytest.mark.skipif(not namespace_available(),
                                                           reason="unshare -n not permitted here")),
    ],
)
def test_udp_sendmsg_is_blocked(make_sandbox, network):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(1)
        result = make_sandbox(Limits(network=network)).run(UDP_TEST.format(port=receiver.getsockname()[1]))
        assert result.outcomes["test_sendmsg"].passed, result.output
        try:
            leaked = receiver.recv(100)
        except TimeoutError:
            leaked = None
        assert leaked is None


# --- filesystem ---------------------------------------------------------------------------------


def test_facts_say_which_filesystem_isolation_is_in_force(make_sandbox):
    guarded = make_sandbox(Limits(network="guard"))  # no unshare at all: today's shared /tmp
    assert not guarded.private_tmp and guarded.facts()["filesystem"] == "shared /tmp (no mount namespace)"
    sb = make_sandbox()
    private = sb.network == "namespace" and private_tmp_available(sb.python)
    assert sb.private_tmp == private
    assert sb.facts()["filesystem"].startswith("private tmpfs /" if private else "shared /tmp (no mount namespace)")


def test_tmpfs_script_binds_the_run_dir_back_only_where_it_lives():
    outside = tmpfs_script(Path("/srv/fleet-sandbox-x/run1"), Path("/srv/fleet-sandbox-x/.stage"), 4096)
    assert "--bind" not in outside and "--move" not in outside and outside.endswith('exec "$@"')
    assert outside.count("mount -t tmpfs -o size=4096,mode=1777,nosuid,nodev fleet-tmp ") == len(private_tmp_dirs())
    first = private_tmp_dirs()[0]
    inside = tmpfs_script(first / "fleet-sandbox-x" / "run1", first / "fleet-sandbox-x" / ".stage", 4096)
    stage = first / "fleet-sandbox-x" / ".stage"
    assert f"mount --bind {first}/fleet-sandbox-x/run1 {stage}/fleet-sandbox-x/run1 && mount --move {stage} {first}" in inside
    assert "size=1," in tmpfs_script(None, None, 0)  # never 0, which would mean no limit


# --- lifecycle ----------------------------------------------------------------------------------


def test_close_removes_directory():
    sb = Sandbox({"m.py": TARGET}, "m.py")
    sb.run("def test_ok():\n    pass\n")
    assert sb.root.is_dir()
    sb.close()
    assert not sb.root.exists()


def test_context_manager_closes_and_runs_leave_no_run_dirs(monkeypatch):
    monkeypatch.delenv("FLEET_SANDBOX_KEEP", raising=False)
    with Sandbox({"pkg/__init__.py": "", "pkg/m.py": TARGET}, "pkg/m.py") as sb:
        result = sb.run("from pkg.m import f\n\ndef test_ok():\n    assert f(1) == 1\n")
        assert result.outcomes["test_ok"].passed
        assert result.lines_by_context["tests/test_generated.py::test_ok|run"] == {2, 3}
        assert not list(sb.root.glob("run*"))
    assert not sb.root.exists()
