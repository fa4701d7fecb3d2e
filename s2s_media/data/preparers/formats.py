"""Preparers that import what other toolkits prepared: Lhotse manifests and NeMo-style manifests.

Both write our JSONL manifests with the shared rules (normalised transcripts, counted skips);
segments keep their ``offset`` and ``duration`` inside the original files, so no audio is copied.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from s2s_media.data.lhotse_io import EXPECTED as LHOTSE_EXPECTED, cut_segments, find_cutsets
from s2s_media.data.manifest import AudioRecord, Segment
from s2s_media.data.nemo import manifest_split, nemo_segments
from s2s_media.data.preparers.common import Issues, make_record, write_splits
from s2s_media.errors import UserError

NEMO_EXPECTED = "a NeMo manifest (JSON lines: audio_filepath, duration, text, optional offset) or a folder of them"


def _records(segments: Iterable[Segment], issues: Issues) -> list[AudioRecord]:
    out = []
    for s in segments:
        record = make_record(issues, s.id, s.audio, s.text, s.duration, s.speaker, s.offset)
        if record is not None:
            out.append(record)
    return out


def prepare_lhotse(src: Path, out: Path) -> dict[str, Path]:
    """Lhotse CutSet manifests (or recordings + supervisions) -> ``OUT/<split>.jsonl``, one
    utterance per supervision, offsets and durations kept (see :mod:`s2s_media.data.lhotse_io`)."""
    issues = Issues("lhotse")
    splits = {split: _records(cut_segments(cuts, path, issues.skip), issues)
              for split, (cuts, path) in find_cutsets(Path(src)).items()}
    return write_splits(Path(out), splits, issues, LHOTSE_EXPECTED)


def prepare_nemo(src: Path, out: Path) -> dict[str, Path]:
    """NeMo manifests -> ``OUT/<split>.jsonl`` (``train_manifest.json`` -> ``train.jsonl``)."""
    src = Path(src)
    if not src.exists():
        raise UserError(f"nemo: {src} does not exist; expected {NEMO_EXPECTED}")
    files = sorted(p for p in src.iterdir() if p.suffix in (".json", ".jsonl")) if src.is_dir() else [src]
    if not files:
        raise UserError(f"nemo: no .json/.jsonl manifest in {src}; expected {NEMO_EXPECTED}")
    issues = Issues("nemo")
    splits: dict[str, list[AudioRecord]] = {}
    for path in files:
        splits.setdefault(manifest_split(path), []).extend(_records(nemo_segments(path, issues.skip), issues))
    return write_splits(out, splits, issues, NEMO_EXPECTED)
