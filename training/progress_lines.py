"""Training progress as plain lines, for a log file or a terminal that is not one (nohup, CI, a pipe).

rich's progress bar draws nothing when its console is not a terminal, so a background run was
silent for hours. :class:`LineProgress` takes the same calls the trainer makes on a rich Progress
(``start``, ``print``, ``add_task``, ``update``, ``stop``) and prints a line when an epoch starts, every
``every_s`` seconds within it (step, loss, steps per second, time left in the epoch) and when it
ends with its validation figures; each line also goes to ``log_path`` when given.
:class:`LoggedProgress` keeps the same log under a terminal's rich bar, so every run leaves one.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


class _Started:
    is_started = False


class LineProgress:
    """A stand-in for ``rich.progress.Progress`` that writes lines."""

    def __init__(self, stream=None, log_path: str | Path | None = None, every_s: float = 30.0, echo: bool = True):
        self.stream = (stream or sys.stderr) if echo else None  # echo=False: the log file only
        self.log_path = Path(log_path) if log_path else None
        self.every_s = every_s
        self.live = _Started()
        self._tasks: dict[int, dict] = {}

    def _say(self, text: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {text}"
        if self.stream is not None:
            print(line, file=self.stream, flush=True)
        if self.log_path is not None and self.log_path.parent.is_dir():
            with open(self.log_path, "a") as fh:
                fh.write(line + "\n")

    def print(self, text: str) -> None:
        """One line of its own (as rich's ``Progress.print``), timestamped and kept in the log."""
        self._say(text)

    def start(self) -> None:
        self.live.is_started = True

    def stop(self) -> None:
        self.live.is_started = False

    def add_task(self, description: str, total: int | None = None) -> int:
        ident = len(self._tasks)
        now = time.monotonic()
        self._tasks[ident] = {"total": total, "done": 0, "start": now, "said": now, "description": description}
        self._say(f"{description}: started ({total} steps)")
        return ident

    def update(self, task: int, advance: int = 0, description: str | None = None) -> None:
        state = self._tasks[task]
        state["done"] += advance
        now = time.monotonic()
        if description is not None:
            state["description"] = description
        finished = state["total"] is not None and state["done"] >= state["total"]
        if advance and not finished and now - state["said"] < self.every_s:
            return
        if advance == 0 and finished:
            self._say(f"{state['description']} ({now - state['start']:.0f} s)")  # the epoch's closing line
            return
        rate = state["done"] / max(1e-6, now - state["start"])
        left = (state["total"] - state["done"]) / rate if state["total"] and rate > 0 else 0.0
        self._say(f"{state['description']}: step {state['done']}/{state['total']}, {rate:.2f} steps/s, "
                  f"about {left / 60:.1f} min left in this epoch")
        state["said"] = now


class LoggedProgress:
    """A rich Progress on a terminal whose lines (as :class:`LineProgress` words them) also go to a log.

    The trainer sees one progress object; the bar shows the run, and ``log_path`` keeps its history
    after the terminal is gone.
    """

    def __init__(self, progress, log_path: str | Path):
        self.progress = progress
        self.lines = LineProgress(log_path=log_path, echo=False)
        self.live = progress.live
        self._line_task: dict[int, int] = {}

    def print(self, text: str) -> None:
        self.progress.print(text, highlight=False)
        self.lines.print(text)

    def start(self) -> None:
        self.progress.start()
        self.lines.start()

    def stop(self) -> None:
        self.progress.stop()
        self.lines.stop()

    def add_task(self, description: str, total: int | None = None) -> int:
        task = self.progress.add_task(description, total=total)
        self._line_task[task] = self.lines.add_task(description, total=total)
        return task

    def update(self, task: int, advance: int = 0, description: str | None = None) -> None:
        self.progress.update(task, advance=advance, description=description)
        self.lines.update(self._line_task[task], advance=advance, description=description)
