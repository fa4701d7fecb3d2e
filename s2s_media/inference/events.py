"""The typed contract between a streaming recogniser and what drives it (the server's engine, a script).

:class:`Recognizer` and :class:`RecognizerStream` are the calls a driver makes;
:meth:`RecognizerStream.pop_events` returns :class:`Partial` and :class:`Final` events. Times are
seconds from the start of the stream (3 decimals). Events and words also read like the dicts
they used to be (``event["text"]``, ``event.get("words")``, ``event == {...}``) and :meth:`to_dict` gives
that dict.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Protocol, Union

import numpy as np


class _Readable(Mapping):
    """Read-only mapping access (``event["text"]``, ``dict(event)``, ``event == {...}``), as for the dicts
    these types replace; :meth:`to_dict` gives the plain dict (what the server sends)."""

    def _keys(self) -> list[str]:
        keys = [f.name for f in dataclasses.fields(self)]
        return ["type", *keys] if hasattr(self, "type") else keys

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()})"


@dataclass(frozen=True, eq=False)
class Word(_Readable):
    word: str
    start: float
    end: float
    confidence: float | None        # the minimum posterior of its tokens; None without CTC frames

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True, eq=False)
class _Segment(_Readable):
    segment: int                    # index of the segment (the number of finals before it)
    text: str
    start: float
    end: float


@dataclass(frozen=True, eq=False)
class Partial(_Segment):
    """The open segment's best text so far (sent whenever it changes); ``end``: the audio decoded so far."""
    type: ClassVar[str] = "partial"

    def to_dict(self) -> dict:
        return {"type": self.type, **dataclasses.asdict(self)}


@dataclass(frozen=True, eq=False)
class Alternative(_Readable):
    """One of a segment's best hypotheses (``to_dict``: its text and confidence only)."""
    text: str
    confidence: float               # its share of the probability of the hypotheses searched (0..1)
    words: list[Word] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"text": self.text, "confidence": self.confidence}


@dataclass(frozen=True, eq=False)
class Final(_Segment):
    """A segment that ended (an endpoint, or the end of the input), with its words; ``alternatives``
    (best first, the first being ``text``) when the stream asked for them."""
    type: ClassVar[str] = "final"
    words: list[Word] = field(default_factory=list)
    alternatives: list[Alternative] = field(default_factory=list)

    def _keys(self) -> list[str]:
        keys = super()._keys()
        return keys if self.alternatives else [k for k in keys if k != "alternatives"]

    def to_dict(self) -> dict:
        msg = {"type": self.type, "segment": self.segment, "text": self.text, "start": self.start,
               "end": self.end, "words": [w.to_dict() for w in self.words]}
        if self.alternatives:
            msg["alternatives"] = [a.to_dict() for a in self.alternatives]
        return msg


Event = Union[Partial, Final]


@dataclass(frozen=True)
class StreamOptions:
    """What one stream (a server session) asks for beyond the recognizer's settings; see
    :meth:`~s2s_media.inference.streaming.StreamingRecognizer.stream_options` to build them from text."""
    context: object | None = None           # hotwords or a phrase grammar (s2s_media.decoding.context), compiled
    alternatives: int = 0                   # finals carry this many best hypotheses (0: none)
    phrases: tuple[str, ...] = ()           # with a grammar: its phrases; other words are written [unk]
    endpoint: object | None = None          # its EndpointConfig (VAD, trailing silence, longest segment); None:
                                            # the recognizer's


class RecognizerStream(Protocol):
    """One audio stream of a :class:`Recognizer`."""

    def accept_waveform(self, samples: np.ndarray, sample_rate: int = 16000) -> None: ...
    def input_finished(self) -> None: ...
    def pop_events(self) -> list[Event]: ...
    @property
    def done(self) -> bool: ...


class Recognizer(Protocol):
    """Decodes many streams with one model (:class:`~s2s_media.inference.streaming.StreamingRecognizer`)."""

    def create_stream(self, options: StreamOptions | None = None) -> RecognizerStream: ...
    def stream_options(self, hotwords=None, phrase_list=None, alternatives: int = 0,
                       max_hotwords: int = ..., endpoint: dict | None = None) -> tuple[StreamOptions, list[str]]: ...
    def is_ready(self, stream: RecognizerStream) -> bool: ...
    def decode_streams(self, streams: list[RecognizerStream]) -> None: ...
