"""A per-provider circuit breaker.

States and transitions::

    closed    --(``failures`` consecutive failures)------------------> open
    open      --(``reset_after`` seconds since it opened)-------------> half-open
    half-open --(allow() hands out exactly one probe; others refused)
              --(probe succeeds)--> closed   --(probe fails)--> open (for another reset_after)

A success in the closed state resets the consecutive-failure count. A success reported in any
state closes the breaker (the provider answered). A probe that is not reported within
``reset_after`` seconds is presumed lost (its caller died) and the next ``allow()`` hands out a
new probe, so the breaker cannot stay half-open forever. Every method takes one lock.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Literal

State = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    """Refuses calls to a provider that keeps failing; see the module docstring for the contract."""

    def __init__(self, failures: int = 3, reset_after: float = 60.0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 1:
            raise ValueError(f"a breaker needs failures >= 1, got {failures}")
        if reset_after <= 0:
            raise ValueError(f"a breaker needs reset_after > 0 seconds, got {reset_after}")
        self.failures = failures
        self.reset_after = reset_after
        self._clock = clock
        self._lock = threading.Lock()
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probe_since: float | None = None
        self._opens = 0

    def _state(self, now: float) -> State:
        """The state at ``now``; the caller holds the lock."""
        if self._opened_at is None:
            return "closed"
        if self._probe_since is not None or now - self._opened_at >= self.reset_after:
            return "half-open"
        return "open"

    def _probe_lost(self, now: float) -> bool:
        return self._probe_since is not None and now - self._probe_since >= self.reset_after

    def allow(self) -> bool:
        """True if a call may go out now: always when closed, never when open, and once per
        probe when half-open (the caller must then report the outcome)."""
        with self._lock:
            now = self._clock()
            state = self._state(now)
            if state == "closed":
                return True
            if state == "open" or (self._probe_since is not None and not self._probe_lost(now)):
                return False
            self._probe_since = now
            return True

    def record_success(self) -> None:
        """The provider answered: close and reset the failure count."""
        with self._lock:
            self._consecutive = 0
            self._opened_at = None
            self._probe_since = None

    def record_failure(self) -> None:
        """Count a failure; open when the count reaches ``failures`` or when a probe failed."""
        with self._lock:
            now = self._clock()
            self._consecutive += 1
            probing = self._probe_since is not None
            if probing or (self._opened_at is None and self._consecutive >= self.failures):
                self._open(now)

    def _open(self, now: float) -> None:
        self._opened_at = now
        self._probe_since = None
        self._opens += 1

    @property
    def state(self) -> State:
        with self._lock:
            return self._state(self._clock())

    def snapshot(self) -> dict[str, Any]:
        """``{"state", "consecutive_failures", "opened_at", "opens"}``; ``opened_at`` is the clock
        reading of the latest opening (None when closed), ``opens`` counts openings ever."""
        with self._lock:
            return {
                "state": self._state(self._clock()),
                "consecutive_failures": self._consecutive,
                "opened_at": self._opened_at,
                "opens": self._opens,
            }
