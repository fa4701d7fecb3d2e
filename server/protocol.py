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

from s2s_media.inference.events import Event, Final, Partial

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 1 << 20          # 1 MiB: a larger message is a ``too_large`` error
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 48000
MAX_REASON_BYTES = 123               # RFC 6455: a close frame's reason fits in 123 bytes

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


def parse_start(text: str) -> StartRequest:
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
    return StartRequest(**fields)


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
    """The fields of Vosk's ``{"config": {...}}`` this server honours; other Vosk keys are ignored."""
    sample_rate: int = 16000
    words: bool = True


def parse_vosk_config(obj: dict, current: VoskConfig) -> VoskConfig:
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
    return VoskConfig(rate, words)


def vosk_result(finals: list[Final], words: bool) -> dict:
    """One Vosk result from the finals decoded since the last reply (several are joined into one)."""
    msg: dict = {}
    if words:
        msg["result"] = [{"conf": w.confidence if w.confidence is not None else 1.0,
                          "end": w.end, "start": w.start, "word": w.word}
                         for f in finals for w in f.words]
    msg["text"] = " ".join(f.text for f in finals if f.text)
    return msg
