"""Prometheus metrics in the text exposition format (version 0.0.4), written out by hand.

Four metric kinds would need a dependency; the server uses counters, one gauge and histograms,
which fit in this module. All updates take one lock: the decoding thread observes latencies
while the event loop counts sessions and audio.
"""
from __future__ import annotations

import bisect
import threading
from collections.abc import Callable
from dataclasses import dataclass

from server.protocol import CLOSE_CODES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
# why a connection was refused or a session ended by a server limit (``s2s_refused_total{reason}``)
REFUSALS = ("max_sessions", "max_per_client", "unauthorized", "start_timeout", "idle_timeout", "min_audio_rate",
            "max_session", "too_large", "max_upload", "max_audio")


@dataclass(frozen=True)
class WorkerStats:
    """One decoding worker as ``/metrics`` shows it (the server process itself with ``--workers 1``)."""
    index: int
    pid: int
    sessions: int          # streams assigned to it and not closed
    batches: int           # decode_streams calls so far


def rss_bytes(pid: int) -> int | None:
    """Resident memory of process ``pid`` (``/proc/PID/status`` VmRSS); None where there is no /proc or no process."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:")), None)
    except OSError:
        return None


def worker_lines(workers: list[WorkerStats], restarts: int) -> list[str]:
    """The per-worker gauges and counters: memory, sessions, batches; and restarts of dead workers."""
    rss = [(w, rss_bytes(w.pid)) for w in workers]
    return [
        "# HELP s2s_worker_rss_bytes Resident memory of each decoding worker process.",
        "# TYPE s2s_worker_rss_bytes gauge",
        *(f's2s_worker_rss_bytes{{worker="{w.index}"}} {n}' for w, n in rss if n is not None),
        "# HELP s2s_worker_sessions Streams each decoding worker holds now.",
        "# TYPE s2s_worker_sessions gauge",
        *(f's2s_worker_sessions{{worker="{w.index}"}} {w.sessions}' for w in workers),
        "# HELP s2s_worker_batches_total Batched decoding steps each worker has run.",
        "# TYPE s2s_worker_batches_total counter",
        *(f's2s_worker_batches_total{{worker="{w.index}"}} {w.batches}' for w in workers),
        "# HELP s2s_worker_restarts_total Decoding workers that died and were started again.",
        "# TYPE s2s_worker_restarts_total counter",
        f"s2s_worker_restarts_total {restarts}",
    ]


class Histogram:
    """Cumulative buckets, sum and count, as Prometheus expects."""

    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * (len(self.buckets) + 1)   # the last is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out, running = [], 0
        for bound, n in zip(self.buckets + (float("inf"),), self.counts):
            running += n
            le = "+Inf" if bound == float("inf") else _num(bound)
            out.append(f'{name}_bucket{{le="{le}"}} {running}')
        return out + [f"{name}_sum {_num(self.sum)}", f"{name}_count {self.count}"]


class Metrics:
    """The server's metrics; :meth:`render` gives the ``/metrics`` page."""

    def __init__(self):
        self._lock = threading.Lock()
        self.sessions_active = 0
        self.sessions_total = 0
        self.audio_seconds = 0.0
        self.errors = {code: 0 for code in [*CLOSE_CODES, "unauthorized"]}
        self.refusals = dict.fromkeys(REFUSALS, 0)
        self.chunk_latency = Histogram(LATENCY_BUCKETS)
        self.batch_size = Histogram(BATCH_BUCKETS)
        self._collectors: list[Callable[[], list[str]]] = []

    def session_opened(self) -> None:
        with self._lock:
            self.sessions_active += 1
            self.sessions_total += 1

    def session_closed(self) -> None:
        with self._lock:
            self.sessions_active -= 1

    def add_audio(self, seconds: float) -> None:
        with self._lock:
            self.audio_seconds += seconds

    def error(self, code: str) -> None:
        with self._lock:
            self.errors[code] += 1

    def refused(self, reason: str) -> None:
        with self._lock:
            self.refusals[reason] += 1

    def add_collector(self, lines: Callable[[], list[str]]) -> None:
        """Add metric lines computed when the page is rendered (the decoding workers')."""
        self._collectors.append(lines)

    def decoded(self, batch_size: int, latencies: list[float]) -> None:
        """One ``decode_streams`` call: its batch size and each chunk's latency."""
        with self._lock:
            self.batch_size.observe(batch_size)
            for x in latencies:
                self.chunk_latency.observe(x)

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP s2s_sessions_active Streaming sessions open now.",
                "# TYPE s2s_sessions_active gauge",
                f"s2s_sessions_active {self.sessions_active}",
                "# HELP s2s_sessions_total Streaming sessions accepted since the server started.",
                "# TYPE s2s_sessions_total counter",
                f"s2s_sessions_total {self.sessions_total}",
                "# HELP s2s_audio_seconds_total Seconds of audio received from clients.",
                "# TYPE s2s_audio_seconds_total counter",
                f"s2s_audio_seconds_total {_num(self.audio_seconds)}",
                "# HELP s2s_chunk_latency_seconds From the arrival of the audio that completed a chunk "
                "to the end of its decoding.",
                "# TYPE s2s_chunk_latency_seconds histogram",
                *self.chunk_latency.lines("s2s_chunk_latency_seconds"),
                "# HELP s2s_decode_batch_size Streams decoded together in one encoder call.",
                "# TYPE s2s_decode_batch_size histogram",
                *self.batch_size.lines("s2s_decode_batch_size"),
                "# HELP s2s_errors_total Sessions ended by an error, by error code.",
                "# TYPE s2s_errors_total counter",
                *(f's2s_errors_total{{code="{code}"}} {n}' for code, n in sorted(self.errors.items())),
                "# HELP s2s_refused_total Connections refused, and sessions ended, by a server limit, by limit.",
                "# TYPE s2s_refused_total counter",
                *(f's2s_refused_total{{reason="{r}"}} {n}' for r, n in sorted(self.refusals.items())),
            ]
        for collect in self._collectors:
            lines += collect()
        return "\n".join(lines) + "\n"


def _num(x: float) -> str:
    return f"{x:.9g}"
