"""The local fleet's process supervisor: supervisord, configured from the settings.

``fleet up`` writes ``<data_dir>/run/supervisord.conf`` and starts supervisord (it daemonizes);
``fleet scale N`` rewrites the agent programs and applies the difference like
``supervisorctl update`` (only added agents start, only removed agents stop; the others run on);
``fleet down`` asks supervisord to stop everything and exit. Each agent is its own program
``agent-<k>`` (not a group, so changing the count never restarts the running ones).

Contract of the generated configuration:

- ``redis`` (priority 10), ``beat`` (30), ``agent-<k>`` (50), ``flower`` (60): started in that order
  and stopped in the reverse one, so agents requeue their job while Redis still runs.
- Every program is restarted when it dies (``autorestart``), so a crashed or killed agent comes
  back and its unacknowledged job is redelivered.
- Agents get SIGTERM (remapped to SIGQUIT by the agent: soft shutdown, then requeue) and
  ``stopwaitsecs = celery.soft_shutdown_timeout + local.stop_margin`` before SIGKILL of the group;
  the signal goes to the Celery main process only (its pool child must not be killed under it).
- llama.cpp threads: an agent added for a fleet of N agents gets ``--threads max(1, cores // N)``
  (used when ``model.n_threads`` is 0, auto), so busy agents do not oversubscribe the cores. A
  running agent's program is kept as it is when the count changes (changing it would restart
  the agent), so after a scale-up the older agents keep their larger share until restarted.
- Logs: ``<data_dir>/run/logs/<program>.log``; the control socket (:func:`control_socket`) is
  mode 0700 (root or the fleet's user only).
"""

from __future__ import annotations

import configparser
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import xmlrpc.client
from pathlib import Path
from typing import Any

from fleet.config import Settings
from fleet.errors import FleetError

PRIORITIES = {"redis": 10, "beat": 30, "agent": 50, "flower": 60}


def agent_names(count: int) -> list[str]:
    return [f"agent-{k}" for k in range(1, count + 1)]


def control_socket(run_dir: Path) -> Path:
    """``<run_dir>/supervisor.sock``, or ``$TMPDIR/fleet-<sha1 of run_dir>.sock`` when that path is
    too long for a unix socket (108 bytes on Linux)."""
    path = run_dir / "supervisor.sock"
    if len(str(path).encode()) < 100:
        return path
    digest = hashlib.sha1(str(run_dir).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"fleet-{digest}.sock"


class Supervisor:
    """supervisord for one fleet data dir: its files, its config, and its XML-RPC interface."""

    def __init__(self, settings: Settings, run_dir: Path) -> None:
        self.settings, self.run_dir = settings, run_dir
        self.conf = run_dir / "supervisord.conf"
        self.socket = control_socket(run_dir)
        self.pidfile = run_dir / "supervisord.pid"
        self.logs = run_dir / "logs"

    # -- configuration ----------------------------------------------------------------------
    def _fleet(self, *args: str) -> str:
        """The command line of a ``fleet`` subcommand run by this interpreter."""
        return " ".join([sys.executable, "-m", "fleet", *args])

    def _program(self, name: str, command: str, priority: int, stopwait: float) -> dict[str, str]:
        return {"command": command, "priority": str(priority), "autostart": "true", "autorestart": "true",
                "startsecs": "2", "startretries": "10", "stopsignal": "TERM", "stopwaitsecs": str(int(stopwait)),
                "stopasgroup": "false", "killasgroup": "true", "redirect_stderr": "true",
                "stdout_logfile": str(self.logs / f"{name}.log"), "stdout_logfile_maxbytes": "20MB",
                "stdout_logfile_backups": "3"}

    def _current_agents(self) -> dict[str, dict[str, str]]:
        """The agent programs of the config file as written now (none when there is none)."""
        cp = configparser.ConfigParser(interpolation=None)
        if self.conf.exists():
            cp.read_string(self.conf.read_text())
        return {section.removeprefix("program:"): dict(cp[section]) for section in cp.sections()
                if section.startswith("program:agent-")}

    def render(self, agents: int, *, fresh: bool = True) -> str:
        """The supervisord.conf text for ``agents`` agents (see the module docstring); unless
        ``fresh``, agents already in the config file keep their program section unchanged."""
        local = self.settings["local"]
        keep = {} if fresh else self._current_agents()
        threads = max(1, (os.cpu_count() or 1) // agents)
        agent_wait = self.settings["celery"]["soft_shutdown_timeout"] + local["stop_margin"]
        cp = configparser.ConfigParser(interpolation=None)
        cp["unix_http_server"] = {"file": str(self.socket), "chmod": "0700"}
        cp["supervisord"] = {"logfile": str(self.logs / "supervisord.log"), "pidfile": str(self.pidfile),
                             "childlogdir": str(self.logs), "directory": str(self.run_dir)}
        cp["rpcinterface:supervisor"] = {"supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"}
        cp["supervisorctl"] = {"serverurl": f"unix://{self.socket}"}
        cp["program:redis"] = self._program("redis", self._fleet("run-redis"), PRIORITIES["redis"], 30)
        cp["program:beat"] = self._program("beat", self._fleet("run-beat"), PRIORITIES["beat"], 15)
        for name in agent_names(agents):
            command = self._fleet("run-agent", "--id", name, "--threads", str(threads))
            cp[f"program:{name}"] = keep.get(name) or self._program(name, command, PRIORITIES["agent"], agent_wait)
        cp["program:flower"] = self._program("flower", self._fleet("run-flower"), PRIORITIES["flower"], 15)
        out = io.StringIO()
        cp.write(out)
        return out.getvalue()

    def write(self, agents: int, *, fresh: bool = True) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        tmp = self.conf.with_suffix(".tmp")
        tmp.write_text(self.render(agents, fresh=fresh))
        os.replace(tmp, self.conf)

    # -- lifecycle --------------------------------------------------------------------------
    def rpc(self) -> Any:
        """The ``supervisor`` namespace of supervisord's XML-RPC interface (over the unix socket)."""
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, f"unix://{self.socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def running(self) -> bool:
        try:
            return self.rpc().getState()["statename"] == "RUNNING"
        except (OSError, xmlrpc.client.Fault):
            return False

    def start(self, agents: int) -> None:
        """Write the config for ``agents`` agents and start supervisord (returns once it daemonized)."""
        self.write(agents)
        done = subprocess.run([sys.executable, "-m", "supervisor.supervisord", "-c", str(self.conf)],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise FleetError(f"supervisord did not start: {(done.stderr or done.stdout).strip()[-500:]}")

    def agents(self) -> dict[str, str]:
        """Agent program name → supervisord state (RUNNING, STARTING, BACKOFF, STOPPED, …)."""
        return {p["name"]: p["statename"] for p in self.rpc().getAllProcessInfo() if p["name"].startswith("agent-")}

    def scale(self, agents: int) -> dict[str, list[str]]:
        """Rewrite the config for ``agents`` agents and apply it as ``supervisorctl update`` does:
        removed programs are stopped (soft shutdown: the job is requeued) and removed, added ones
        started; returns {"added": [...], "removed": [...]}."""
        self.write(agents, fresh=False)
        rpc = self.rpc()
        added, changed, removed = rpc.reloadConfig()[0]
        for name in removed + changed:
            rpc.stopProcessGroup(name, True)
            rpc.removeProcessGroup(name)
        for name in changed + added:
            rpc.addProcessGroup(name)
        return {"added": sorted(added), "removed": sorted(removed)}

    def shutdown(self) -> None:
        """Ask supervisord to stop all programs (reverse priority) and exit."""
        self.rpc().shutdown()

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None
