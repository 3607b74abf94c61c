"""fleet.sandbox.Sandbox against hostile generated tests: the host stays unharmed, the outcome is a
clear non-pass, and the process calling ``run()`` (the worker) survives and gets a result back.

Most checks only mean something with the confinement this host offers (root: network + PID
namespace, privilege drop to ``nobody``, RLIMIT_NPROC enforced); each test skips with a reason
when its confinement is missing. Files the sandbox user should be able to reach are put under a
root-owned 0755 directory in the repository: pytest's ``tmp_path`` lies below /tmp/pytest-of-root
(0700), which would make every "cannot read / cannot write" check pass for the wrong reason, and
with a mount namespace the sandbox does not see the host's /tmp at all (a missing file, not a
denied one).

The last group replays attacks on the run directory that once reached the worker.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import sysconfig
import threading
import time
import uuid
from pathlib import Path

import pytest

from fleet.sandbox import Limits, RunResult, Sandbox, namespace_available

ROOT = Path(__file__).resolve().parent.parent
TARGET = "def f(x):\n    if x > 0:\n        return 1\n    return -1\n"
OK_TEST = "from m import f\n\ndef test_ok():\n    assert f(1) == 1\n"
try:
    NOBODY_UID = pwd.getpwnam("nobody").pw_uid
except KeyError:
    NOBODY_UID = 65534


def _require_drop(sb: Sandbox) -> None:
    if sb.ids is None:
        pytest.skip(f"no privilege drop here ({sb.facts()['user']}): the tests run with our own rights")


def _require_namespace() -> None:
    if not namespace_available():
        pytest.skip("unshare --net --pid is not permitted here: no network / PID namespace")


def _marker() -> str:
    """A unique, valid `sleep` duration (seconds), to find our processes in /proc."""
    return f"{uuid.uuid4().int % 10**6 + 10**5}.{uuid.uuid4().int % 10**6}"


def _processes(marker: str, uid: int | None = None) -> list[int]:
    """Pids whose command line contains ``marker`` (and whose real uid is ``uid``, when given)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace"):
                continue
            if uid is not None:
                status = (entry / "status").read_text()
                if int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1)) != uid:
                    continue
        except (OSError, AttributeError):
            continue
        found.append(int(entry.name))
    return found


def _gone(marker: str, grace: float, uid: int | None = None) -> bool:
    deadline = time.monotonic() + grace
    while _processes(marker, uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _processes(marker, uid)


def _kill_all(marker: str) -> None:
    for pid in _processes(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = re.search(r"^State:\s+(\S)", Path(f"/proc/{pid}/status").read_text(), re.M).group(1)
    return state != "Z"


# --- resources -----------------------------------------------------------------------------------


def test_memory_bomb_fails_with_memory_error(make_sandbox):
    source = ("def test_hog():\n    blob = b'x' * (8 << 30)\n    assert len(blob) < 0\n\n"
              "def test_after_the_hog():\n    assert len(bytearray(1 << 20)) == 1 << 20\n")
    result = make_sandbox(Limits(memory_bytes=512 * 1024**2, timeout=30)).run(source)
    hog = result.outcomes["test_hog"]
    assert hog.status == "failed", result.output
    assert "MemoryError" in hog.message
    assert result.outcomes["test_after_the_hog"].passed  # the run outlived its own MemoryError
    assert not result.timed_out
    assert result.seconds < 20


FORK_COUNT = """\
import os

def test_fork_many():
    forked, error = 0, None
    try:
        for _ in range(500):
            if os.fork() == 0:
                try:
                    os.execvp("sleep", ["sleep", "{marker}"])
                finally:
                    os._exit(0)
            forked += 1
    except OSError as exc:
        error = exc
    assert False, f"forked {{forked}} error {{error!r}}"
"""


def test_fork_loop_is_capped_by_rlimit_nproc(make_sandbox):
    sb = make_sandbox(Limits(max_processes=64, timeout=10))
    if not sb.facts()["nproc_enforced"]:
        pytest.skip("RLIMIT_NPROC is not enforced (root without privilege drop)")
    marker = _marker()
    try:
        result = sb.run(FORK_COUNT.format(marker=marker))
        outcome = result.outcomes["test_fork_many"]
        assert outcome.status == "failed", result.output
        found = re.search(r"forked (\d+) error (\S+)", outcome.message)
        assert found, outcome.message
        # the pytest process itself counts against the 64, so at most 63 children
        assert 0 < int(found.group(1)) < 64, outcome.message
        assert found.group(2).startswith("BlockingIOError"), outcome.message  # EAGAIN from fork
        assert not result.timed_out and result.seconds < 10 + 5
        assert _gone(marker, grace=3.0, uid=NOBODY_UID), "sleep children of the run outlived it"
    finally:
        _kill_all(marker)


BOMB = """\
import os
import time

def test_bomb():
    while True:
        try:
            os.fork()
        except OSError:
            time.sleep(0.05)
"""


def test_self_replicating_fork_bomb_ends_and_leaves_nothing(make_sandbox):
    sb = make_sandbox(Limits(max_processes=64, timeout=10))
    if not sb.facts()["nproc_enforced"]:
        pytest.skip("RLIMIT_NPROC is not enforced (root without privilege drop)")
    marker = str(sb.root)  # every copy of the forked pytest process carries its run dir in argv
    try:
        result = sb.run(BOMB)
        assert result.seconds < 10 + 5
        assert result.timed_out or result.outcomes["test_bomb"].status == "failed", result.output
        assert not result.outcomes.get("test_bomb") or "Timeout" in result.outcomes["test_bomb"].message
        assert _gone(marker, grace=3.0), f"bomb processes survived: {_processes(marker)}"
    finally:
        _kill_all(marker)


# --- files -------------------------------------------------------------------------------------


WRITE_OUTSIDE = """\
import os
import pytest

@pytest.mark.parametrize("path", {targets!r})
def test_write_outside(path):
    with pytest.raises(PermissionError):
        with open(path, "w") as fh:
            fh.write("pwned")

def test_sources_are_read_only():
    with pytest.raises(PermissionError):
        with open(os.path.join(os.environ["HOME"], "src", "m.py"), "a") as fh:
            fh.write("pwned = True\\n")

def test_own_home_is_writable():
    with open(os.path.join(os.environ["HOME"], "mine.txt"), "w") as fh:
        fh.write("ok")
"""


def test_writes_outside_the_run_dir_are_denied(make_sandbox, open_dir):
    sb = make_sandbox()
    _require_drop(sb)
    tag = uuid.uuid4().hex
    targets = [str(ROOT / f"HOSTILE_{tag}"), f"/etc/hostile_{tag}", str(open_dir / f"hostile_{tag}"),
               str(Path(sysconfig.get_paths()["purelib"]) / f"hostile_{tag}.pth")]
    try:
        result = sb.run(WRITE_OUTSIDE.format(targets=targets))
        assert {k: o.status for k, o in result.outcomes.items()} == {
            "test_write_outside": "passed", "test_sources_are_read_only": "passed",
            "test_own_home_is_writable": "passed"}, result.output
        assert [t for t in targets if os.path.lexists(t)] == []
    finally:
        for t in targets:
            if os.path.lexists(t):
                os.unlink(t)


WORLD_WRITABLE = """\
import os
import pytest
from m import f

@pytest.mark.parametrize("path", {paths!r})
def test_write_and_read_back(path):
    with open(path, "w") as fh:
        fh.write("written inside")
    with open(path) as fh:
        assert fh.read() == "written inside"
    assert f(1) == 1

def test_hosts_files_are_not_visible():
    assert not os.path.lexists({host_file!r})

def test_tmpfs_is_size_capped():
    with pytest.raises(OSError) as caught:
        with open("/tmp/fill-" + {tag!r}, "wb") as fh:
            for _ in range(4):
                fh.write(bytes(1024**2))
                fh.flush()
    assert caught.value.errno == 28  # ENOSPC: the 2 MiB tmpfs is full, RLIMIT_FSIZE (16 MiB) is not hit
"""


def test_world_writable_dirs_are_private_tmpfs(make_sandbox):
    """/tmp, /var/tmp and /dev/shm are private, writable tmpfs mounts of ``tmpfs_bytes`` each:
    the tests can write and read there, nothing reaches the host, the host's own files there are
    not visible, and the run directory (below /tmp here) and its coverage data still come back."""
    sb = make_sandbox(Limits(tmpfs_bytes=2 * 1024**2))
    if not sb.private_tmp:
        pytest.skip(f"no mount namespace here: {sb.facts()['filesystem']}")
    assert sb.facts()["filesystem"].startswith("private tmpfs /tmp /var/tmp /dev/shm")
    tag = uuid.uuid4().hex
    paths = [f"/tmp/fleet-private-{tag}", f"/var/tmp/fleet-private-{tag}", f"/dev/shm/fleet-private-{tag}"]
    host_file = Path(f"/tmp/fleet-host-{tag}")
    host_file.write_text("the host's")
    host_file.chmod(0o644)
    try:
        result = sb.run(WORLD_WRITABLE.format(paths=paths, host_file=str(host_file), tag=tag))
        statuses = {k: o.status for k, o in result.outcomes.items()}
        assert statuses == {"test_write_and_read_back": "passed", "test_hosts_files_are_not_visible": "passed",
                            "test_tmpfs_is_size_capped": "passed"}, result.output
        assert [p for p in [*paths, f"/tmp/fill-{tag}"] if os.path.lexists(p)] == []
        assert result.lines_by_context, "no coverage read back from the run directory"
    finally:
        host_file.unlink()
        for path in [*paths, f"/tmp/fill-{tag}"]:
            if os.path.lexists(path):
                os.unlink(path)


ENV_DUMP = """\
import os

def test_dump_environment(capsys):
    seen = dict(os.environ)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as fh:
                    seen[f"proc-{entry}"] = fh.read().decode("utf-8", "replace")
            except OSError:
                pass
    with capsys.disabled():
        print("ENV-DUMP", seen)
    blob = repr(seen)
    assert not [s for s in SECRETS if s in blob]
"""


def test_secrets_in_the_environment_do_not_reach_the_tests(make_sandbox, monkeypatch):
    password, aws = f"pw-{uuid.uuid4().hex}", f"aws-{uuid.uuid4().hex}"
    bystander_secret = f"bystander-{uuid.uuid4().hex}"
    monkeypatch.setenv("FLEET_REDIS_URL", f"redis://:{password}@127.0.0.1:6379/0")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", aws)
    # a root process with a secret in its initial environment: /proc/<pid>/environ has it
    bystander = subprocess.Popen(["sleep", "60"], env={"PATH": os.environ["PATH"], "API_TOKEN": bystander_secret})
    try:
        secrets = [password, aws, bystander_secret]
        source = f"SECRETS = {secrets!r}\n" + ENV_DUMP
        result = make_sandbox(Limits(output_cap=4 * 1024**2)).run(source)
        assert result.outcomes["test_dump_environment"].passed, result.output
        assert "ENV-DUMP" in result.output and "PYTHONHASHSEED" in result.output  # the dump got through
        assert bystander_secret.encode() in Path(f"/proc/{bystander.pid}/environ").read_bytes()
        assert [s for s in secrets if s in result.output] == []
    finally:
        bystander.kill()
        bystander.wait()


SECRET_FILES = """\
import os
import pytest

def test_read_secret_file():
    with pytest.raises(PermissionError):
        with open({secret!r}) as fh:
            fh.read()

def test_list_secret_dir():
    with pytest.raises(PermissionError):
        os.listdir({secret_dir!r})

def test_public_file_next_to_it_is_readable():
    with open({public!r}) as fh:
        assert fh.read() == "public"
"""
FLOWER_AUTH = Path("/root/.local/share/fleet/flower.auth")
FLOWER_TEST = """
def test_flower_auth():
    with pytest.raises(PermissionError):
        with open({flower!r}) as fh:
            fh.read()
"""


def test_root_only_files_cannot_be_read(make_sandbox, open_dir):
    sb = make_sandbox(Limits(output_cap=4 * 1024**2))
    _require_drop(sb)
    secret_dir = open_dir / "secret"
    secret_dir.mkdir(mode=0o700)
    secret_text = f"secret-{uuid.uuid4().hex}"
    (secret_dir / "key.txt").write_text(secret_text)
    (secret_dir / "key.txt").chmod(0o644)  # only the directory closes it
    (open_dir / "public.txt").write_text("public")
    (open_dir / "public.txt").chmod(0o644)
    source = SECRET_FILES.format(secret=str(secret_dir / "key.txt"), secret_dir=str(secret_dir),
                                 public=str(open_dir / "public.txt"))
    expected = {"test_read_secret_file", "test_list_secret_dir", "test_public_file_next_to_it_is_readable"}
    if FLOWER_AUTH.exists():
        source += FLOWER_TEST.format(flower=str(FLOWER_AUTH))
        expected.add("test_flower_auth")
    result = sb.run(source)
    assert {k: o.status for k, o in result.outcomes.items()} == dict.fromkeys(expected, "passed"), result.output
    leaked = secret_text in result.output
    assert not leaked
    if FLOWER_AUTH.exists():
        flower_leaked = FLOWER_AUTH.read_text().strip() in result.output
        assert not flower_leaked, "flower.auth content reached the run output"


# --- network -------------------------------------------------------------------------------------


def _ipv4_addresses() -> list[str]:
    """127.0.0.1 and this host's interface addresses (SIOCGIFADDR)."""
    found = {"127.0.0.1"}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(probe.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))
            except OSError:
                continue
            found.add(socket.inet_ntoa(packed[20:24]))
    return sorted(found)


NETWORK = """\
import socket
import pytest

@pytest.mark.parametrize("host", {hosts!r})
def test_tcp(host):
    with pytest.raises(OSError):
        socket.create_connection((host, {port}), timeout=3)

def test_abstract_unix_socket():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with pytest.raises(OSError):
        s.connect({abstract!r})

def test_dns():
    with pytest.raises(OSError):
        socket.getaddrinfo("pypi.org", 443)
"""


def test_servers_on_the_host_are_unreachable(make_sandbox):
    _require_namespace()
    sb = make_sandbox(Limits(network="namespace"))
    assert sb.facts()["network"].startswith("network + PID namespace")
    accepted: list[object] = []
    stop = threading.Event()
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract = f"\0fleet-hostile-{uuid.uuid4().hex}"

    def serve() -> None:
        while not stop.is_set():
            ready, _, _ = select.select([tcp, unix], [], [], 0.1)
            for server in ready:
                conn, peer = server.accept()
                accepted.append(peer)
                conn.close()

    with tcp, unix:
        tcp.bind(("0.0.0.0", 0))
        tcp.listen(16)
        unix.bind(abstract)
        unix.listen(16)
        port = tcp.getsockname()[1]
        server = threading.Thread(target=serve, daemon=True)
        server.start()
        try:
            hosts = _ipv4_addresses()
            result = sb.run(NETWORK.format(hosts=hosts, port=port, abstract=abstract))
            assert {k: o.status for k, o in result.outcomes.items()} == {
                "test_tcp": "passed", "test_abstract_unix_socket": "passed", "test_dns": "passed"}, result.output
            assert accepted == []  # nothing got through
            # control: both servers do accept from the host
            socket.create_connection(("127.0.0.1", port), timeout=3).close()
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.connect(abstract)
            deadline = time.monotonic() + 5
            while len(accepted) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert len(accepted) == 2
        finally:
            stop.set()
            server.join(5)


# --- processes and signals -------------------------------------------------------------------------


KILLER = """\
import os

def test_kill_everything():
    for pid in (os.getppid(), 1, -1, 0):  # -1: every process we may signal; 0: our process group
        try:
            os.kill(pid, 9)
        except OSError:
            pass
"""


def test_killing_parent_init_and_everyone_stays_inside_the_pid_namespace(make_sandbox):
    _require_namespace()  # without a PID namespace getppid() could be this very process
    sb = make_sandbox()
    _require_drop(sb)
    marker = _marker()
    # a process of the sandbox user outside the sandbox: kill(-1, 9) as nobody would hit it
    bystander = subprocess.Popen(["setpriv", f"--reuid={sb.ids[0]}", f"--regid={sb.ids[1]}", "--clear-groups",
                                  "--", "sleep", marker])
    try:
        deadline = time.monotonic() + 5
        while not _processes(marker, NOBODY_UID) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _processes(marker, NOBODY_UID) == [bystander.pid]
        me, my_parent = os.getpid(), os.getppid()
        result = sb.run(KILLER)
        assert isinstance(result, RunResult)
        assert not result.timed_out and result.seconds < 30
        assert _alive(me) and _alive(my_parent) and os.getppid() == my_parent
        assert bystander.poll() is None and _alive(bystander.pid)
        again = sb.run(OK_TEST)  # the sandbox is still usable
        assert again.outcomes["test_ok"].passed, again.output
    finally:
        bystander.kill()
        bystander.wait()


IGNORE_TERM = """\
import signal

def test_stubborn():
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    while True:
        pass
"""
IGNORE_ALARM = """\
import signal
import time

def test_stubborn():
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})  # pytest-timeout's alarm, too
    while True:
        time.sleep(0.01)
"""


def test_ignoring_sigterm_in_a_busy_loop_is_cut(make_sandbox):
    sb = make_sandbox(Limits(timeout=5))  # pytest-timeout is 5 s as well
    result = sb.run(IGNORE_TERM)
    assert result.seconds < 10
    stubborn = result.outcomes.get("test_stubborn")
    assert result.timed_out or (stubborn.status == "failed" and "Timeout" in stubborn.message), result.output
    assert _gone(str(sb.root), grace=3.0)


def test_ignoring_pytest_timeouts_alarm_leaves_the_wall_timeout(make_sandbox):
    sb = make_sandbox(Limits(timeout=4))  # pytest-timeout would be 5 s, but it is disarmed anyway
    result = sb.run(IGNORE_ALARM)
    assert result.timed_out, result.output
    assert result.outcomes == {} and not result.collected
    assert result.seconds < 4 + 5
    assert _gone(str(sb.root), grace=3.0)


# --- output --------------------------------------------------------------------------------------


STDERR_FLOOD = """\
import os

def test_flood(capfd):
    with capfd.disabled():
        os.write(2, b"E\\xff" * 500_000)  # 1 MB, not UTF-8
"""
ENDLESS_STDERR = """\
import os

def test_flood(capfd):
    with capfd.disabled():
        while True:
            os.write(2, b"E" * 65536)
"""


def test_stderr_flood_is_capped(make_sandbox):
    result = make_sandbox(Limits(output_cap=4096)).run(STDERR_FLOOD)
    assert result.outcomes["test_flood"].passed
    assert result.output.startswith("E\ufffd" * 2000)
    assert result.output.endswith("\n[output truncated]")
    assert len(result.output) == 4096 + len("\n[output truncated]")


def test_endless_stderr_flood_is_stopped_by_rlimit_fsize(make_sandbox):
    result = make_sandbox(Limits(output_cap=4096, file_bytes=1024**2, timeout=20)).run(ENDLESS_STDERR)
    assert not result.timed_out and result.seconds < 15  # EFBIG at 1 MiB, long before the timeout
    assert result.returncode != 0
    assert not [k for k, o in result.outcomes.items() if o.passed]
    # pytest itself cannot write its report any more: an internal error, reported as such
    assert any("File too large" in o.message for o in result.outcomes.values()), result.outcomes
    assert result.output.startswith("E" * 4000) and result.output.endswith("\n[output truncated]")


# --- the run directory -----------------------------------------------------------------------------


VANDAL = """\
import os
import shutil

def test_vandal():
    home = os.environ["HOME"]
    for name in os.listdir(home):
        if name == "output.txt":
            continue
        path = os.path.join(home, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)  # src/ and tests/ are root's: emptied where possible
            if os.path.exists(path):
                os.rename(path, path + "-gone")
        else:
            os.unlink(path)
    for name in (".coverage", "junit.xml"):
        path = os.path.join(home, name)
        if {as_dirs}:
            os.mkdir(path)
        else:
            with open(path, "wb") as fh:
                fh.write(os.urandom(4096) + b"<testsuite><testcase")
    if {hard_exit}:
        os._exit(0)  # pytest never gets to rewrite junit.xml or .coverage
"""


@pytest.mark.parametrize("as_dirs, hard_exit", [(False, True), (True, True), (False, False)],
                         ids=["garbage-then-exit", "directories-then-exit", "garbage-then-continue"])
def test_vandalised_run_dir_does_not_break_run(make_sandbox, as_dirs, hard_exit):
    sb = make_sandbox()
    result = sb.run(VANDAL.format(as_dirs=as_dirs, hard_exit=hard_exit))
    assert isinstance(result, RunResult) and not result.timed_out
    if hard_exit:
        assert result.outcomes == {} and not result.collected
        assert result.lines_by_context == {} and result.arcs_by_context == {}
    assert sb.run(OK_TEST).outcomes["test_ok"].passed  # the next run starts clean


# --- attacks on the run directory ------------------------------------------------------------


def test_deleting_result_files_does_not_break_run(make_sandbox):
    """The run's output is captured outside the run dir; junit.xml and .coverage missing read as
    no result, never as an exception into the worker."""
    source = ("import os\n\ndef test_rm():\n    home = os.environ['HOME']\n"
              "    for name in os.listdir(home):\n        p = os.path.join(home, name)\n"
              "        if os.path.isfile(p):\n            os.unlink(p)\n    print('still here')\n"
              "    os._exit(0)\n")
    result = make_sandbox().run(source)
    assert isinstance(result, RunResult) and result.outcomes == {}


LINK_RESULTS = """\
import os

def test_swap():
    try:
        open({secret!r}).close()
    except PermissionError:
        pass
    else:
        raise AssertionError("the secret is directly readable: the test proves nothing")
    home = os.environ["HOME"]
    for name in ("output.txt", "junit.xml", "observed.jsonl", ".coverage"):
        path = os.path.join(home, name)
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink({secret!r}, path)
    os._exit(0)
"""


def test_result_symlinks_do_not_leak_root_only_files(make_sandbox, open_dir):
    """Result files replaced by symlinks to a root-only file are not followed when read back."""
    sb = make_sandbox()
    _require_drop(sb)
    secret_dir = open_dir / "secret"
    secret_dir.mkdir(mode=0o700)
    secret_text = f"secret-{uuid.uuid4().hex}"
    (secret_dir / "key.txt").write_text(secret_text)
    result = sb.run(LINK_RESULTS.format(secret=str(secret_dir / "key.txt")))
    assert secret_text not in result.output + result.observed
    assert result.outcomes == {} and result.lines_by_context == {}


PLANT_NEXT_RUN = """\
import os

def test_plant():
    home = os.environ["HOME"]
    runs = os.path.dirname(home)  # the sandbox root, owned by the sandbox user
    following = os.path.join(runs, "run%d" % (int(os.path.basename(home)[3:]) + 1))
    if {symlink}:
        os.symlink({victim!r}, following)
    else:
        os.makedirs(os.path.join(following, "tests"))
"""


@pytest.mark.parametrize("symlink", [True, False], ids=["symlink", "directory"])
def test_planted_next_run_dir_is_not_trusted(make_sandbox, open_dir, symlink):
    """Run dirs have predictable names (run1, run2, ...), but the sandbox root stays root's (0711):
    a run cannot plant ``run<N+1>`` (a symlink or a directory) for the next run to trust."""
    sb = make_sandbox()
    _require_drop(sb)
    victim = open_dir / "victim"
    victim.mkdir(mode=0o755)
    first = sb.run(PLANT_NEXT_RUN.format(symlink=symlink, victim=str(victim)))
    assert first.outcomes["test_plant"].status == "failed" and "PermissionError" in first.outcomes["test_plant"].message
    assert sb.run(OK_TEST).outcomes["test_ok"].passed
    owner, content = victim.stat().st_uid, sorted(p.name for p in victim.iterdir())
    assert (owner, content) == (0, []), f"victim dir now owned by uid {owner}, holding {content}"


FIFO_HELPER = r"""
import json, os, sys, threading, time, traceback
from fleet.sandbox import Limits, Sandbox
SOURCE = '''
import os
def test_fifo():
    path = os.path.join(os.environ["HOME"], NAME)
    if os.path.lexists(path):
        os.unlink(path)
    os.mkfifo(path)
    os._exit(0)
'''
names = json.loads(sys.argv[1])
boxes = {n: Sandbox({"m.py": "x = 1\n"}, "m.py", Limits(timeout=20)) for n in names}
print(json.dumps({"roots": [str(sb.root) for sb in boxes.values()]}), flush=True)
threads = {n: threading.Thread(target=boxes[n].run, args=(f"NAME = {n!r}\n" + SOURCE,), daemon=True)
           for n in names}
for t in threads.values():
    t.start()
deadline = time.monotonic() + 25
def sandboxed_running():
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            line = open(f"/proc/{pid}/cmdline", "rb").read().decode("utf-8", "replace")
        except OSError:
            continue
        if any(str(sb.root) in line for sb in boxes.values()):
            return True
    return False
while sandboxed_running() and time.monotonic() < deadline:
    time.sleep(0.05)
settle = min(deadline, time.monotonic() + 3)  # reading three small files takes far less
for t in threads.values():
    t.join(max(0.0, settle - time.monotonic()))
frames = sys._current_frames()
hung = {n: [f"{fs.name} ({os.path.basename(fs.filename)}:{fs.lineno})"
            for fs in traceback.extract_stack(frames[t.ident])][-4:]
        for n, t in threads.items() if t.is_alive()}
print(json.dumps({"hung": hung}), flush=True)
os._exit(0)
"""
FIFO_NAMES = ["output.txt", "junit.xml", ".coverage"]


@pytest.fixture(scope="module")
def fifo_hangs():
    """Runs the three FIFO cases at once in a helper process (a hung run() cannot be cancelled
    in-process), and returns {file name: stack of the run() still blocked, if any}."""
    helper = subprocess.Popen([sys.executable, "-c", FIFO_HELPER, json.dumps(FIFO_NAMES)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = helper.communicate(timeout=50)
    except subprocess.TimeoutExpired:
        helper.kill()
        out, err = helper.communicate()
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    for line in lines:
        for root in line.get("roots", []):
            shutil.rmtree(root, ignore_errors=True)  # hung runs never cleaned up
    results = [line["hung"] for line in lines if "hung" in line]
    assert results, f"FIFO helper failed: {err[-2000:]}"
    return results[0]


@pytest.mark.parametrize("name", FIFO_NAMES)
def test_fifo_in_run_dir_does_not_hang_run(fifo_hangs, name):
    """Result files replaced by a FIFO (``os.mkfifo``) are not regular files: run() skips them
    instead of blocking in open()/read() after the wall timeout no longer applies."""
    assert name not in fifo_hangs, f"run() still blocked after the child exited: {fifo_hangs[name]}"
