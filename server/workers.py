"""Decoding in worker processes: ``serve --workers N`` uses N cores.

The per-stream search holds the GIL, so one process decodes on one core whatever its threads.
A :class:`WorkerPool` runs N processes, each with its own model and its own
:class:`~server.engine.Engine` (dynamic batching across the sessions it holds); the front
process keeps the sockets, the protocols and the sessions' options, and talks to the engines
as the event loop talks to the in-process one (``open``, ``feed``, ``finish``, ``close``, and
a queue of events per session), so the sessions cannot tell the two apart.

Session affinity: a stream's state lives in the worker that opened it, the one holding the
fewest streams at the time; every message of the session goes there.

IPC: one duplex ``multiprocessing`` pipe per worker, carrying pickled tuples with the audio as
a numpy array ``(samples,)`` float32. It was chosen by measurement (``docs/benchmarks.md``):
64 real-time sessions move 4 MB/s of audio, a few percent of what a pipe carries, and a round
trip of a 100 ms message costs tens of microseconds, against chunks of 320 ms; shared memory
would add a ring buffer and its synchronisation for no measurable gain.

    front (event loop)                                worker process
    open/feed/finish/close -> ("feed", sid, samples) -> reader thread -> Engine.feed ...
    RemoteSession.queue   <- reader thread <- ("events", sid, events, done, caught_up, consumed)
    Metrics.decoded       <-                 <- ("decoded", batch size, latencies)

Back-pressure: a worker reports how many samples of a session it has handed to the stream;
the front's backlog is what it sent minus that.

A worker that dies (killed, out of memory, a crash in native code) is found by its pipe
closing: its sessions get the decoder's failure (each sends an ``internal`` error and closes),
the other workers' sessions carry on, and a new worker starts in its place (after a pause that
doubles while workers die young, up to 30 s). Workers ignore SIGINT and SIGTERM: the front
drains its sessions first, then stops them; a worker whose front is gone exits.
"""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable

import numpy as np

from s2s_media.errors import UserError
from s2s_media.inference.events import Event, Recognizer, StreamOptions
from s2s_media.inference.punctuation import Punctuator
from server.engine import Engine, EngineConfig, EngineSession
from server.metrics import Metrics, WorkerStats

log = logging.getLogger(__name__)

START_TIMEOUT_S = 600.0     # a worker imports torch and loads its model: minutes on a starved machine
STOP_TIMEOUT_S = 5.0        # after "stop", how long a worker gets before it is killed
YOUNG_S = 10.0              # a worker that dies sooner than this after starting was "young": the next waits longer
MAX_RESTART_DELAY_S = 30.0

# what a worker builds its decoder with: a picklable callable (module-level function or partial)
Build = Callable[[], tuple[Recognizer, Punctuator | None]]


class WorkerDied(RuntimeError):
    """A session's worker process ended while it held the session's stream."""


class RemoteSession(EngineSession):
    """A session whose stream lives in a worker process; the loop side of :class:`EngineSession`."""

    def __init__(self, pool: "WorkerPool", sid: int, sample_rate: int, worker: "_Worker"):
        super().__init__(pool, sid, sample_rate)
        self.worker = worker
        self.sent_samples = 0

    def backlog_s(self) -> float:
        return (self.sent_samples - self._consumed_samples) / self.sample_rate


class _Worker:
    """One worker process as the front sees it."""

    def __init__(self, index: int, process, conn):
        self.index, self.process, self.conn = index, process, conn
        self.sessions: dict[int, RemoteSession] = {}
        self.batches = 0
        self.started = time.monotonic()
        self.ready = threading.Event()      # set by the reader thread when the model is loaded
        self.exited = threading.Event()     # set by the reader thread when the pipe closes
        self.failure = ""                   # the one-line error of a worker that could not load its model

    def send(self, msg: tuple) -> None:
        try:
            self.conn.send(msg)
        except (OSError, ValueError):   # the worker is gone: its reader thread reports it
            pass


class WorkerPool:
    """N worker processes, each with a model and an engine; the interface of :class:`~server.engine.Engine`.

    ``build`` runs in each worker and returns its recognizer and punctuator (None: raw finals); it must
    pickle (a module-level function or a ``functools.partial`` of one). :class:`~server.app.App` attaches
    the front's recognizer (options only), the engine configuration and the metrics.
    """

    def __init__(self, build: Build, workers: int):
        if workers < 1:
            raise UserError(f"--workers: {workers} is out of range; give 1 or more, or auto")
        self.build, self.n = build, workers
        self.recognizer: Recognizer | None = None
        self.config = EngineConfig()
        self.metrics = Metrics()
        self.punctuator = None          # punctuation happens in the workers
        self.restarts = 0
        self.workers: list[_Worker] = []
        self._next_id = 0
        self._young_deaths = 0
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ctx = multiprocessing.get_context("spawn")    # a fork would copy the front's threads and torch state

    def attach(self, recognizer: Recognizer, config: EngineConfig, metrics: Metrics) -> None:
        self.recognizer, self.config, self.metrics = recognizer, config, metrics

    # ---------------------------------------------------------------- life cycle
    def start(self) -> None:
        """Start the workers and wait until each has loaded its model (they load in parallel)."""
        self._loop = asyncio.get_running_loop()
        self.workers = [self._spawn(i) for i in range(self.n)]
        deadline = time.monotonic() + START_TIMEOUT_S
        for w in self.workers:
            while not w.ready.wait(0.1):
                if w.exited.is_set() or time.monotonic() > deadline:
                    self.stop()
                    why = w.failure or (f"exited with code {w.process.exitcode}" if w.exited.is_set()
                                        else f"did not load its model within {START_TIMEOUT_S:g} s")
                    raise UserError(f"decoding worker {w.index}: {why}; try --workers 1 to see the error in "
                                    "this process")
        log.info("%d decoding workers ready (pids %s)", self.n, ", ".join(str(w.process.pid) for w in self.workers))

    def stop(self) -> None:
        """Stop every worker (sessions still open are simply dropped, as :meth:`Engine.stop` does)."""
        self._stopping = True
        for w in self.workers:
            w.send(("stop",))
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for w in self.workers:
            w.process.join(max(deadline - time.monotonic(), 0))
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            w.conn.close()

    def _spawn(self, index: int) -> _Worker:
        ours, theirs = self._ctx.Pipe()
        process = self._ctx.Process(target=_worker_main, args=(theirs, self.build, self.config),
                                    name=f"s2s-worker-{index}", daemon=True)
        process.start()
        theirs.close()      # the front keeps only its end, so the pipe closes when the worker dies
        w = _Worker(index, process, ours)
        threading.Thread(target=self._read, args=(w,), name=f"s2s-worker-{index}-reader", daemon=True).start()
        return w

    # ---------------------------------------------------------------- the engine's interface
    def open(self, sample_rate: int, options: StreamOptions | None = None, punctuation: bool = True) -> RemoteSession:
        """A new stream on the ready worker holding the fewest, the least busy of those; when none is ready, on
        one still loading its model (the stream waits for it); when every worker is dead, the session fails."""
        alive = [w for w in self.workers if not w.exited.is_set()]
        worker = min([w for w in alive if w.ready.is_set()] or alive or self.workers,
                     key=lambda w: (len(w.sessions), w.batches))
        self._next_id += 1
        session = RemoteSession(self, self._next_id, sample_rate, worker)
        worker.sessions[session.id] = session
        worker.send(("open", session.id, sample_rate, options, punctuation))
        if worker.exited.is_set():      # died before its death was handled: fail with the others
            session._fail(WorkerDied(f"decoding worker {worker.index} is restarting"))
        return session

    def feed(self, session: RemoteSession, samples: np.ndarray) -> int:
        session._seq += 1
        session.sent_samples += len(samples)
        session.worker.send(("feed", session.id, samples))
        return session._seq

    def finish(self, session: RemoteSession) -> None:
        if not session._finish:
            session._finish = True
            session.worker.send(("finish", session.id))

    def close(self, session: RemoteSession) -> None:
        if session.worker.sessions.pop(session.id, None) is not None:
            session.worker.send(("close", session.id))

    def worker_stats(self) -> list[WorkerStats]:
        return [WorkerStats(w.index, w.process.pid, len(w.sessions), w.batches) for w in self.workers]

    # ---------------------------------------------------------------- worker -> front
    def _read(self, w: _Worker) -> None:
        """A worker's messages, on a thread of their own; handled on the event loop."""
        try:
            while True:
                msg = w.conn.recv()
                if msg[0] == "ready":
                    w.ready.set()
                elif msg[0] == "error":
                    w.failure = msg[1]
                else:
                    self._loop.call_soon_threadsafe(self._on_message, w, msg)
        except (EOFError, OSError):
            pass
        w.process.join()
        w.exited.set()
        try:
            self._loop.call_soon_threadsafe(self._on_exit, w)
        except RuntimeError:   # the loop is closed: the server is gone
            pass

    def _on_message(self, w: _Worker, msg: tuple) -> None:
        kind = msg[0]
        if kind == "decoded":
            w.batches += 1
            self.metrics.decoded(msg[1], msg[2])
            return
        session = w.sessions.get(msg[1])
        if session is None:        # closed meanwhile
            return
        if kind == "events":
            _, _, events, done, caught_up, consumed = msg
            session._consumed_samples = consumed
            session._deliver(events, done, caught_up)
        elif kind == "fail":
            session._fail(msg[2])

    def _on_exit(self, w: _Worker) -> None:
        if self._stopping or w not in self.workers:
            return
        code = w.process.exitcode
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        log.error("decoding worker %d (pid %d) %s; failing its %d session(s) and starting a new one", w.index,
                  w.process.pid, how, len(w.sessions))
        for session in list(w.sessions.values()):
            session._fail(WorkerDied(f"decoding worker {w.index} {how}"))
        w.sessions.clear()
        w.conn.close()
        young = time.monotonic() - w.started < YOUNG_S
        self._young_deaths = self._young_deaths + 1 if young else 0
        delay = min(MAX_RESTART_DELAY_S, 0.5 * 2 ** self._young_deaths) if young else 0.0
        self._loop.call_later(delay, self._restart, w)

    def _restart(self, old: _Worker) -> None:
        if self._stopping:
            return
        self.workers[self.workers.index(old)] = self._spawn(old.index)
        self.restarts += 1


# --------------------------------------------------------------------------- the worker process
class WorkerEngine(Engine):
    """An engine in a worker process: sessions are named by the front's ids, and what the engine would
    hand to the event loop goes down the pipe. Only the decoding thread (this process's main thread) sends."""

    def __init__(self, conn, recognizer: Recognizer, config: EngineConfig, punctuator: Punctuator | None):
        super().__init__(recognizer, config, _PipeMetrics(conn), punctuator)
        self.conn = conn
        self.by_id: dict[int, EngineSession] = {}

    def apply(self, msg: tuple) -> None:
        """One message from the front."""
        kind, sid = msg[0], msg[1] if len(msg) > 1 else None
        if kind == "open":
            session = self.open(msg[2], msg[3], msg[4])
            session.remote_id = sid
            self.by_id[sid] = session
        elif kind == "stop":
            self.stop()
        elif (session := self.by_id.get(sid)) is None:   # closed: what is still in flight is dropped
            return
        elif kind == "feed":
            self.feed(session, msg[2])
        elif kind == "finish":
            self.finish(session)
        elif kind == "close":
            self.close(self.by_id.pop(sid))

    def _emit(self, s: EngineSession, events: list[Event], done: bool, caught_up: int | None) -> None:
        with self._cond:
            consumed = s._consumed_samples
        self.conn.send(("events", s.remote_id, events, done, caught_up, consumed))

    def _emit_failure(self, s: EngineSession, exc: BaseException) -> None:
        try:
            pickle.dumps(exc)
        except Exception:  # noqa: BLE001 - any exception must reach the front, in a form that pickles
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        self.conn.send(("fail", s.remote_id, exc))


class _PipeMetrics:
    """What a worker's engine reports to :class:`~server.metrics.Metrics`, sent to the front's."""

    def __init__(self, conn):
        self.conn = conn

    def decoded(self, batch_size: int, latencies: list[float]) -> None:
        self.conn.send(("decoded", batch_size, latencies))


def _worker_main(conn, build: Build, config: EngineConfig) -> None:
    """A worker process: read the front's messages while the model loads (kept until the engine exists),
    then decode on this thread until ``stop``, or exit at once when the front is gone."""
    for sig in (signal.SIGINT, signal.SIGTERM):     # the front drains its sessions, then stops the workers
        signal.signal(sig, signal.SIG_IGN)
    lock = threading.Lock()
    early: list[tuple] = []
    engine: WorkerEngine | None = None

    def read() -> None:
        try:
            while True:
                msg = conn.recv()
                with lock:
                    if engine is None:
                        early.append(msg)
                        continue
                engine.apply(msg)
        except (EOFError, OSError):
            os._exit(0)     # the front is gone: nothing is left to decode for
    threading.Thread(target=read, name="s2s-worker-reader", daemon=True).start()
    try:
        recognizer, punctuator = build()
    except BaseException as e:  # noqa: BLE001 - the front reports it in one line
        conn.send(("error", f"{type(e).__name__}: {e}" if not isinstance(e, UserError) else str(e)))
        os._exit(1)
    with lock:
        engine = WorkerEngine(conn, recognizer, config, punctuator)
        for msg in early:
            engine.apply(msg)
    conn.send(("ready", os.getpid()))
    engine._run()
    os._exit(0)     # skip the interpreter's teardown of the model (see s2s_media.cli.serve.exit_now)
