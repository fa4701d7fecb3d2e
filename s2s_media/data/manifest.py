"""JSONL manifests: one utterance per line.

Audio manifest fields: ``id``, ``audio`` (a path, absolute or relative to the manifest),
``text``, ``duration`` (seconds); optional ``speaker`` and ``offset`` (seconds into the file).
Readers validate every line and report a bad one as ``file:line: reason``.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

from s2s_media.errors import ManifestError


@dataclass
class AudioRecord:
    id: str
    audio: str
    text: str
    duration: float
    speaker: str | None = None
    offset: float | None = None   # set for a segment of a longer file (0.0 is a segment at the start)

    def load(self):
        """The utterance's samples: the whole file, or the segment ``[offset, offset + duration)``."""
        from s2s_media.audio import load_audio
        if self.offset is None:
            return load_audio(self.audio)
        return load_audio(self.audio, offset=self.offset, duration=self.duration)

    def to_json(self) -> dict:
        d = asdict(self)
        if d["speaker"] is None:
            del d["speaker"]
        if d["offset"] is None:
            del d["offset"]
        return d


_REQUIRED = {"id": str, "audio": str, "text": str, "duration": (int, float)}
_OPTIONAL = {"speaker": (str, type(None)), "offset": (int, float)}


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
        if key in obj and (not isinstance(obj[key], typ) or isinstance(obj[key], bool)):
            raise ManifestError(f"{where}: field '{key}' has type {type(obj[key]).__name__}")
    if not 0 < obj["duration"] < float("inf"):  # also catches NaN and Infinity, which json accepts
        raise ManifestError(f"{where}: field 'duration' must be > 0 seconds, got {obj['duration']}")
    if not 0 <= obj.get("offset", 0.0) < float("inf"):
        raise ManifestError(f"{where}: field 'offset' must be >= 0 seconds, got {obj['offset']}")
    audio = obj["audio"]
    if base_dir is not None and not os.path.isabs(audio):
        audio = str(base_dir / audio)
    return AudioRecord(id=obj["id"], audio=audio, text=obj["text"], duration=float(obj["duration"]),
                       speaker=obj.get("speaker"),
                       offset=float(obj["offset"]) if "offset" in obj else None)


def iter_jsonl(path: str | Path) -> Iterator[tuple[str, object]]:
    """Yield ``("file:line", decoded_object)`` for each non-blank line; bad JSON raises ManifestError."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{where}: not valid JSON ({e.msg}); each line must be one JSON object") from None


def read_manifest(path: str | Path) -> list[AudioRecord]:
    """Read and validate an audio manifest. Relative audio paths resolve against the manifest's folder."""
    base = Path(path).resolve().parent
    return [parse_record(obj, where, base) for where, obj in iter_jsonl(path)]


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    """Write dicts as JSONL atomically (temp file then rename). Returns the number of rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def write_manifest(path: str | Path, records: Iterable[AudioRecord]) -> int:
    return write_jsonl(path, (r.to_json() for r in records))
