"""Running commands from tests: each in its own process group, so a timeout ends the whole tree
(``run.sh`` and the ``s2s-media`` processes it started), never leaving orphans behind."""
from __future__ import annotations

import os
import signal
import socket
import subprocess


def run(cmd: list[str], timeout: float = 240, **kw) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True)`` in a new process group. On timeout the group
    gets SIGTERM (torchrun passes it on to its workers), then SIGKILL, and ``TimeoutExpired`` is raised."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                          **kw) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _end_group(proc)
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _end_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.communicate(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def free_port() -> int:
    """A TCP port nobody listens on now (for torchrun's rendezvous: runs in parallel must not share one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Spawned:
    """A long-running command in its own process group (a server, a load balancer), its output
    read by a thread into ``lines``; as a context manager, its whole group is ended on exit."""

    def __init__(self, cmd: list[str], **kw):
        import queue
        import threading
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True, **kw)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=lambda: [self.lines.put(line) for line in self.proc.stdout], daemon=True).start()

    def wait_for(self, pattern: str, timeout: float) -> "re.Match":
        """The first output line matching ``pattern`` (a regex); AssertionError with the output on timeout
        or when the process ends first."""
        import queue
        import re
        import time
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if m := re.search(pattern, line):
                return m
        raise AssertionError(f"{self.proc.args[:3]}: no line matching {pattern!r}; output: {''.join(self.seen)[-3000:]}")

    def end(self) -> None:
        """SIGTERM to the whole group, then SIGKILL if it is still there after 15 s."""
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> "Spawned":
        return self

    def __exit__(self, *exc) -> None:
        self.end()
