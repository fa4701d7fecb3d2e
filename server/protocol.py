"""Wire formats: protocol v1 (``/v1/stream``) and the Vosk protocol (``/vosk``).

Pure functions and small types, no sockets: parsing and validating what a client sends, turning
audio bytes into float samples, and building what the server sends. ``server/README.md`` is the
protocol's specification; this module is its implementation.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from s2s_media.decoding.context import Hotword
from s2s_media.errors import UserError
from s2s_media.inference.events import Event, Final, Partial
from s2s_media.inference.streaming.config import ENDPOINT_VADS

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 1 << 20          # 1 MiB: a larger message is a ``too_large`` error
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 48000
MAX_REASON_BYTES = 123               # RFC 6455: a close frame's reason fits in 123 bytes
MAX_HOTWORDS = 1000                  # default of hotwords or phrase_list entries one session may give (--max-hotwords)
MAX_ALTERNATIVES = 10                # the most alternatives a final can carry
MAX_TRAILING_SILENCE_S = 30.0        # start: trailing_silence within (0, this]
MIN_SEGMENT_S, MAX_SEGMENT_S = 1.0, 60.0   # start: max_segment within [these]: bounds a segment's decoder memory

# error code -> websocket close code
CLOSE_CODES = {
    "bad_request": 1008,             # policy violation
    "unsupported_encoding": 1003,    # unsupported data
    "too_large": 1009,               # message too big
    "overloaded": 1013,              # try again later
    "timeout": 1008,
    "internal": 1011,                # internal error
}

# encoding -> (numpy dtype, bytes per sample, full scale)
ENCODINGS = {
    "pcm_s16le": (np.dtype("<i2"), 2, 32768.0),
    "f32le": (np.dtype("<f4"), 4, 1.0),
}


class ProtocolError(Exception):
    """Something that ends a session with ``{"type":"error"}`` and the close code of ``code``."""

    def __init__(self, code: str, message: str, limit: str | None = None):
        assert code in CLOSE_CODES, code
        super().__init__(message)
        self.code = code
        self.message = message
        self.limit = limit           # the server limit that ended the session (``s2s_refused_total{reason}``)

    @property
    def close_code(self) -> int:
        return CLOSE_CODES[self.code]

    def to_message(self) -> dict:
        return {"type": "error", "code": self.code, "message": self.message}


@dataclass(frozen=True)
class StartRequest:
    """The fields of v1's ``{"type":"start"}`` message, with their defaults."""
    sample_rate: int = 16000        # of the audio the client sends; the server resamples
    encoding: str = "pcm_s16le"     # pcm_s16le | f32le, mono, little-endian
    punctuation: bool = True        # write finals with capitals and . , ? ! (when the server has a punctuator)
    partials: bool = True           # send ``partial`` messages
    words: bool = True              # put word timings in ``final`` messages
    hotwords: tuple[Hotword, ...] | None = None   # phrases to favour: "phrase", "phrase:boost" or
                                    # {"phrase", "boost"}; boost per token (default 2.0)
    max_alternatives: int = 0       # finals carry this many best hypotheses with confidences
    vad: str | None = None          # what judges silence for endpointing: auto | silero | energy | ctc
    trailing_silence: float | None = None   # seconds of silence after speech that end a segment
    max_segment: float | None = None        # seconds: a segment this long ends (a final is forced)
                                    # None: the server's choice (serve --vad, --trailing-silence, --max-segment)

    def endpoint(self) -> dict:
        """The endpoint rules the session chose, as EndpointConfig fields (empty: the server's)."""
        rules = {"vad": self.vad, "rule1_min_trailing_silence": self.trailing_silence,
                 "rule3_max_utterance": self.max_segment}
        return {k: v for k, v in rules.items() if v is not None}


def parse_json(text: str) -> dict:
    """A text message as a JSON object, or ``bad_request``."""
    try:
        obj = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except ValueError as e:
        raise ProtocolError("bad_request", f"text message is not valid JSON ({e})") from None
    except RecursionError:
        raise ProtocolError("bad_request", "text message is not valid JSON (nested too deeply)") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_request", f"text message must be a JSON object, got {type(obj).__name__}")
    return obj


def _no_constant(name: str):
    """``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (Python's json module accepts them)."""
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    """A JSON number as a float; one too large for a float (``1e999``) is not accepted."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def check_sample_rate(value, field: str = "sample_rate") -> int:
    """An integer rate in [8000, 48000] (an integral float such as 16000.0 is accepted too)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value):
        raise ProtocolError("bad_request", f"{field} must be an integer number of Hz, got {value!r}")
    if not MIN_SAMPLE_RATE <= value <= MAX_SAMPLE_RATE:
        raise ProtocolError("bad_request", f"{field} must be between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz, "
                                           f"got {int(value)}")
    return int(value)


def parse_start(text: str, max_hotwords: int = MAX_HOTWORDS) -> StartRequest:
    """v1's first message; anything else is ``bad_request`` (``unsupported_encoding`` for an unknown encoding)."""
    obj = parse_json(text)
    if obj.get("type") != "start":
        raise ProtocolError("bad_request", f"the first message must be {{\"type\":\"start\"}}, got type "
                                           f"{obj.get('type')!r}")
    fields = {k: v for k, v in obj.items() if k != "type"}
    known = set(StartRequest.__dataclass_fields__)
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ProtocolError("bad_request", f"start: unknown field {unknown[0]!r}; valid fields are {sorted(known)}")
    for name in ("partials", "words", "punctuation"):
        if name in fields and not isinstance(fields[name], bool):
            raise ProtocolError("bad_request", f"start: {name} must be true or false, got {fields[name]!r}")
    if "encoding" in fields:
        if not isinstance(fields["encoding"], str):
            raise ProtocolError("bad_request", f"start: encoding must be a string, got {fields['encoding']!r}")
        if fields["encoding"] not in ENCODINGS:
            raise ProtocolError("unsupported_encoding", f"encoding {fields['encoding']!r} is not supported; "
                                                        f"use one of {sorted(ENCODINGS)}")
    if "sample_rate" in fields:
        fields["sample_rate"] = check_sample_rate(fields["sample_rate"], "start: sample_rate")
    if "hotwords" in fields:
        fields["hotwords"] = parse_hotwords(fields["hotwords"], "start: hotwords", max_hotwords)
    if "max_alternatives" in fields:
        fields["max_alternatives"] = check_alternatives(fields["max_alternatives"], "start: max_alternatives")
    if "vad" in fields and fields["vad"] not in ENDPOINT_VADS:
        raise ProtocolError("bad_request", f"start: vad must be one of {', '.join(ENDPOINT_VADS)}, "
                                           f"got {json.dumps(fields['vad'])[:40]}")
    if "trailing_silence" in fields:
        fields["trailing_silence"] = _seconds(fields["trailing_silence"], "start: trailing_silence", 0.0,
                                              MAX_TRAILING_SILENCE_S, low_open=True)
    if "max_segment" in fields:
        fields["max_segment"] = _seconds(fields["max_segment"], "start: max_segment", MIN_SEGMENT_S, MAX_SEGMENT_S)
    return StartRequest(**fields)


def _seconds(value, field: str, low: float, high: float, low_open: bool = False) -> float:
    """A number of seconds within ``[low, high]`` (``(low, high]`` with ``low_open``), or ``bad_request``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError("bad_request", f"{field} must be a number of seconds, got {json.dumps(value)[:40]}")
    if value < low or (low_open and value == low) or value > high:
        bounds = f"{'above' if low_open else 'at least'} {low:g} and at most {high:g}"
        raise ProtocolError("bad_request", f"{field} must be {bounds} seconds, got {value:g}")
    return float(value)


def parse_hotwords(value, field: str, limit: int = MAX_HOTWORDS) -> tuple[Hotword, ...]:
    """A JSON list of up to ``limit`` hotwords: ``"phrase"``, ``"phrase:boost"`` or ``{"phrase": ..., "boost": ...}``."""
    _check_phrases(value, field, isinstance(value, list), limit)
    out = []
    for i, item in enumerate(value):
        try:
            if isinstance(item, str):
                out.append(Hotword.parse(item, f"{field}[{i}]"))
            elif isinstance(item, dict) and isinstance(item.get("phrase"), str) and item["phrase"].strip() \
                    and set(item) <= {"phrase", "boost"} and isinstance(item.get("boost", 0.0), (int, float)) \
                    and not isinstance(item.get("boost"), bool):
                boost = item.get("boost")
                out.append(Hotword(item["phrase"].strip(), None if boost is None else float(boost)))
            else:
                raise UserError(f"{field}[{i}]: expected \"phrase\", \"phrase:boost\" or "
                                f"{{\"phrase\": ..., \"boost\": ...}}, got {json.dumps(item)[:60]}")
        except UserError as e:
            raise ProtocolError("bad_request", str(e)) from None
    return tuple(out)


def parse_phrase_list(value, field: str, limit: int = MAX_HOTWORDS) -> tuple[str, ...]:
    """Vosk's ``phrase_list``: a list of 1 to ``limit`` strings (``"[unk]"`` allows any other word)."""
    _check_phrases(value, field, isinstance(value, list) and all(isinstance(p, str) for p in value), limit)
    return tuple(value)


def _check_phrases(value, field: str, well_formed: bool, limit: int) -> None:
    """``bad_request`` unless ``value`` is a well-formed list of 1 to ``limit`` phrases."""
    if not well_formed:
        raise ProtocolError("bad_request", f"{field} must be a list of phrases, got {json.dumps(value)[:60]}")
    if not value:
        raise ProtocolError("bad_request", f"{field} is empty; leave it out or list at least one phrase")
    if len(value) > limit:
        raise ProtocolError("bad_request", f"{field} has {len(value)} phrases, over the server's limit of {limit}; "
                                           "send fewer")


def check_alternatives(value, field: str) -> int:
    """An integer in [0, MAX_ALTERNATIVES]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ProtocolError("bad_request", f"{field} must be an integer, got {value!r}")
    if not 0 <= value <= MAX_ALTERNATIVES:
        raise ProtocolError("bad_request", f"{field} must be between 0 and {MAX_ALTERNATIVES}, got {int(value)}")
    return int(value)


def parse_control(text: str) -> str:
    """A v1 text message after ``start``: returns its type (only ``stop`` is valid)."""
    obj = parse_json(text)
    kind = obj.get("type")
    if kind == "stop":
        return kind
    if kind == "start":
        raise ProtocolError("bad_request", "the session has already started; send audio or {\"type\":\"stop\"}")
    raise ProtocolError("bad_request", f"unknown message type {kind!r}; after start only binary audio and "
                                       "{\"type\":\"stop\"} are valid")


def decode_audio(data: bytes, encoding: str) -> np.ndarray:
    """Raw little-endian mono samples -> ``(samples,)`` float32 in [-1, 1]."""
    dtype, width, scale = ENCODINGS[encoding]
    if len(data) % width:
        raise ProtocolError("bad_request", f"audio message of {len(data)} bytes is not a whole number of "
                                           f"{width}-byte {encoding} samples")
    samples = np.frombuffer(data, dtype=dtype).astype(np.float32)
    if scale != 1.0:
        samples /= scale
    elif not np.isfinite(samples).all():
        raise ProtocolError("bad_request", "f32le audio contains NaN or infinite samples")
    return np.clip(samples, -1.0, 1.0, out=samples)


def v1_event(event: Event, start: StartRequest) -> dict | None:
    """A decoder event as the v1 message for this session, or None when the client did not ask for it."""
    if isinstance(event, Partial):
        return event.to_dict() if start.partials else None
    msg = event.to_dict()
    if not start.words:
        del msg["words"]
    return msg


# --------------------------------------------------------------------------- Vosk
@dataclass(frozen=True)
class VoskConfig:
    """The fields of Vosk's ``{"config": {...}}`` this server honours; other Vosk keys are ignored.
    ``hotwords`` is ours (v1's shape); ``phrase_list`` restricts results to its phrases."""
    sample_rate: int = 16000
    words: bool = True
    max_alternatives: int = 0
    phrase_list: tuple[str, ...] | None = None
    hotwords: tuple[Hotword, ...] | None = None

    def decoding(self) -> tuple:
        """The fields that change how audio is decoded (a change starts a new stream)."""
        return self.sample_rate, self.max_alternatives, self.phrase_list, self.hotwords


def parse_vosk_config(obj: dict, current: VoskConfig, max_hotwords: int = MAX_HOTWORDS) -> VoskConfig:
    """The session's config after a ``{"config": {...}}`` message: the fields it names replace ``current``'s."""
    conf = obj["config"]
    if not isinstance(conf, dict):
        raise ProtocolError("bad_request", f"config must be a JSON object, got {conf!r}")
    rate = check_sample_rate(conf["sample_rate"], "config.sample_rate") if "sample_rate" in conf \
        else current.sample_rate
    words = current.words
    if "words" in conf:
        if not isinstance(conf["words"], (bool, int)):
            raise ProtocolError("bad_request", f"config.words must be true or false, got {conf['words']!r}")
        words = bool(conf["words"])
    alternatives = check_alternatives(conf["max_alternatives"], "config.max_alternatives") \
        if "max_alternatives" in conf else current.max_alternatives
    phrases = parse_phrase_list(conf["phrase_list"], "config.phrase_list", max_hotwords) if "phrase_list" in conf \
        else current.phrase_list
    hotwords = parse_hotwords(conf["hotwords"], "config.hotwords", max_hotwords) if "hotwords" in conf \
        else current.hotwords
    if phrases is not None and hotwords is not None:
        raise ProtocolError("bad_request", "config: give phrase_list or hotwords, not both (a phrase list already "
                                           "restricts results to its phrases)")
    return VoskConfig(rate, words, alternatives, phrases, hotwords)


def _vosk_words(words, offset: float) -> list[dict]:
    return [{"conf": w.confidence if w.confidence is not None else 1.0, "end": round(w.end + offset, 3),
             "start": round(w.start + offset, 3), "word": w.word} for w in words]


def vosk_result(finals: list[tuple[Final, float]], config: VoskConfig) -> dict:
    """One Vosk result from the finals decoded since the last reply, each with the seconds its stream
    started at (several are joined into one). With ``max_alternatives``, Vosk's n-best shape:
    ``{"alternatives": [{"confidence", "result" (with words), "text"}]}``, the k-th joining every
    final's k-th alternative (or its last), confidences multiplied."""
    if config.max_alternatives > 0:
        per_final = [(f.alternatives or [None], f, off) for f, off in finals]
        out = []
        for k in range(max((len(a) for a, _, _ in per_final), default=1)):
            texts, words, conf = [], [], 1.0
            for alts, f, off in per_final:
                alt = alts[min(k, len(alts) - 1)]
                texts.append(f.text if alt is None else alt.text)
                conf *= 1.0 if alt is None else alt.confidence
                words += _vosk_words(f.words if alt is None else alt.words, off)
            entry: dict = {"confidence": round(conf, 4)}
            if config.words:
                entry["result"] = words
            entry["text"] = " ".join(t for t in texts if t)
            out.append(entry)
        return {"alternatives": out}
    msg: dict = {}
    if config.words:
        msg["result"] = [w for f, off in finals for w in _vosk_words(f.words, off)]
    msg["text"] = " ".join(f.text for f, _ in finals if f.text)
    return msg
