"""NeMo-style manifests: JSON lines with ``audio_filepath``, ``duration``, ``text`` and an optional
``offset`` (seconds into the file), as NeMo's ASR datasets read them.

NeMo rows have no id; :func:`nemo_segments` makes one from the audio file's name (plus the offset
in milliseconds for a segment), kept unique with a ``-N`` suffix. A relative ``audio_filepath``
resolves against the manifest's folder, as in NeMo. A row that is not an object or has a missing
or wrongly typed field is skipped with a warning naming ``file:line``.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Iterator

from s2s_media.data.manifest import Segment
from s2s_media.jsonl import iter_jsonl

FIELDS = {"audio_filepath": str, "duration": (int, float), "text": str}


def nemo_segments(path: Path, skip: Callable[[str, str], None]) -> Iterator[Segment]:
    """The rows of one NeMo manifest as segments; bad rows go to ``skip(reason, detail)``."""
    base = path.resolve().parent
    used: dict[str, int] = {}
    for where, row in iter_jsonl(path):
        if not isinstance(row, dict):
            skip("bad rows", f"{where}: expected a JSON object, got {type(row).__name__}; skipped")
            continue
        problem = next((f"missing field '{k}'" if k not in row else f"field '{k}' has type {type(row[k]).__name__}"
                        for k, typ in FIELDS.items()
                        if k not in row or not isinstance(row[k], typ) or isinstance(row[k], bool)), None)
        offset = row.get("offset")
        if problem is None and offset is not None and (isinstance(offset, bool) or not isinstance(offset, (int, float))
                                                       or not 0 <= offset < math.inf):
            problem = f"field 'offset' must be a number >= 0, got {offset!r}"
        if problem is None and not 0 < row["duration"] < math.inf:
            problem = f"field 'duration' must be > 0 seconds, got {row['duration']!r}"
        if problem is not None:
            skip("bad rows", f"{where}: {problem} (NeMo rows need audio_filepath, duration, text); skipped")
            continue
        audio = Path(row["audio_filepath"]) if os.path.isabs(row["audio_filepath"]) else base / row["audio_filepath"]
        if not audio.is_file():
            skip("missing audio", f"{where}: audio {audio} not found; skipped")
            continue
        uid = audio.stem if offset is None else f"{audio.stem}-{int(round(offset * 1000)):07d}"
        used[uid] = used.get(uid, 0) + 1
        if used[uid] > 1:
            uid = f"{uid}-{used[uid] - 1}"
        yield Segment(uid, audio, row["text"], float(row["duration"]), row.get("speaker") if isinstance(
            row.get("speaker"), str) else None, None if offset is None else float(offset))


def manifest_split(path: Path) -> str:
    """The split a NeMo manifest holds, from its name: ``train_manifest.json`` -> ``train``."""
    stem = path.name.split(".")[0]
    for noise in ("_manifest", "manifest_", "manifest"):
        stem = stem.replace(noise, "")
    return stem.strip("_-.") or "all"
