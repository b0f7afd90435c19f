"""Signals from the first line of ``polyp-live``: nothing is imported yet that a signal could break.

Heavy imports (NumPy, OpenCV, ONNX Runtime) and a model load take a second or more. A
``KeyboardInterrupt`` raised inside them can surface as something else entirely: NumPy's C-API import
turns any exception into ``ImportError``, which the ONNX Runtime backend reports as "onnxruntime is
not installed". So the handler never raises: it remembers the first signal, interrupts a source
that is opening or reading, and stops the pipeline; the command checks :meth:`SignalGuard.check`
between the loading steps and exits 128 + the signal number. Before the pipeline starts nothing
can be lost, so a second signal then exits at once.
"""

from __future__ import annotations

import os
import signal
import threading

HANDLED = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class Interrupted(Exception):
    """A signal arrived while ``polyp-live`` was still loading; carries the signal number."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class SignalGuard:
    """Context manager that owns SIGINT, SIGTERM and SIGHUP for the duration of one command.

    Attributes:
        signum: the first signal received, or None.
        source: a source to interrupt (its blocked open or read gives up) once set.
        pipeline: a pipeline to stop once set.
        started: True once the pipeline runs; from then on later signals only repeat the stop.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.source = None
        self.pipeline = None
        self.started = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "SignalGuard":
        # signal.signal works only in the main thread; main() called from elsewhere keeps the defaults.
        if threading.current_thread() is threading.main_thread():
            for signum in HANDLED:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        # After a signal the command is on its way out with 128 + N: a late second signal (SIGTERM
        # then SIGINT, a closing terminal) must not turn that into a KeyboardInterrupt traceback.
        # Otherwise the caller's handlers come back (tests run main() inside pytest).
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_IGN if self.signum is not None else handler)
        self._previous.clear()

    def _handle(self, signum: int, _frame) -> None:
        if self.signum is None:
            self.signum = signum
        elif not self.started:
            # Still loading: no recording exists yet, so a second signal need not wait for anything.
            os.write(2, f"polyp-live: stopped by {signal.Signals(self.signum).name}\n".encode())
            os._exit(128 + self.signum)
        if self.source is not None:
            self.source.interrupt()
        if self.pipeline is not None:
            self.pipeline.stop.set()

    def check(self) -> None:
        """Raise :class:`Interrupted` if a signal has arrived (call between loading steps)."""
        if self.signum is not None:
            raise Interrupted(self.signum)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum) if self.signum is not None else 0
