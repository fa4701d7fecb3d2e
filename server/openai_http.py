"""OpenAI's transcription API on the server's port: ``POST /v1/audio/transcriptions``.

Clients written for OpenAI's audio API (the ``openai`` package, curl) work unchanged once pointed
here (``base_url="http://HOST:PORT/v1"``). A request is one more stream of the server's engine: its
audio is decoded in the same batches as the streaming sessions' chunks, and its finals (written
with punctuation, as every session's are) make the response.

The steps, each a function here: :func:`read_form` parses the multipart body as it arrives (the
file goes straight to a temporary file); :func:`load_upload` decodes it with the toolkit's audio
loader (:func:`s2s_media.frontend.audio.load_audio`: libsndfile, else librosa/ffmpeg), within the
length limit; :func:`decode` runs it through the engine; :func:`render` writes the response format.
Errors are answered in OpenAI's shape (:class:`ApiError`). ``server/README.md`` lists the fields.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from python_multipart import create_form_parser
from python_multipart.exceptions import FormParserError, ParseError
from python_multipart.multipart import Field, File

from s2s_media.errors import UserError
from s2s_media.frontend.audio import SAMPLE_RATE, load_audio
from s2s_media.inference.events import Final, StreamOptions
from server.engine import DONE, Engine
from server.transport import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from server.app import App

log = logging.getLogger(__name__)
logging.getLogger("python_multipart").setLevel(logging.WARNING)   # it logs every temporary file at INFO

ROUTES = ("/v1/audio/transcriptions",)
RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("word", "segment")
IGNORED = ("language", "temperature", "chunking_strategy", "include[]")   # accepted; no effect on this server
FEED_S = 1.0                  # seconds of audio per message to the engine
JSON = "application/json"


class ApiError(Exception):
    """A request answered with an HTTP error in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

    ``metric``: the ``s2s_errors_total`` code it counts as; ``limit``: the server limit that refused
    it (``s2s_refused_total``), if any.
    """

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 metric: str = "bad_request", limit: str | None = None, headers: list[tuple[str, str]] = ()):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.metric, self.limit, self.headers = metric, limit, list(headers)

    def response(self) -> HttpResponse:
        kind = "server_error" if self.status >= 500 else "invalid_request_error"
        body = {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}
        return HttpResponse(self.status, json.dumps(body, ensure_ascii=False).encode(), JSON, self.headers)


@dataclass(frozen=True)
class TranscriptionForm:
    """The form fields of a request, checked."""
    model: str                                   # required by the API; this server has one model
    response_format: str = "json"
    timestamp_granularities: tuple[str, ...] = ()
    prompt: str = ""                             # hotwords (:func:`prompt_hotwords`)
    language: str | None = None                  # echoed by verbose_json


class Transcription:
    """One request as admission counts it: a slot of ``--max-sessions`` while it is read and decoded."""

    def shutdown(self) -> None:
        """Nothing to stop: the request holds all its audio, and its decoding ends within the shutdown grace."""


def prompt_hotwords(prompt: str) -> tuple[str, ...]:
    """OpenAI's ``prompt`` read as hotwords: phrases separated by commas, semicolons or line breaks,
    each ``PHRASE`` or ``PHRASE:BOOST`` (a hotword file's lines). Spaces around a phrase and one
    trailing full stop are dropped, empty items skipped, and a phrase given twice is kept once.

    ``"Kubernetes, kubectl:3; Nguyen."`` -> ``("Kubernetes", "kubectl:3", "Nguyen")``.
    """
    phrases = []
    for item in re.split(r"[,;\r\n]+", prompt):
        phrase = " ".join(item.split()).removesuffix(".").strip()
        if phrase and phrase not in phrases:
            phrases.append(phrase)
    return tuple(phrases)


def prompt_options(engine: Engine, prompt: str, max_hotwords: int) -> StreamOptions | None:
    """The stream options of OpenAI's ``prompt`` (its hotwords; None when it names none); ApiError 400
    when the list is over ``max_hotwords``. Phrases the model cannot write are logged and left out."""
    hotwords = prompt_hotwords(prompt)
    if not hotwords:
        return None
    try:
        options, skipped = engine.recognizer.stream_options(hotwords=list(hotwords), max_hotwords=max_hotwords)
    except UserError as e:
        raise ApiError(400, f"prompt: {e}", param="prompt") from None
    for line in skipped:
        log.info("transcription prompt: %s", line)
    return options


# --------------------------------------------------------------------------- the endpoint
async def handle(app: App, request: HttpRequest) -> HttpResponse:
    """``POST /v1/audio/transcriptions``: admitted like a session, read, decoded, answered."""
    try:
        if request.method != "POST":
            raise ApiError(405, f"{request.method} is not allowed on {request.path}; use POST", headers=[("Allow", "POST")])
        if app.config.token and not app.authorized(request.header("Authorization"), request.query):
            raise ApiError(401, "Incorrect API key provided: give the server's token as Authorization: Bearer TOKEN",
                           code="invalid_api_key", metric="unauthorized", limit="unauthorized",
                           headers=[("WWW-Authenticate", "Bearer")])
        slot = Transcription()
        refused = app.admit(slot, request.client)
        if refused:
            raise _refusal(app, refused)
        try:
            return await _transcribe(app, request)
        finally:
            app.release(slot, request.client)
    except ApiError as e:
        app.metrics.error(e.metric)
        if e.limit is not None:
            app.metrics.refused(e.limit)
        log.info("transcription error %d %s: %s", e.status, e.metric, e.message)
        return e.response()
    except ConnectionError:
        raise                                     # the client went away: nobody to answer
    except Exception:  # noqa: BLE001 - a server bug fails this request only, in OpenAI's shape
        log.exception("transcription failed")
        app.metrics.error("internal")
        return ApiError(500, "the server failed on this request; other requests are unaffected").response()


def _refusal(app: App, reason: str) -> ApiError:
    cfg = app.config
    if reason == "max_sessions":
        return ApiError(503, f"the server is at its limit of {cfg.max_sessions} sessions; retry later", code="overloaded",
                        metric="overloaded", limit=reason)
    return ApiError(429, f"this address has {cfg.max_per_client} sessions open, the limit per client; retry later",
                    code="rate_limit_exceeded", metric="overloaded", limit=reason)


async def _transcribe(app: App, request: HttpRequest) -> HttpResponse:
    cfg = app.config
    form, file = await read_form(request, int(cfg.max_upload_mb * 1e6))
    try:
        audio = await asyncio.to_thread(load_upload, file, cfg.max_audio_s)
    finally:
        file.close()                              # the temporary file is deleted
    app.metrics.add_audio(len(audio) / SAMPLE_RATE)
    finals = await decode(app.engine, audio, prompt_options(app.engine, form.prompt, app.config.max_hotwords))
    return render(finals, form, len(audio) / SAMPLE_RATE)


async def read_form(request: HttpRequest, max_bytes: int) -> tuple[TranscriptionForm, File]:
    """The request's fields and its one ``file`` (on disk), read as the body arrives; ApiError when the
    body is not a form, is over ``max_bytes``, or its fields are wrong."""
    ctype = request.header("Content-Type")
    if not ctype.lower().startswith("multipart/form-data"):
        raise ApiError(400, f"expected a multipart/form-data body with a 'file' field, got Content-Type "
                            f"{ctype or 'none'!r}", param="file")
    too_large = ApiError(413, f"the request is over the upload limit of {max_bytes} bytes (--max-upload); send "
                              "a smaller or compressed file", param="file", code="request_too_large",
                         metric="too_large", limit="max_upload")
    if (request.content_length or 0) > max_bytes:
        raise too_large
    fields: dict[str, list[str]] = {}
    files: list[File] = []

    def on_field(f: Field) -> None:
        name = f.field_name.decode("utf-8", "replace")
        try:
            fields.setdefault(name, []).append((f.value or b"").decode("utf-8"))
        except UnicodeDecodeError:
            raise ApiError(400, f"field {name!r} is not UTF-8 text", param=name) from None

    received = 0
    try:
        parser = create_form_parser({"Content-Type": ctype.encode("latin-1")}, on_field, files.append,
                                    config={"MAX_MEMORY_FILE_SIZE": 0, "UPLOAD_KEEP_EXTENSIONS": True})
        async for chunk in request.chunks():
            received += len(chunk)
            if received > max_bytes:
                raise too_large
            parser.write(chunk)
        parser.finalize()
    except (ParseError, FormParserError, ValueError) as e:
        _close(files)
        raise ApiError(400, f"the multipart/form-data body is malformed ({e})") from None
    except TimeoutError:
        _close(files)
        raise ApiError(408, "the request body stopped arriving; send it whole", metric="timeout",
                       limit="idle_timeout") from None
    except BaseException:
        _close(files)
        raise
    try:
        return check_form(fields, files), files[0]
    except ApiError:
        _close(files)
        raise


def _close(files: list[File]) -> None:
    for f in files:
        f.close()


def check_form(fields: dict[str, list[str]], files: list[File]) -> TranscriptionForm:
    """The form's fields as a :class:`TranscriptionForm`; ApiError naming the first field that is wrong."""
    names = [f.field_name.decode("utf-8", "replace") for f in files]
    if names != ["file"]:
        raise ApiError(400, "give the audio as one file in the 'file' field" +
                       (f" (got files in {names})" if names else ""), param="file")
    known = {"model", "response_format", "timestamp_granularities[]", "prompt", "stream", *IGNORED}
    for name, values in fields.items():
        if name not in known:
            raise ApiError(400, f"Unrecognized request argument supplied: {name}", param=name)
        if len(values) > 1 and name not in ("timestamp_granularities[]", "include[]"):
            raise ApiError(400, f"field {name!r} is given {len(values)} times; give it once", param=name)
    one = {k: v[-1] for k, v in fields.items()}
    if not one.get("model"):
        raise ApiError(400, "you must provide a model parameter (any name: this server has one model)", param="model")
    fmt = one.get("response_format", "json")
    if fmt not in RESPONSE_FORMATS:
        raise ApiError(400, f"response_format {fmt!r} is not supported; use one of {', '.join(RESPONSE_FORMATS)}",
                       param="response_format")
    grains = tuple(dict.fromkeys(fields.get("timestamp_granularities[]", [])))
    for g in grains:
        if g not in GRANULARITIES:
            raise ApiError(400, f"timestamp_granularities[] {g!r} is not supported; use word or segment",
                           param="timestamp_granularities[]")
    if grains and fmt != "verbose_json":
        raise ApiError(400, "timestamp_granularities[] needs response_format verbose_json",
                       param="timestamp_granularities[]")
    if one.get("stream", "false").lower() not in ("false", "0"):
        raise ApiError(400, "stream is not supported here; stream audio over /v1/realtime or /v1/stream",
                       param="stream")
    return TranscriptionForm(one["model"], fmt, grains, one.get("prompt", ""), one.get("language") or None)


def load_upload(file: File, max_audio_s: float) -> np.ndarray:
    """The uploaded file's audio ``(samples,)`` float32 at 16 kHz mono; ApiError when it is empty,
    not audio the loader can decode, or longer than ``max_audio_s``."""
    name = (file.file_name or b"file").decode("utf-8", "replace")
    if not file.size or file.actual_file_name is None:     # any byte sends it to disk (MAX_MEMORY_FILE_SIZE 0)
        raise ApiError(400, f"{name}: the file is empty (0 bytes)", param="file", code="invalid_file_format")
    file.file_object.flush()
    path = file.actual_file_name.decode()
    try:
        audio = load_audio(path, duration=max_audio_s + 1.0)    # a second past the limit says "longer"
    except Exception as e:  # noqa: BLE001 - any decoder failure is the upload's fault, said in one line
        reason = str(e).replace(path, name) if str(e) else f"{name}: cannot decode audio ({type(e).__name__})"
        raise ApiError(400, reason, param="file", code="invalid_file_format") from None
    if len(audio) > max_audio_s * SAMPLE_RATE:
        raise ApiError(400, f"{name}: the audio is longer than the limit of {max_audio_s:g} s (--max-audio); "
                            "send a shorter file", param="file", code="audio_too_long", metric="too_large",
                       limit="max_audio")
    return audio


async def decode(engine: Engine, audio: np.ndarray, options: StreamOptions | None = None) -> list[Final]:
    """``audio (samples,)`` at 16 kHz as one engine stream (``options``: its hotwords), fed at the decoder's
    pace; its finals."""
    es = engine.open(SAMPLE_RATE, options)
    try:
        step = int(FEED_S * SAMPLE_RATE)
        for i in range(0, len(audio), step):
            await es.wait_backlog_below(engine.config.max_buffered_s)
            engine.feed(es, audio[i:i + step])
        engine.finish(es)
        finals = []
        while (item := await es.queue.get()) is not DONE:
            if isinstance(item, Final):
                finals.append(item)
            elif isinstance(item, BaseException):
                log.error("transcription failed: %s: %s", type(item).__name__, item)
                raise ApiError(500, f"decoding failed ({type(item).__name__}); other requests are unaffected",
                               metric="internal")
        return finals
    finally:
        engine.close(es)


# --------------------------------------------------------------------------- response formats
def render(finals: list[Final], form: TranscriptionForm, duration: float) -> HttpResponse:
    """The response in ``form.response_format``; segments are the finals with text."""
    segments = [f for f in finals if f.text]
    text = " ".join(f.text for f in segments)
    fmt = form.response_format
    if fmt == "text":
        return HttpResponse(200, (text + "\n").encode(), "text/plain; charset=utf-8")
    if fmt in ("srt", "vtt"):
        return HttpResponse(200, subtitles(segments, fmt).encode(), "text/plain; charset=utf-8")
    usage = {"type": "duration", "seconds": round(duration, 3)}
    if fmt == "json":
        body = {"text": text, "usage": usage}
    else:
        body = {"task": "transcribe", "language": form.language or "english", "duration": round(duration, 3),
                "text": text, "usage": usage}
        if "segment" in form.timestamp_granularities or not form.timestamp_granularities:
            body["segments"] = [verbose_segment(i, f) for i, f in enumerate(segments)]
        if "word" in form.timestamp_granularities:
            body["words"] = [{"word": w.word, "start": w.start, "end": w.end} for f in segments for w in f.words]
    return HttpResponse(200, json.dumps(body, ensure_ascii=False).encode(), JSON)


def verbose_segment(i: int, final: Final) -> dict:
    """One ``verbose_json`` segment. Fields whisper fills from its decoder are this server's own:
    ``avg_logprob`` is the mean log confidence of the segment's words, ``compression_ratio`` whisper's
    (text bytes over their zlib size), ``temperature`` 0 (the search is deterministic),
    ``no_speech_prob`` 0 (segments are cut at speech by the endpointer), ``tokens`` empty."""
    confs = [w.confidence for w in final.words if w.confidence is not None]
    data = final.text.encode()
    return {"id": i, "seek": int(final.start * 100), "start": final.start, "end": final.end, "text": final.text,
            "tokens": [], "temperature": 0.0,
            "avg_logprob": round(float(np.mean(np.log(np.maximum(confs, 1e-10)))), 4) if confs else 0.0,
            "compression_ratio": round(len(data) / len(zlib.compress(data)), 4), "no_speech_prob": 0.0}


def subtitles(segments: list[Final], fmt: str) -> str:
    """SubRip (``srt``) or WebVTT (``vtt``) cues, one per segment."""
    sep = "," if fmt == "srt" else "."
    cues = [f"{_clock(f.start, sep)} --> {_clock(f.end, sep)}\n{f.text}\n" for f in segments]
    if fmt == "srt":
        return "\n".join(f"{i}\n{cue}" for i, cue in enumerate(cues, 1))
    return "WEBVTT\n\n" + "\n".join(cues)


def _clock(seconds: float, sep: str) -> str:
    ms = int(round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"
