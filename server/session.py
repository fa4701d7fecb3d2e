"""One websocket connection: a protocol v1 session (``/v1/stream``) or a Vosk session (``/vosk``).

Both share :class:`Session`: admission (``--max-sessions``), idle and maximum-length timeouts,
sending an error then closing with its close code, and clean shutdown. Each protocol is one
small subclass with a ``serve()`` coroutine.

Back-pressure: a session reads its socket only while its backlog (audio queued ahead of the
decoder) is under the engine's ``max_buffered_s``. websockets reads frames into a bounded
buffer (``max_queue``) and stops reading the TCP socket when it is full, so a client that sends
faster than the decoder keeps up is slowed down by TCP flow control: its ``send`` blocks.

Slots that cannot be squatted: a connection must start its session within ``start_timeout_s``,
and a started session must send at least ``min_audio_rate`` seconds of audio per second the
server spent waiting for it, over each ``rate_window_s`` of waiting (:class:`AudioRate`); time
the server holds back reading (back-pressure) or decodes is not counted against the client.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Protocol

from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from s2s_media.errors import UserError
from s2s_media.inference.events import Final, Partial, StreamOptions
from server.config import ServerConfig
from server.engine import DONE, Engine, EngineSession
from server.metrics import Metrics
from server.protocol import (MAX_REASON_BYTES, PROTOCOL_VERSION, ProtocolError, StartRequest, VoskConfig,
                             decode_audio, parse_control, parse_json, parse_start, parse_vosk_config, v1_event,
                             vosk_result)

log = logging.getLogger(__name__)

SHUTDOWN_CLOSE = (1001, "server shutting down")


class Shutdown(Exception):
    """Raised in a session waiting for its client when the server begins to stop."""


class AudioRate:
    """Audio received against time spent waiting for it, in windows of ``window`` seconds of waiting."""

    def __init__(self, minimum: float, window: float):
        self.minimum, self.window = minimum, window
        self.waited = 0.0          # seconds spent waiting for messages in this window
        self.audio = 0.0           # seconds of audio received in this window

    def budget(self) -> float:
        """Waiting time left before this window is judged (inf when the check is off)."""
        return max(self.window - self.waited, 0.0) if self.minimum > 0 else float("inf")

    def check(self) -> None:
        """At the end of a window: ``timeout`` if too little audio came, else start the next window."""
        if self.waited < self.window or self.minimum <= 0:
            return
        rate = self.audio / self.waited
        if rate < self.minimum:
            raise ProtocolError("timeout", f"audio came at {rate:.2f}x real time over {self.waited:.0f} s, under "
                                           f"the minimum of {self.minimum:g}x; send audio as it is captured",
                                limit="min_audio_rate")
        self.waited = self.audio = 0.0


class Host(Protocol):
    """What a session uses of the server that admitted it (:class:`server.app.App`)."""
    config: ServerConfig
    engine: Engine
    metrics: Metrics


class Session:
    """What every protocol's session does; subclasses implement :meth:`serve`. The server
    (:meth:`server.app.App.handle`) admits a session, runs it and releases it."""

    def __init__(self, app: Host, ws):
        self.app = app
        self.ws = ws
        self.es: EngineSession | None = None
        self.started = time.monotonic()
        self.streaming = False       # the session has started (v1 ``start``, a first Vosk message)
        cfg = app.config
        self.rate = AudioRate(cfg.min_audio_rate, cfg.rate_window_s)
        self.close_code, self.close_reason = 1000, ""
        self._shutdown = asyncio.Event()

    async def refuse(self, reason: str) -> None:
        """A limit refuses the connection (``max_sessions`` or ``max_per_client``): say so and close."""
        cfg = self.app.config
        message = (f"the server is at its limit of {cfg.max_sessions} sessions; retry later" if reason == "max_sessions"
                   else f"this address has {cfg.max_per_client} sessions open, the limit per client; retry later")
        await self.send_error(ProtocolError("overloaded", message, limit=reason))

    async def run(self) -> None:
        """Serve, and always free the session's decoding stream."""
        try:
            await self.serve()
        except ProtocolError as e:
            await self.send_error(e)
        except ConnectionClosed:
            pass
        except Exception:  # noqa: BLE001 - a server bug ends this session only
            log.exception("session failed")
            await self.send_error(ProtocolError("internal", "the server failed on this session; "
                                                            "other sessions are unaffected"))
        finally:
            if self.es is not None:
                self.app.engine.close(self.es)
            self._count_too_large()

    def _count_too_large(self) -> None:
        """A message over 1 MiB is refused by websockets itself at its frame header (close 1009, its
        reason names the sizes): count it as the ``too_large`` error it is."""
        sent = self.ws.protocol.close_sent
        if sent is not None and sent.code == CloseCode.MESSAGE_TOO_BIG:
            self.app.metrics.error("too_large")
            self.app.metrics.refused("too_large")
            log.info("session error too_large: %s", sent.reason)

    async def serve(self) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        """The server is stopping: stop reading, finish the stream (its last final is still sent), close 1001."""
        self.close_code, self.close_reason = SHUTDOWN_CLOSE
        self._shutdown.set()

    @property
    def shutting_down(self) -> bool:
        return self._shutdown.is_set()

    # ---------------------------------------------------------------- helpers
    def remaining(self) -> float:
        """Seconds until the session reaches its maximum length."""
        return self.app.config.max_session_s - (time.monotonic() - self.started)

    def _deadline(self) -> tuple[float, str]:
        """How long the next wait for a message may last, and the limit that ends it."""
        cfg = self.app.config
        limits = [(cfg.idle_timeout_s, "idle_timeout"), (self.remaining(), "max_session")]
        if not self.streaming:
            limits.append((cfg.start_timeout_s - (time.monotonic() - self.started), "start_timeout"))
        else:
            limits.append((self.rate.budget(), "min_audio_rate"))
        seconds, limit = min(limits)
        return max(seconds, 0.0), limit

    async def recv(self) -> str | bytes:
        """The next message. ``timeout`` when a limit runs out first: ``start_timeout_s`` before the
        session started, ``idle_timeout_s`` of silence, the maximum length, or too little audio over
        a rate window; :class:`Shutdown` when the server begins to stop."""
        while True:
            if self.shutting_down:
                raise Shutdown
            limit, reason = self._deadline()
            t0 = time.monotonic()
            receiving = asyncio.ensure_future(self.ws.recv())     # cancelling recv() loses no data
            stopping = asyncio.ensure_future(self._shutdown.wait())
            try:
                done, _ = await asyncio.wait({receiving, stopping}, timeout=limit,
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:
                receiving.cancel()
                stopping.cancel()
                await asyncio.gather(receiving, stopping, return_exceptions=True)
            if self.streaming:
                self.rate.waited += time.monotonic() - t0
            if receiving in done:
                return receiving.result()
            if stopping in done:
                raise Shutdown
            if reason != "min_audio_rate":
                raise self.timeout_error(reason)
            self.rate.check()     # raises when too slow; else the next window begins

    def timeout_error(self, limit: str) -> ProtocolError:
        cfg = self.app.config
        if limit == "max_session":
            message = f"session reached its maximum length of {cfg.max_session_s:g} s"
        elif limit == "start_timeout":
            message = f"the session did not start within {cfg.start_timeout_s:g} s of connecting"
        else:
            message = f"no message for {cfg.idle_timeout_s:g} s"
        return ProtocolError("timeout", message, limit=limit)

    def audio(self, data: bytes, encoding: str, sample_rate: int):
        samples = decode_audio(data, encoding)
        self.rate.audio += len(samples) / sample_rate
        self.app.metrics.add_audio(len(samples) / sample_rate)
        return samples

    async def close(self, code: int, reason: str = "") -> None:
        """Close, discarding what the client still sends: unread messages would fill websockets'
        receive buffer, which then stops reading the socket, so the client's close frame would
        never be seen and the close would wait for its timeout."""
        async def discard():
            try:
                while True:
                    await self.ws.recv()
            except Exception:  # noqa: BLE001 - ConnectionClosed ends it, as intended
                pass
        draining = asyncio.ensure_future(discard())
        try:
            await self.ws.close(code, _reason(reason))
        finally:
            draining.cancel()

    async def send_json(self, msg: dict) -> None:
        await self.ws.send(json.dumps(msg, ensure_ascii=False))

    def count_error(self, err: ProtocolError) -> None:
        self.app.metrics.error(err.code)
        if err.limit is not None:
            self.app.metrics.refused(err.limit)
        log.info("%s error %s: %s", "vosk session" if isinstance(self, VoskSession) else "session", err.code,
                 err.message)

    async def send_error(self, err: ProtocolError) -> None:
        """Count the error, send it as a message, then close with its close code."""
        self.count_error(err)
        try:
            await self.send_json(err.to_message())
            await self.close(err.close_code, f"{err.code}: {err.message}")
        except ConnectionClosed:
            pass

    def stream_options(self, hotwords=None, phrase_list=None, alternatives: int = 0, endpoint: dict | None = None,
                       where: str = "start") -> tuple[StreamOptions | None, list[str]]:
        """The stream options a session asks for (None when it asks for nothing special), and one line
        per phrase left out; an unusable list or endpoint rule is ``bad_request``."""
        if hotwords is None and phrase_list is None and not alternatives and not endpoint:
            return None, []
        try:
            return self.app.engine.recognizer.stream_options(hotwords=hotwords, phrase_list=phrase_list,
                                                             alternatives=alternatives, max_hotwords=self.app.config.max_hotwords,
                                                             endpoint=endpoint)
        except UserError as e:
            raise ProtocolError("bad_request", f"{where}: {e}") from None

    def internal_error(self, exc: BaseException) -> ProtocolError:
        return ProtocolError("internal", f"decoding failed ({type(exc).__name__}); this session is closed, "
                                         "other sessions are unaffected")


class V1Session(Session):
    """Protocol v1: start -> ready, audio, stop -> finals -> end, close 1000."""

    async def serve(self) -> None:
        try:
            first = await self.recv()
        except Shutdown:
            return await self.close(*SHUTDOWN_CLOSE)
        if not isinstance(first, str):
            raise ProtocolError("bad_request", "audio before start: send {\"type\":\"start\"} first")
        start = parse_start(first, self.app.config.max_hotwords)
        self.streaming = True
        options, warnings = self.stream_options(start.hotwords, alternatives=start.max_alternatives,
                                                endpoint=start.endpoint())
        self.es = es = self.app.engine.open(start.sample_rate, options, punctuation=start.punctuation)
        ready = {"type": "ready", "session": es.id, "protocol": PROTOCOL_VERSION, "sample_rate": start.sample_rate}
        if warnings:
            ready["warnings"] = warnings
        await self.send_json(ready)
        timer = asyncio.get_running_loop().call_later(max(self.remaining(), 0), es.queue.put_nowait, "max_length")
        reader = asyncio.create_task(self._read(start))
        try:
            await self._write(start, reader)
        finally:
            timer.cancel()
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read(self, start: StartRequest) -> None:
        """Socket -> engine, until stop (or shutdown); errors go to the outbox (the session's queue)."""
        es, engine = self.es, self.app.engine
        try:
            while True:
                await es.wait_backlog_below(engine.config.max_buffered_s)
                msg = await self.recv()
                if isinstance(msg, str):
                    parse_control(msg)   # only "stop" returns
                    break
                engine.feed(es, self.audio(msg, start.encoding, start.sample_rate))
        except Shutdown:
            pass
        except ProtocolError as e:
            return es.queue.put_nowait(e)
        except ConnectionClosed:
            return es.queue.put_nowait("gone")
        engine.finish(es)

    async def _write(self, start: StartRequest, reader: asyncio.Task) -> None:
        """Outbox -> socket: events, then ``end`` and close; or an error and its close code. A timeout
        first sends the final of what was decoded (speech already shown as a partial is not lost)."""
        while True:
            item = await self.es.queue.get()
            if isinstance(item, (Partial, Final)):
                await self._send_event(item, start)
            elif item is DONE:
                await self.send_json({"type": "end"})
                await self.close(self.close_code, self.close_reason)
                return
            elif item == "max_length" or (isinstance(item, ProtocolError) and item.code == "timeout"):
                reader.cancel()
                await self._send_last_final(start)
                raise self.timeout_error("max_session") if item == "max_length" else item
            elif item == "gone":
                return
            elif isinstance(item, ProtocolError):
                raise item
            else:  # an exception from the decoder
                raise self.internal_error(item)

    async def _send_event(self, event: Partial | Final, start: StartRequest) -> None:
        msg = v1_event(event, start)
        if msg is not None:
            await self.send_json(msg)

    async def _send_last_final(self, start: StartRequest) -> None:
        """End the stream as ``stop`` would and send its events up to the last final (no ``end``)."""
        self.app.engine.finish(self.es)
        while (item := await self.es.queue.get()) is not DONE:
            if isinstance(item, (Partial, Final)):
                await self._send_event(item, start)
            elif isinstance(item, BaseException) and not isinstance(item, ProtocolError):
                raise self.internal_error(item)


class VoskSession(Session):
    """The Vosk server protocol: optional config, PCM16 audio each answered, eof -> last result, close.

    Vosk clients read exactly one reply per audio message, so a reply waits until the decoder
    has caught up with that message, and several finals decoded from one message are joined
    into one result.

    A ``config`` may come at any time and applies from the next audio on: when it changes how audio
    is decoded (rate, alternatives, phrase list, hotwords), the open stream is finished (its last
    final goes with the next reply) and the next audio starts a new one; times keep counting from
    the session's first audio.
    """

    async def serve(self) -> None:
        self.config = VoskConfig()
        self.options: StreamOptions | None = None
        self.partial, self.done = "", False
        self.finals: list[tuple[Final, float]] = []    # (final, seconds its stream started at) not yet sent
        self.offset = 0.0            # seconds of audio of the streams before the open one
        self.stream_s = 0.0          # seconds of audio of the open stream
        try:
            while True:
                msg = await self.recv()
                self.streaming = True
                if isinstance(msg, bytes):
                    if self.es is None:
                        self.es, self.done, self.stream_s = self.app.engine.open(self.config.sample_rate,
                                                                                 self.options), False, 0.0
                    samples = self.audio(msg, "pcm_s16le", self.config.sample_rate)
                    self.stream_s += len(samples) / self.config.sample_rate
                    seq = self.app.engine.feed(self.es, samples)
                    await self.es.wait_caught_up(seq)
                    while not self.es.queue.empty():
                        self._take(self.es.queue.get_nowait())
                    if self.finals:
                        await self.send_json(vosk_result(self.finals, self.config))
                        self.finals = []
                    else:
                        await self.send_json({"partial": self.partial})
                    continue
                obj = parse_json(msg)
                if "eof" in obj:
                    break
                if "config" not in obj:
                    raise ProtocolError("bad_request", "expected {\"config\": {...}}, {\"eof\": 1} or binary "
                                                       "PCM16 audio")
                await self._configure(parse_vosk_config(obj, self.config, self.app.config.max_hotwords))
        except Shutdown:
            pass
        except ProtocolError as e:
            if e.code == "timeout" and (self.es is not None or self.finals):   # the speech decoded so far is not lost
                await self._send_last_result()
            raise
        await self._send_last_result()
        await self.close(self.close_code, self.close_reason)

    async def _configure(self, config: VoskConfig) -> None:
        """Take a new config; a change in decoding finishes the open stream (the next audio opens one)."""
        if config.decoding() != self.config.decoding():
            options, skipped = self.stream_options(config.hotwords, config.phrase_list, config.max_alternatives,
                                                   where="config")
            for line in skipped:
                log.info("vosk session: %s", line)
            if self.es is not None:
                await self._finish_stream()
            self.options = options
        self.config = config

    async def _finish_stream(self) -> None:
        """Decode what is left of the open stream and keep its finals for the next reply; close it."""
        self.app.engine.finish(self.es)
        while not self.done:
            self._take(await self.es.queue.get())
        self.app.engine.close(self.es)
        self.es = None
        self.offset += self.stream_s

    def _take(self, item) -> None:
        """One item of the session's queue: a decoder event, DONE, or a failure."""
        if isinstance(item, Final):
            self.finals.append((item, self.offset))
            self.partial = ""
        elif isinstance(item, Partial):
            self.partial = item.text
        elif item is DONE:
            self.done = True
        else:
            raise self.internal_error(item)

    async def _send_last_result(self) -> None:
        """eof, shutdown or a timeout: decode what is left and send one result of the remaining finals."""
        if self.es is None and not self.finals:
            self.es, self.done = self.app.engine.open(self.config.sample_rate, self.options), False
        if self.es is not None:
            await self._finish_stream()
        await self.send_json(vosk_result(self.finals, self.config))
        self.finals = []

    async def send_error(self, err: ProtocolError) -> None:
        """Vosk clients know no error message: the close code and its reason carry the error."""
        self.count_error(err)
        try:
            await self.close(err.close_code, f"{err.code}: {err.message}")
        except ConnectionClosed:
            pass


def _reason(text: str) -> str:
    """A close reason cut to the 123 bytes a close frame can carry."""
    return text.encode()[:MAX_REASON_BYTES].decode(errors="ignore")
