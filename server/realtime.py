"""OpenAI's Realtime transcription protocol over websockets: ``/v1/realtime?intent=transcription``.

Clients written for OpenAI's realtime transcription sessions stream here unchanged (the ``openai``
package's ``client.beta.realtime.connect(..., extra_query={"intent": "transcription"})`` included).
``server/README.md`` specifies what is honoured; in short:

* client events: ``transcription_session.update`` (``input_audio_format`` ``pcm16`` only,
  ``input_audio_transcription.prompt`` as hotwords, ``turn_detection`` ``server_vad`` or null),
  ``input_audio_buffer.append`` (base64 PCM16, 24 kHz mono: resampled by the stream),
  ``input_audio_buffer.commit`` and ``input_audio_buffer.clear``;
* server events: ``transcription_session.created`` / ``.updated``, ``input_audio_buffer.speech_started``,
  ``conversation.item.input_audio_transcription.delta`` (the raw words as they are recognised),
  ``input_audio_buffer.speech_stopped``, ``input_audio_buffer.committed``, ``conversation.item.created``,
  ``conversation.item.input_audio_transcription.completed`` (the written transcript), ``input_audio_buffer.cleared``
  and ``error``.

Turns: with server VAD, a turn is a segment of the server's endpointer (a pause after speech, or a
long segment): its first recognised words start the speech, its final stops and commits it. A
client's ``commit`` ends the buffer: its stream is finished (the rest is decoded into a last
item) and the next audio opens a new stream. Without turn detection, the buffer's segments are
joined into one item at each ``commit``.

A mistake in one client event is answered with an ``error`` event and the session goes on, as
OpenAI's does; the server's limits (timeouts, overload, shutdown) end it as in the other protocols.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed

from s2s_media.inference.events import Final, Partial, StreamOptions
from server.engine import DONE, EngineSession
from server.openai_http import prompt_hotwords
from server.protocol import ProtocolError, parse_json
from server.session import SHUTDOWN_CLOSE, Session, Shutdown

INPUT_RATE = 24000              # pcm16 in OpenAI's schema: 24 kHz, mono, little-endian
TURN_TYPES = ("server_vad", "semantic_vad")   # both mean the server's endpointer here
_sessions, _items, _events = itertools.count(1), itertools.count(1), itertools.count(1)   # ids, per server
CLEARED, GONE, STOPPED = object(), object(), object()   # writer signals: a turn cleared, client gone, shutdown


class EventError(Exception):
    """A client event that cannot be done: answered with an ``error`` event; the session goes on."""

    def __init__(self, message: str, code: str = "invalid_value", param: str | None = None,
                 event_id: str | None = None):
        super().__init__(message)
        self.message, self.code, self.param, self.event_id = message, code, param, event_id


def error_event(message: str, code: str, kind: str = "invalid_request_error", param: str | None = None,
                event_id: str | None = None) -> dict:
    return {"type": "error", "error": {"type": kind, "code": code, "message": message, "param": param,
                                       "event_id": event_id}}


@dataclass
class Settings:
    """The transcription session as ``transcription_session.created/updated`` show it."""
    model: str = "s2s-media"
    language: str | None = None
    prompt: str = ""
    vad: bool = True

    def to_dict(self, sid: str) -> dict:
        return {"id": sid, "object": "realtime.transcription_session", "input_audio_format": "pcm16",
                "input_audio_transcription": {"model": self.model, "language": self.language, "prompt": self.prompt},
                "turn_detection": {"type": "server_vad"} if self.vad else None,
                "input_audio_noise_reduction": None, "include": [], "modalities": ["text"]}


def update_settings(current: Settings, session) -> Settings:
    """``transcription_session.update``'s ``session`` applied to ``current``; EventError naming a bad field.
    Fields this server does not use (noise reduction, ``include``, VAD thresholds) are accepted."""
    if not isinstance(session, dict):
        raise EventError(f"session must be an object, got {type(session).__name__}", param="session")
    fmt = session.get("input_audio_format", "pcm16")
    if fmt != "pcm16":
        raise EventError(f"input_audio_format {fmt!r} is not supported; send pcm16 (24 kHz mono little-endian)",
                         param="session.input_audio_format")
    new = Settings(current.model, current.language, current.prompt, current.vad)
    if "input_audio_transcription" in session:
        tr = session["input_audio_transcription"] or {}
        if not isinstance(tr, dict):
            raise EventError("input_audio_transcription must be an object or null",
                             param="session.input_audio_transcription")
        for name in ("model", "language", "prompt"):
            if tr.get(name) is not None and not isinstance(tr[name], str):
                raise EventError(f"input_audio_transcription.{name} must be a string",
                                 param=f"session.input_audio_transcription.{name}")
        new.model = tr.get("model") or current.model
        new.language = tr.get("language", current.language)
        new.prompt = tr.get("prompt") or ""
    if "turn_detection" in session:
        td = session["turn_detection"]
        if td is not None and (not isinstance(td, dict) or td.get("type", "server_vad") not in TURN_TYPES):
            raise EventError(f"turn_detection must be null or {{\"type\": \"server_vad\"}}, got {td!r}",
                             param="session.turn_detection")
        new.vad = td is not None
    return new


@dataclass
class Turn:
    """One engine stream: the audio appended between two commits (or clears)."""
    es: EngineSession
    offset: float                  # seconds of session audio before this stream began
    committed: bool = False        # a commit (or the end of the session) finished it
    items: int = 0                 # items it produced
    pending: list[Final] = field(default_factory=list)   # without VAD: its finals until the commit


class RealtimeSession(Session):
    """One realtime transcription session: a reader (client events -> engine) and a writer (engine -> events)."""

    async def serve(self) -> None:
        query = parse_qs(urlsplit(self.ws.request.path).query)
        if query.get("intent", [""])[0] != "transcription":
            raise ProtocolError("bad_request", "this server transcribes only: connect to "
                                               "/v1/realtime?intent=transcription")
        self.sid = f"sess_{next(_sessions)}"
        self.settings = Settings()
        self.options: StreamOptions | None = None     # the prompt's hotwords, compiled
        self.turn: Turn | None = None        # the stream audio is appended to now
        self.turns: asyncio.Queue = asyncio.Queue()    # Turn, then CLEARED/GONE/STOPPED or a ProtocolError
        self.open_turns: list[Turn] = []
        self.fed_s = 0.0                     # seconds of audio appended in the session
        self.item: str | None = None         # the item being spoken (its speech started)
        self.last_item: str | None = None
        self.said = ""                       # the open segment's text sent as deltas
        await self.send_event({"type": "transcription_session.created", "session": self.settings.to_dict(self.sid)})
        reader = asyncio.create_task(self._read())
        try:
            await self._write()
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            for turn in self.open_turns:
                self.app.engine.close(turn.es)

    # ---------------------------------------------------------------- client -> engine
    async def _read(self) -> None:
        engine = self.app.engine
        try:
            while True:
                if self.turn is not None:
                    await self.turn.es.wait_backlog_below(engine.config.max_buffered_s)
                msg = await self.recv()
                self.streaming = True
                try:
                    await self._on_message(msg)
                except EventError as e:
                    await self.send_event(error_event(e.message, e.code, param=e.param, event_id=e.event_id))
        except Shutdown:
            self._end_turn()
            self.turns.put_nowait(STOPPED)
        except ProtocolError as e:          # a limit: what was appended is still transcribed first
            self._end_turn()
            self.turns.put_nowait(e)
        except ConnectionClosed:
            self.turns.put_nowait(GONE)

    async def _on_message(self, msg: str | bytes) -> None:
        if isinstance(msg, bytes):
            raise EventError("binary messages are not part of this protocol; send input_audio_buffer.append "
                             "with base64 audio")
        try:
            event = parse_json(msg)
        except ProtocolError as e:
            raise EventError(e.message) from None
        kind, event_id = event.get("type"), event.get("event_id")
        if kind == "input_audio_buffer.append":
            self._append(event.get("audio"), event_id)
        elif kind == "transcription_session.update":
            settings = update_settings(self.settings, event.get("session"))
            self.options = self._prompt_options(settings.prompt)
            self.settings = settings
            await self.send_event({"type": "transcription_session.updated",
                                   "session": self.settings.to_dict(self.sid)})
        elif kind == "input_audio_buffer.commit":
            if self.turn is None:
                raise EventError("the input audio buffer is empty: append audio before a commit",
                                 code="input_audio_buffer_commit_empty", event_id=event_id)
            self._end_turn()
        elif kind == "input_audio_buffer.clear":
            if self.turn is not None:
                self.app.engine.close(self.turn.es)
                self.turn.es.queue.put_nowait(CLEARED)
                self.turn = None
            await self.send_event({"type": "input_audio_buffer.cleared"})
        elif kind == "session.update":
            raise EventError("this endpoint transcribes only: use transcription_session.update",
                             event_id=event_id)
        else:
            raise EventError(f"unknown event type {kind!r}; send transcription_session.update, "
                             "input_audio_buffer.append, input_audio_buffer.commit or input_audio_buffer.clear",
                             code="invalid_event", param="type", event_id=event_id)

    def _append(self, audio, event_id: str | None) -> None:
        if not isinstance(audio, str):
            raise EventError("input_audio_buffer.append needs audio: base64 PCM16", param="audio", event_id=event_id)
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise EventError("audio is not valid base64", param="audio", event_id=event_id) from None
        try:
            samples = self.audio(data, "pcm_s16le", INPUT_RATE)
        except ProtocolError as e:
            raise EventError(e.message, param="audio", event_id=event_id) from None
        if not len(samples):
            return
        if self.turn is None:
            es = self.app.engine.open(INPUT_RATE, self.options)
            self.turn = Turn(es, self.fed_s)
            self.open_turns.append(self.turn)
            self.turns.put_nowait(self.turn)
        self.app.engine.feed(self.turn.es, samples)
        self.fed_s += len(samples) / INPUT_RATE

    def _prompt_options(self, prompt: str) -> StreamOptions | None:
        """The hotwords of ``prompt`` compiled for the next turns; EventError when the list is unusable."""
        hotwords = prompt_hotwords(prompt)
        if not hotwords:
            return None
        try:
            return self.stream_options(hotwords=list(hotwords), where="prompt")[0]
        except ProtocolError as e:
            raise EventError(e.message, param="session.input_audio_transcription.prompt") from None

    def _end_turn(self) -> None:
        """Commit the buffer: its stream decodes the rest and ends (the writer sends its items)."""
        if self.turn is not None:
            self.turn.committed = True
            self.app.engine.finish(self.turn.es)
            self.turn = None

    # ---------------------------------------------------------------- engine -> client
    async def _write(self) -> None:
        while True:
            turn = await self.turns.get()
            if turn is GONE:
                return
            if turn is STOPPED:
                return await self.close(*SHUTDOWN_CLOSE)
            if isinstance(turn, ProtocolError):
                raise turn
            await self._drain(turn)
            self.open_turns.remove(turn)

    async def _drain(self, turn: Turn) -> None:
        """One stream's events as realtime events, until it ends (or is cleared)."""
        while True:
            item = await turn.es.queue.get()
            if isinstance(item, Partial):
                await self._partial(turn, item)
            elif isinstance(item, Final):
                if self.settings.vad:
                    await self._final(turn, [item])
                else:
                    turn.pending.append(item)
                    self.said = ""
            elif item is DONE:
                if turn.committed and (turn.pending or not turn.items):
                    await self._final(turn, turn.pending, empty_ok=True)
                return
            elif item is CLEARED:
                self.item, self.said = None, ""
                return
            else:
                raise self.internal_error(item)

    async def _partial(self, turn: Turn, partial: Partial) -> None:
        """A change of the open segment's text: the speech starts (VAD), and words it adds go out as a delta."""
        if not partial.text:
            return
        if self.item is None:
            self.item = f"item_{next(_items)}"
            if self.settings.vad:
                await self.send_event({"type": "input_audio_buffer.speech_started", "item_id": self.item,
                                       "audio_start_ms": _ms(turn.offset + partial.start)})
        if partial.text.startswith(self.said) and partial.text != self.said:
            delta = partial.text[len(self.said):]
            if turn.pending and not self.said:
                delta = " " + delta          # a new segment of the same item
            await self.send_event({"type": "conversation.item.input_audio_transcription.delta",
                                   "item_id": self.item, "content_index": 0, "delta": delta})
            self.said = partial.text

    async def _final(self, turn: Turn, finals: list[Final], empty_ok: bool = False) -> None:
        """Finals that end an item: speech stopped (VAD), committed, created, completed."""
        text = " ".join(f.text for f in finals if f.text)
        if not text and self.item is None and not empty_ok:
            return                            # a segment of silence: no item
        item = self.item or f"item_{next(_items)}"
        start = turn.offset + (finals[0].start if finals else 0.0)
        end = turn.offset + (finals[-1].end if finals else 0.0)
        if self.settings.vad:
            if self.item is None:
                await self.send_event({"type": "input_audio_buffer.speech_started", "item_id": item,
                                       "audio_start_ms": _ms(start)})
            await self.send_event({"type": "input_audio_buffer.speech_stopped", "item_id": item,
                                   "audio_end_ms": _ms(end)})
        await self.send_event({"type": "input_audio_buffer.committed", "item_id": item,
                               "previous_item_id": self.last_item})
        await self.send_event({"type": "conversation.item.created", "previous_item_id": self.last_item,
                               "item": {"id": item, "object": "realtime.item", "type": "message",
                                        "status": "completed", "role": "user",
                                        "content": [{"type": "input_audio", "transcript": None}]}})
        await self.send_event({"type": "conversation.item.input_audio_transcription.completed", "item_id": item,
                               "content_index": 0, "transcript": text,
                               "usage": {"type": "duration", "seconds": round(end - start, 3)}})
        self.last_item, self.item, self.said = item, None, ""
        turn.items += 1
        turn.pending = []

    async def send_event(self, event: dict) -> None:
        await self.send_json({"event_id": f"event_{next(_events)}", **event})

    async def send_error(self, err: ProtocolError) -> None:
        """A limit or a fault ends the session: an ``error`` event, then the close code of its code."""
        self.count_error(err)
        kind = "server_error" if err.code in ("internal", "overloaded") else "invalid_request_error"
        try:
            await self.send_event(error_event(err.message, err.code, kind))
            await self.close(err.close_code, f"{err.code}: {err.message}")
        except ConnectionClosed:
            pass


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))
