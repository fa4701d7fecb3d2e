"""JSONL manifests: one utterance per line.

Audio manifest fields: ``id``, ``audio`` (a path, absolute or relative to the manifest),
``text``, ``duration`` (seconds); optional ``speaker``, ``offset`` (seconds into the file),
``language`` (the tag whose normaliser wrote ``text``: ``de``, ``zh-CN``; absent = not marked) and
``digits`` (true when ``text`` keeps digits because the language has no number verbaliser).
Readers validate every line and report a bad one as ``file:line: reason``.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Iterable, NamedTuple

from s2s_media.errors import ManifestError
from s2s_media.frontend.audio import load_audio
from s2s_media.text.language import get_language, same_language
from s2s_media.jsonl import iter_jsonl, write_jsonl  # noqa: F401 - part of this module's API


@dataclass
class AudioRecord:
    id: str
    audio: str
    text: str
    duration: float
    speaker: str | None = None
    offset: float | None = None   # set for a segment of a longer file (0.0 is a segment at the start)
    language: str | None = None   # language tag of the transcript; None = not marked
    digits: bool | None = None    # True: the transcript keeps digits (no verbaliser for its language)
    problem: ClassVar[None] = None  # a manifest row is usable; shard entries (data/shards.py) may not be

    def load(self):
        """The utterance's samples: the whole file, or the segment ``[offset, offset + duration)``."""
        if self.offset is None:
            return load_audio(self.audio)
        return load_audio(self.audio, offset=self.offset, duration=self.duration)

    def to_json(self) -> dict:
        d = asdict(self)
        if d["speaker"] is None:
            del d["speaker"]
        for key in ("offset", "language", "digits"):
            if d[key] is None:
                del d[key]
        return d


class Segment(NamedTuple):
    """An utterance located in an audio file, as an importer found it (transcript not yet normalised);
    ``offset`` None means the whole file."""
    id: str
    audio: Path
    text: str
    duration: float
    speaker: str | None
    offset: float | None


_REQUIRED = {"id": str, "audio": str, "text": str, "duration": (int, float)}
_OPTIONAL = {"speaker": (str, type(None)), "offset": (int, float), "language": str, "digits": bool}


def parse_record(obj: object, where: str, base_dir: Path | None = None) -> AudioRecord:
    """Validate one decoded JSON object; ``where`` is ``file:line`` for the error message."""
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for key, typ in _REQUIRED.items():
        if key not in obj:
            raise ManifestError(f"{where}: missing field '{key}' (required: id, audio, text, duration)")
        if not isinstance(obj[key], typ) or isinstance(obj[key], bool):
            raise ManifestError(f"{where}: field '{key}' has type {type(obj[key]).__name__}")
    for key, typ in _OPTIONAL.items():
        if key in obj and (not isinstance(obj[key], typ) or (isinstance(obj[key], bool) and typ is not bool)):
            raise ManifestError(f"{where}: field '{key}' has type {type(obj[key]).__name__}")
    if not 0 < obj["duration"] < float("inf"):  # also catches NaN and Infinity, which json accepts
        raise ManifestError(f"{where}: field 'duration' must be > 0 seconds, got {obj['duration']}")
    if not 0 <= obj.get("offset", 0.0) < float("inf"):
        raise ManifestError(f"{where}: field 'offset' must be >= 0 seconds, got {obj['offset']}")
    if "language" in obj:
        get_language(obj["language"], f"{where}: field 'language'")
    audio = obj["audio"]
    if base_dir is not None and not os.path.isabs(audio):
        audio = str(base_dir / audio)
    return AudioRecord(id=obj["id"], audio=audio, text=obj["text"], duration=float(obj["duration"]),
                       speaker=obj.get("speaker"),
                       offset=float(obj["offset"]) if "offset" in obj else None,
                       language=obj.get("language"), digits=obj.get("digits"))


def read_manifest(path: str | Path) -> list[AudioRecord]:
    """Read and validate an audio manifest. Relative audio paths resolve against the manifest's folder."""
    base = Path(path).resolve().parent
    return [parse_record(obj, where, base) for where, obj in iter_jsonl(path)]


def check_language(records: Iterable[AudioRecord], language: str, where: str) -> None:
    """Raise a one-line :class:`ManifestError` if a record of ``where`` is marked with a language other than
    ``language`` (the model's ``tokenizer.language``). Unmarked records pass."""
    for r in records:
        if r.language is not None and not same_language(r.language, language):
            raise ManifestError(f"{where}: utterance {r.id} is marked language '{r.language}' but the model is for "
                                f"'{language}' (tokenizer.language); use a '{r.language}' model or a "
                                f"'{language}' manifest")


def write_manifest(path: str | Path, records: Iterable[AudioRecord]) -> int:
    return write_jsonl(path, (r.to_json() for r in records))
