"""The batching engine: one recognizer shared by every session, decoded in one worker thread.

Connections live on the asyncio event loop; decoding is blocking and CPU-heavy, so it runs in a
single worker thread that owns every :class:`~s2s_media.inference.streaming.StreamingRecognizer` stream
(the event loop never touches a stream, so the streams need no locking of their own).

Data flow for one session::

    event loop                       worker thread
    feed(samples) -> inbox ------->  accept_waveform() while the stream is not ready
    finish()      -> flag  ------->  input_finished() once the inbox is empty
                                     decode_streams([ready streams...])   one encoder call
    queue <- events, DONE, errors <- pop_events()

Dynamic batching: once one stream is ready the worker waits up to ``max_wait_ms`` for others
(unless every live stream is ready already, or ``max_batch`` are) and decodes them together.
Streams that stay ready (a client ahead of real time) are decoded again in the next round,
oldest-waiting first, so no stream starves.

Back-pressure: the inbox holds the audio not yet handed to the decoder. The stream itself only
gets audio while it is short of a chunk, so the inbox is the session's backlog; a connection
stops reading its socket while the backlog exceeds ``max_buffered_s``
(:meth:`EngineSession.wait_backlog_below`).

Punctuation: with a :class:`~s2s_media.inference.punctuation.Punctuator`, the finals of sessions
that want it are written (capitals, ``. , ? !``) in the worker thread as they are popped, each word
keeping its times; partials stay raw.

Failures: an exception from one session's stream fails that session only. When a batched
``decode_streams`` raises, each of its streams is retried alone to find the failing one(s).
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from s2s_media.inference.events import Event, Final, Recognizer, StreamOptions
from s2s_media.inference.punctuation import Punctuator
from server.metrics import Metrics, WorkerStats

log = logging.getLogger(__name__)

DONE = object()   # queued after a session's last event


@dataclass(frozen=True)
class EngineConfig:
    max_batch: int = 16             # streams per decode_streams call
    max_wait_ms: float = 10.0       # how long a ready chunk waits for other streams to join its batch
    max_buffered_s: float = 10.0    # audio a session may queue ahead of the decoder before reading pauses


class EngineSession:
    """One stream as seen by its connection.

    The connection reads :attr:`queue` (event dicts, then :data:`DONE`; or an exception) and may
    put its own items there too (protocol errors), making it the session's single outbox.
    """

    def __init__(self, engine: "Engine", sid: int, sample_rate: int, options: StreamOptions | None = None,
                 punctuation: bool = True):
        self.engine = engine
        self.id = sid
        self.sample_rate = sample_rate
        self.options = options          # the stream's hotwords, grammar, alternatives (None: the recognizer's)
        self.punctuation = punctuation and engine.punctuator is not None   # write its finals
        self.queue: asyncio.Queue = asyncio.Queue()
        self.caught_up_seq = 0       # every fed message up to this one has been decoded as far as possible
        self.ended = False           # DONE or a failure was delivered
        self._progress = asyncio.Event()
        # shared with the worker, guarded by engine._cond
        self._inbox: deque[tuple[int, np.ndarray, float]] = deque()   # (seq, samples, arrival time)
        self._queued_samples = 0
        self._consumed_samples = 0   # handed to the stream so far (a worker process reports it: server.workers)
        self._seq = 0
        self._finish = False
        self._finish_time = 0.0
        self._closed = False
        # worker-only
        self._stream = None
        self._finish_sent = False
        self._fed_seq = 0
        self._last_arrival = 0.0
        self._ready_since = 0.0

    # ---------------------------------------------------------------- event loop side
    def backlog_s(self) -> float:
        with self.engine._cond:
            return self._queued_samples / self.sample_rate

    async def wait_backlog_below(self, seconds: float) -> None:
        """Return once the audio queued ahead of the decoder is under ``seconds`` (or the session ended)."""
        while self.backlog_s() >= seconds and not self.ended:
            self._progress.clear()
            await self._progress.wait()

    async def wait_caught_up(self, seq: int) -> None:
        """Return once message ``seq`` and all before it are decoded as far as the audio allows."""
        while self.caught_up_seq < seq and not self.ended:
            self._progress.clear()
            await self._progress.wait()

    def _deliver(self, events: list[dict], done: bool, caught_up: int | None) -> None:
        if self.ended:
            return
        for ev in events:
            self.queue.put_nowait(ev)
        if caught_up is not None:
            self.caught_up_seq = max(self.caught_up_seq, caught_up)
        if done:
            self.ended = True
            self.queue.put_nowait(DONE)
        self._progress.set()

    def _fail(self, exc: BaseException) -> None:
        if self.ended:
            return
        self.ended = True
        self.queue.put_nowait(exc)
        self._progress.set()


class Engine:
    """Owns the recognizer and the worker thread. Create, :meth:`start`, then open sessions."""

    def __init__(self, recognizer: Recognizer, config: EngineConfig | None = None, metrics: Metrics | None = None,
                 punctuator: Punctuator | None = None):
        self.recognizer = recognizer
        self.punctuator = punctuator      # writes finals (None: raw text)
        self.config = config or EngineConfig()
        self.metrics = metrics or Metrics()
        self._cond = threading.Condition()
        self._sessions: list[EngineSession] = []
        self._wake = False
        self._stopping = False
        self._next_id = 0
        self.batches = 0                  # decode_streams calls so far
        self.restarts = 0                 # an engine in this process never restarts (server.workers' pool does)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- event loop side
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="s2s-decoder", daemon=True)
        self._thread.start()

    def worker_stats(self) -> list[WorkerStats]:
        """This process as the one decoding worker."""
        with self._cond:
            return [WorkerStats(0, os.getpid(), len(self._sessions), self.batches)]

    def stop(self) -> None:
        """Stop the worker after its current batch (sessions still open are simply dropped)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()

    def open(self, sample_rate: int, options: StreamOptions | None = None, punctuation: bool = True) -> EngineSession:
        """A new stream of audio at ``sample_rate``; ``options``: its hotwords, grammar and alternatives
        (:meth:`Recognizer.stream_options`); ``punctuation``: write its finals (when the engine has a punctuator)."""
        with self._cond:
            self._next_id += 1
            session = EngineSession(self, self._next_id, sample_rate, options, punctuation)
            self._sessions.append(session)
        return session

    def feed(self, session: EngineSession, samples: np.ndarray) -> int:
        """Queue ``samples (n,)`` float32 at the session's rate; returns the message's sequence number."""
        with self._cond:
            session._seq += 1
            session._inbox.append((session._seq, samples, time.monotonic()))
            session._queued_samples += len(samples)
            self._wake = True
            self._cond.notify()
            return session._seq

    def finish(self, session: EngineSession) -> None:
        """No more audio: decode what is left and end with the last final, then DONE."""
        with self._cond:
            if not session._finish:
                session._finish, session._finish_time = True, time.monotonic()
            self._wake = True
            self._cond.notify()

    def close(self, session: EngineSession) -> None:
        """Forget the session (its client is gone or it failed)."""
        with self._cond:
            session._closed = True
            if session in self._sessions:
                self._sessions.remove(session)
            self._wake = True
            self._cond.notify()

    # ---------------------------------------------------------------- worker thread
    def _post(self, fn, *args) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:   # the loop is closed: the server is gone
            pass

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._wake and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                self._wake = False
            try:
                batch = self._gather()
                if batch:
                    self._decode(batch)
                    with self._cond:
                        self._wake = True   # streams may still be ready, or have been fed meanwhile
            except Exception as e:  # noqa: BLE001 - a bug here must not leave every session hanging
                log.exception("decoding worker failed; failing its open sessions")
                with self._cond:
                    sessions = list(self._sessions)
                for s in sessions:
                    self._failed(s, e)

    def _gather(self) -> list[EngineSession]:
        """Prepare every session; return up to ``max_batch`` ready ones, waiting briefly for more."""
        cfg = self.config
        deadline = time.monotonic() + cfg.max_wait_ms / 1000
        while True:
            with self._cond:
                sessions = list(self._sessions)
            ready = [s for s in sessions if self._prepare(s)]
            # streams that may still become ready within the wait: open, not ready, input not finished
            others = len([s for s in sessions if not s._closed and not s._finish_sent]) - \
                len([s for s in ready if not s._finish_sent])
            now = time.monotonic()
            if not ready or len(ready) >= cfg.max_batch or others <= 0 or now >= deadline:
                ready.sort(key=lambda s: s._ready_since)
                return ready[:cfg.max_batch]
            with self._cond:
                if not self._wake and not self._stopping:
                    self._cond.wait(deadline - now)
                self._wake = False
                if self._stopping:
                    return []

    def _prepare(self, s: EngineSession) -> bool:
        """Hand queued audio to the stream while it is short of a chunk; True if it has one ready."""
        if s._closed:
            return False
        rec = self.recognizer
        try:
            if s._stream is None:
                s._stream = rec.create_stream(s.options) if s.options is not None else rec.create_stream()
            consumed = False
            while not rec.is_ready(s._stream):
                with self._cond:
                    if not s._inbox:
                        break
                    seq, samples, arrival = s._inbox.popleft()
                    s._queued_samples -= len(samples)
                    s._consumed_samples += len(samples)
                s._stream.accept_waveform(samples, s.sample_rate)
                s._fed_seq, s._last_arrival, consumed = seq, arrival, True
            with self._cond:
                finish_now = s._finish and not s._inbox and not s._finish_sent
            if finish_now:
                s._stream.input_finished()
                s._finish_sent = True
            ready = rec.is_ready(s._stream)
            if ready and not s._ready_since:
                s._ready_since = time.monotonic()
            done = s._finish_sent and not ready and s._stream.done
            if consumed or finish_now or done:
                self._settle(s, self._pop_events(s), ready, done)
            return ready
        except Exception as e:  # noqa: BLE001 - one session's failure must not stop the others
            self._failed(s, e)
            return False

    def _pop_events(self, s: EngineSession) -> list[Event]:
        """The stream's new events, its finals written when the session wants punctuation."""
        events = s._stream.pop_events()
        if s.punctuation:
            events = [self.punctuator.restore_final(e) if isinstance(e, Final) else e for e in events]
        return events

    def _settle(self, s: EngineSession, events: list[dict], ready: bool, done: bool) -> None:
        """Send events to the loop, saying how far the session is caught up (nothing left to decode)."""
        with self._cond:
            caught_up = s._fed_seq if not ready and not s._inbox else None
            if done and s in self._sessions:
                self._sessions.remove(s)
        self._emit(s, events, done, caught_up)

    def _emit(self, s: EngineSession, events: list[Event], done: bool, caught_up: int | None) -> None:
        """Hand a session's new events to its connection (a worker process sends them to the front instead)."""
        self._post(s._deliver, events, done, caught_up)

    def _emit_failure(self, s: EngineSession, exc: BaseException) -> None:
        self._post(s._fail, exc)

    def _decode(self, batch: list[EngineSession]) -> None:
        rec = self.recognizer
        try:
            rec.decode_streams([s._stream for s in batch])
            ok = batch
        except Exception as e:  # noqa: BLE001
            if len(batch) == 1:
                self._failed(batch[0], e)
                return
            log.warning("a batch of %d streams failed (%s: %s); retrying each alone", len(batch),
                        type(e).__name__, e)
            ok = []
            for s in batch:
                try:
                    rec.decode_streams([s._stream])
                    ok.append(s)
                except Exception as e1:  # noqa: BLE001
                    self._failed(s, e1)
        end = time.monotonic()
        self.batches += 1
        # a chunk waited from the arrival of the audio (or the stop) that completed it
        self.metrics.decoded(len(batch), [end - max(s._last_arrival, s._finish_time) for s in ok
                                          if s._last_arrival or s._finish_time])
        for s in ok:
            try:
                events = self._pop_events(s)
                ready = rec.is_ready(s._stream)
                done = s._finish_sent and not ready and s._stream.done
            except Exception as e:  # noqa: BLE001
                self._failed(s, e)
                continue
            s._ready_since = time.monotonic() if ready else 0.0
            self._settle(s, events, ready, done)

    def _failed(self, s: EngineSession, exc: BaseException) -> None:
        log.error("session %d: decoding failed", s.id, exc_info=(type(exc), exc, exc.__traceback__))
        with self._cond:
            s._closed = True
            if s in self._sessions:
                self._sessions.remove(s)
        self._emit_failure(s, exc)
