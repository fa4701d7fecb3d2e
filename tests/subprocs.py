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
