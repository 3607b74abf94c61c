"""A loopback OpenAI-compatible server: llama-cpp-python's ``python -m llama_cpp.server`` on a GGUF,
on a free 127.0.0.1 port, logging to a file (the remote provider's tests and benchmarks use it).

    with LlamaServer(model_path, log_path=...) as server:
        server.base_url                                     # http://127.0.0.1:<port>/v1
        server.stop(); server.start()                       # same port again (breaker runs)

Needs the server extras of llama-cpp-python: uvicorn, fastapi, sse-starlette, starlette-context,
pydantic-settings.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import httpx

from fleet import config
from fleet.llm.models import ResolvedModel, resolve

HOST = "127.0.0.1"


class ServerStartError(RuntimeError):
    """The server exited or did not answer in time; the message ends with its log's tail."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def default_model() -> ResolvedModel:
    """The verified default GGUF (``FLEET_MODEL_PATH`` / ``FLEET_MODEL_NAME`` honoured)."""
    return resolve(config.load())


def _server_env() -> dict[str, str]:
    """The environment without variables the server would read as settings (pydantic-settings
    matches field names case-insensitively; ``HOST``/``PORT`` even override the CLI)."""
    from llama_cpp.server.settings import Settings

    names = {name.lower() for name in Settings.model_fields} | {"config_file", "host", "port"}
    return {k: v for k, v in os.environ.items() if k.lower() not in names}


class LlamaServer:
    """One ``llama_cpp.server`` subprocess that can be stopped and started again on its port."""

    def __init__(self, model_path: Path, *, model_alias: str = "", log_path: Path | None = None,
                 port: int | None = None, n_ctx: int = 1024, embedding: bool = True,
                 extra_args: Sequence[str] = ()) -> None:
        self.model_path = Path(model_path)
        self.model_alias = model_alias or self.model_path.stem
        self.port = port or free_port()
        self.log_path = log_path or Path(tempfile.mkdtemp(prefix="llm-server-")) / "server.log"
        # interrupt_requests false: otherwise any request (a health probe too) ends a running
        # stream early with a normal-looking [DONE].
        self.args = ["--n_ctx", str(n_ctx), "--embedding", str(embedding).lower(),
                     "--interrupt_requests", "false", *extra_args]
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model_path),
                "--model_alias", self.model_alias, "--host", HOST, "--port", str(self.port), *self.args]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def start(self, timeout: float = 120.0) -> "LlamaServer":
        """Start the server and wait until ``GET /v1/models`` answers 200."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=_server_env())
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerStartError(f"llama_cpp.server exited with {self.proc.returncode}; "
                                       f"log {self.log_path}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise ServerStartError(f"llama_cpp.server did not answer within {timeout:.0f} s; "
                               f"log {self.log_path}:\n{self.log_tail()}")

    def stop(self) -> None:
        """Terminate the server (kill after 15 s) and wait for it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self.proc = None

    def __enter__(self) -> "LlamaServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
