"""When to stop a reply while it streams: at a repeated block, or when the job's time is up.

The job's time budget is checked between prompts, and, through this rule, at each line of a reply,
so that one slow generation cannot run past the budget (on a loaded 2-core host one reply of
≤ 900 tokens took 30 minutes). A reply stopped by the deadline is judged up to its last complete
line (an unfinished test is then repaired or dropped like any cut-off reply); one stopped at a
repeat is judged up to the repeated block (:mod:`fleet.trm.runaway`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from fleet.trm.runaway import before_halt, repeating


@dataclass
class StreamStop:
    """The ``halt`` rule of one reply: true once ``clock() >= deadline`` (``why = "deadline"``),
    or, when ``runaway`` is on, once :func:`repeating` holds (``why = "repeat"``)."""

    deadline: float
    runaway: bool = True
    clock: Callable[[], float] = time.monotonic
    why: str = field(default="", init=False)

    def __call__(self, text: str) -> bool:
        if self.clock() >= self.deadline:
            self.why = "deadline"
        elif self.runaway and repeating(text):
            self.why = "repeat"
        return bool(self.why)

    def kept(self, text: str) -> str:
        """The part of the reply to judge: all of it unless halted; before the repeated block after a
        repeat; up to the last line end after the deadline."""
        if self.why == "repeat":
            return before_halt(text)
        if self.why == "deadline":
            return text[: text.rfind("\n") + 1]
        return text
