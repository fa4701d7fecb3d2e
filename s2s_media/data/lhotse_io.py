"""Lhotse manifests and Shar directories, read with ``lhotse`` itself.

- :func:`cut_segments` (behind ``s2s-media prepare lhotse CUTS OUT``) imports a ``CutSet`` manifest
  (``cuts.jsonl.gz``), or a recordings + supervisions pair, into our JSONL manifests. Every
  supervision becomes one utterance: ``audio`` is the recording's file, ``offset`` and
  ``duration`` locate the supervision inside it (a cut starting 30 s into a recording, holding a
  supervision 2 s into the cut, gives ``offset`` 32). The part of a supervision outside its cut is
  cut off, as Lhotse does when it loads the cut.
- :func:`scan_shar` indexes a Lhotse Shar directory (``cuts.NNNNNN.jsonl.gz`` +
  ``recording.NNNNNN.tar``) for training straight from its tars: one
  :class:`~s2s_media.data.shards.ShardItem` per supervision, reading the cut's audio member.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Iterator

from s2s_media.data.manifest import Segment
from s2s_media.data.shards import AUDIO_EXTENSIONS, ShardItem, broken, damaged_rest, walk_tar
from s2s_media.errors import UserError

try:  # the 'formats' extra
    from lhotse import CutSet, RecordingSet, SupervisionSet
    from lhotse.cut import MonoCut
except ImportError:
    CutSet = None

EXPECTED = ("a Lhotse CutSet manifest (cuts.jsonl.gz), a recordings manifest with its supervisions "
            "(recordings.jsonl.gz + supervisions.jsonl.gz), or a folder holding them")
_MANIFEST = re.compile(r"^(?P<name>.*?)(?P<kind>cuts|recordings|supervisions)(?P<rest>.*?)\.jsonl(\.gz)?$")


def manifest_kind(path: Path) -> tuple[str, str] | None:
    """``(kind, split)`` of a Lhotse manifest file name: ``librispeech_cuts_dev-clean.jsonl.gz`` is
    ``("cuts", "librispeech_dev-clean")``; ``cuts.jsonl.gz`` is ``("cuts", "all")``. None otherwise."""
    m = _MANIFEST.match(path.name)
    if m is None:
        return None
    split = (m["name"].rstrip("_.-") + ("_" if m["name"].rstrip("_.-") and m["rest"].strip("_.-") else "")
             + m["rest"].strip("_.-"))
    return m["kind"], split or "all"


def require_lhotse() -> None:
    if CutSet is None:
        raise UserError("reading Lhotse manifests needs the lhotse package: pip install 's2s-media[formats]'")


def find_cutsets(src: Path) -> dict[str, tuple[object, Path]]:
    """``{split: (cuts, manifest path)}`` for a file or a folder of Lhotse manifests."""
    require_lhotse()
    if not src.exists():
        raise UserError(f"lhotse: {src} does not exist; expected {EXPECTED}")
    files = sorted(src.iterdir()) if src.is_dir() else [src]
    kinds = {p: manifest_kind(p) for p in files}
    found: dict[str, tuple[object, Path]] = {}
    for path, kind in kinds.items():
        if kind is None:
            continue
        if kind[0] == "cuts":
            found[kind[1]] = (CutSet.from_file(path), path)
        elif kind[0] == "recordings":
            sups = path.with_name(path.name.replace("recordings", "supervisions", 1))
            if not sups.is_file():
                raise UserError(f"lhotse: {path} has no supervisions manifest beside it ({sups.name} expected); "
                                "transcripts come from the supervisions")
            found.setdefault(kind[1], (CutSet.from_manifests(recordings=RecordingSet.from_file(path),
                                                             supervisions=SupervisionSet.from_file(sups)), path))
    if not found:
        raise UserError(f"lhotse: no Lhotse manifest in {src}; expected {EXPECTED}")
    return found


def _audio_path(source: str, manifest_dir: Path) -> Path | None:
    """A recording's file: as written (absolute, or relative to the current directory, Lhotse's
    convention), else relative to the manifest's folder; None when neither exists."""
    for candidate in (Path(source), manifest_dir / source):
        if candidate.is_file():
            return candidate.resolve()
    return None


def cut_segments(cuts, manifest: Path, skip: Callable[[str, str], None]) -> Iterator[Segment]:
    """One segment per supervision of each cut (see module doc); what cannot be imported goes to
    ``skip(reason, detail)``."""
    seen: set[str] = set()
    for cut in cuts:
        rec = cut.recording if isinstance(cut, MonoCut) else None
        if rec is None:
            why = f"a {type(cut).__name__} without one recording is not supported (mix or pad cuts after import)"
            reason = "unsupported cuts"
        elif len(rec.sources) != 1 or rec.sources[0].type != "file" or rec.transforms:
            what = (f"{len(rec.sources)} audio sources (one file per channel)" if len(rec.sources) != 1 else
                    f"audio source type '{rec.sources[0].type}'" if rec.sources[0].type != "file" else
                    "audio transforms (speed, volume, ...)")
            why, reason = f"recording {rec.id} has {what}; only plain files are imported", "unsupported recordings"
        else:
            audio = _audio_path(rec.sources[0].source, manifest.parent)
            why = (None if audio is not None else
                   f"audio {rec.sources[0].source} not found (also tried relative to {manifest.parent})")
            reason = "missing audio"
        if why is not None:   # every supervision of the cut is one skipped utterance
            for sup in getattr(cut, "supervisions", None) or [None]:
                skip(reason, f"{sup.id if sup else cut.id}: {why}; skipped")
            continue
        if not cut.supervisions:
            skip("cuts without supervisions", f"{cut.id}: no supervision, so no transcript; skipped")
        for sup in cut.supervisions:
            if sup.id in seen:
                skip("duplicate supervisions", f"{sup.id}: already imported from an earlier cut; skipped")
                continue
            seen.add(sup.id)
            start, end = max(0.0, sup.start), min(cut.duration, sup.end)
            yield Segment(sup.id, audio, sup.text or "", round(end - start, 6), sup.speaker, cut.start + start)


# --------------------------------------------------------------------------- Shar
def shar_shards(root: str | Path) -> list[tuple[Path, Path]]:
    """``[(cuts.NNNNNN.jsonl.gz, recording.NNNNNN.tar), ...]`` of a Shar directory."""
    require_lhotse()
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: not a Lhotse Shar directory (expected a folder of cuts.NNNNNN.jsonl.gz "
                        "and recording.NNNNNN.tar)")
    pairs = []
    for cuts in sorted(root.glob("cuts.*.jsonl*")):
        index = cuts.name.split(".")[1]
        tar = root / f"recording.{index}.tar"
        if not tar.is_file():
            raise UserError(f"{cuts}: no {tar.name} beside it; the Shar directory must hold the 'recording' "
                            "field (CutSet.to_shar(..., fields={'recording': 'flac'}))")
        pairs.append((cuts, tar))
    if not pairs:
        raise UserError(f"{root}: no cuts.NNNNNN.jsonl.gz shards; expected a Lhotse Shar directory")
    return pairs


def scan_shar_shard(cuts_path: Path, tar_path: Path) -> list[ShardItem]:
    """One item per supervision of the shard's cuts; a cut whose audio is missing from the tar (or a
    placeholder), or a damaged manifest or tar, gives broken items naming the shard and key."""
    shard = str(tar_path)
    infos, damage = walk_tar(tar_path)
    members = {info.name: info for info in infos}
    items: list[ShardItem] = []
    try:
        for cut in CutSet.from_file(cuts_path):
            info = next((members[f"{cut.id}.{ext}"] for ext in AUDIO_EXTENSIONS if f"{cut.id}.{ext}" in members), None)
            if info is None:
                if damage is None:
                    items.append(broken(shard, cut.id, "no audio in the tar (a .nodata placeholder or a missing "
                                                       "member); skipped"))
                continue
            if not cut.supervisions:
                items.append(broken(shard, cut.id, "cut without a supervision (no transcript); skipped"))
            for sup in cut.supervisions:
                start, end = max(0.0, sup.start), min(cut.duration, sup.end)
                if not isinstance(sup.text, str) or end <= start:
                    items.append(broken(shard, f"{cut.id}/{sup.id}", "supervision without text or inside-cut "
                                                                    "duration; skipped"))
                    continue
                items.append(ShardItem(id=sup.id, text=sup.text, duration=round(end - start, 6), shard=shard, key=cut.id,
                                       offset=info.offset_data, size=info.size, speaker=sup.speaker, start=start))
    except (OSError, EOFError, ValueError, KeyError) as e:   # gzip/JSON damage in the cuts manifest
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        items.append(broken(shard, "(end)", f"{cuts_path} is unreadable ({why}); the rest of this shard is skipped"))
    if damage is not None:
        items.append(damaged_rest(shard, damage))
    return items


def scan_shar(root: str | Path) -> list[ShardItem]:
    """The utterances of a Shar directory, shard by shard."""
    return [item for cuts, tar in shar_shards(root) for item in scan_shar_shard(cuts, tar)]

