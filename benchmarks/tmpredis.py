"""A throwaway redis-server for benchmarks: on a free loopback port, no persistence, stopped at the end."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from typing import Iterator

import redis

from fleet.llm.loopback import free_port


@contextlib.contextmanager
def redis_for(url: str | None) -> Iterator[str | None]:
    """``url`` if given; else a temporary redis-server on a free loopback port (stopped at the end);
    None when redis-server is not installed."""
    binary = shutil.which("redis-server")
    if url or binary is None:
        yield url
        return
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", workdir, "--save", "",
                                 "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            started = f"redis://127.0.0.1:{port}/0"
            _wait_ping(started)
            yield started
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def _wait_ping(url: str) -> None:
    client = redis.Redis.from_url(url)
    for _ in range(200):
        with contextlib.suppress(redis.ConnectionError):
            client.ping()
            return
        time.sleep(0.05)
    raise RuntimeError(f"redis-server at {url} did not start")
