"""A watchdog that ends this process's children when it dies, SIGKILL included.

PyTriton starts ``tritonserver`` (and Triton starts its Python-backend stub) as child processes. When
``polyp-live-serve`` is killed outright, nothing runs its clean-up: the children are re-parented and
keep the ports for about 30 s, so a restart fails with "port is not free". The guard is a small
separate process that holds the read end of a pipe whose write end only this process has. While it
is alive the guard records this process's descendants every half second; when the pipe reports
end-of-file (this process is gone, however it went) it sends SIGTERM to the recorded descendants
that are still the same processes, then SIGKILL to any left after two seconds, and exits.
"""

from __future__ import annotations

import os
import subprocess
import sys

# The guard runs as ``python -c GUARD``: no import of polyp_live, so it starts in milliseconds.
GUARD = r"""
import os, select, signal, sys, time
parent = int(sys.argv[1])

def start_time(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19]
    except OSError:
        return None

def descendants(root):
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as fh:
                    ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child != os.getpid():
                found.append(child)
                todo.append(child)
    return found

known = {}
while True:
    ready, _, _ = select.select([0], [], [], 0.5)
    if ready and not os.read(0, 4096):
        break  # end-of-file: the parent is gone
    for pid in descendants(parent):
        known.setdefault(pid, start_time(pid))
    known = {pid: t for pid, t in known.items() if t is not None and start_time(pid) == t}
for sig in (signal.SIGTERM, signal.SIGKILL):
    alive = [pid for pid, t in known.items() if start_time(pid) == t]
    for pid in alive:
        try:
            os.kill(pid, sig)
        except OSError:
            pass
    deadline = time.monotonic() + 2.0
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [pid for pid in alive if start_time(pid) == known[pid]]
"""


class OrphanGuard:
    """Start with :meth:`start` before the children; :meth:`stop` after a clean shutdown."""

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None
        self._write_fd: int | None = None

    def start(self) -> None:
        """Start the guard (Linux only: it reads /proc; elsewhere it does nothing)."""
        if not sys.platform.startswith("linux") or self._process is not None:
            return
        read_fd, write_fd = os.pipe()  # both non-inheritable: the children never hold the write end
        try:
            self._process = subprocess.Popen([sys.executable, "-c", GUARD, str(os.getpid())], stdin=read_fd,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                             start_new_session=True)  # a Ctrl+C to our group spares it
        finally:
            os.close(read_fd)
        self._write_fd = write_fd

    def stop(self) -> None:
        """Close the pipe (the guard then ends what is left, normally nothing) and reap the guard."""
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
        if self._process is not None:
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
            self._process = None
