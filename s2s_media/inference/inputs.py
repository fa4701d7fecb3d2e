"""What a run reads: command-line paths -> a sorted list of :class:`Item` (audio or images).

:func:`discover` expands audio files, folders (``recursive`` descends) and JSONL manifests;
:func:`discover_images` expands image files and folders. Anything unusable (a missing path, a
folder without audio, a format we cannot decode) becomes an item that carries its error, so it
gets an error record in order. Neither ever raises for a bad path.
"""
from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from s2s_media.data.manifest import read_manifest
from s2s_media.errors import UserError
from s2s_media.inference.writers import record_key

NATIVE_EXTS = {".wav", ".flac", ".ogg", ".opus"}
FFMPEG_EXTS = {".mp3", ".m4a"}            # mp3 is native too when libsndfile reads it (>= 1.1)
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


@dataclass
class Item:
    """One input to transcribe.

    path: the audio file (for a failed discovery: the path that failed).
    name: its name for per-file outputs (subtitle folders): relative to the folder it was found
        in, without extension; the entry id for manifest entries.
    id, offset, duration, ref: manifest entries only (``ref`` is the reference transcript).
    error: set when the item cannot be transcribed at all (it then gets an error record).
    """

    path: str
    name: str
    id: str | None = None
    offset: float = 0.0
    duration: float | None = None
    ref: str | None = None
    error: str | None = None

    @property
    def key(self) -> str:
        return record_key(self.path, self.id)


def has_ffmpeg() -> bool:
    return shutil.which("ffmpeg") is not None


def readable_extensions() -> set[str]:
    """Audio file extensions this machine decodes: wav, flac, ogg/opus, plus mp3 (libsndfile or ffmpeg)
    and m4a (ffmpeg)."""
    exts = set(NATIVE_EXTS)
    if "MP3" in sf.available_formats():
        exts.add(".mp3")
    if has_ffmpeg():
        exts |= FFMPEG_EXTS
    return exts


def _unsupported(path: Path, readable: set[str]) -> str:
    ext = path.suffix.lower()
    if ext in FFMPEG_EXTS:
        return f"{path}: decoding {ext} needs ffmpeg, which is not on PATH; install ffmpeg or convert to wav/flac"
    shown = ", ".join(sorted(e.lstrip(".") for e in readable))
    return f"{path}: unsupported format '{ext or '(no extension)'}'; supported: {shown}, or a .jsonl manifest"


def _folder_items(folder: Path, recursive: bool, readable: set[str]) -> list[Item]:
    files = folder.rglob("*") if recursive else folder.iterdir()
    items = []
    for f in sorted(files):
        rel = f.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not f.is_file():
            continue
        ext = f.suffix.lower()
        name = str(rel.with_suffix(""))
        if ext in readable:
            items.append(Item(str(f), name))
        elif ext in FFMPEG_EXTS:  # audio we cannot decode here: say so rather than skip it silently
            items.append(Item(str(f), name, error=_unsupported(f, readable)))
    if not items:
        exts = ", ".join(sorted(e.lstrip(".") for e in readable))
        has_subfolders = any(p.is_dir() for p in folder.iterdir())
        hint = "; add --recursive to look in its subfolders" if not recursive and has_subfolders else ""
        items.append(Item(str(folder), folder.name, error=f"{folder}: no audio files ({exts}) in this folder{hint}"))
    return items


def _manifest_items(path: Path) -> list[Item]:
    try:
        records = read_manifest(path)
    except UserError as e:
        return [Item(str(path), path.stem, error=str(e))]
    if not records:
        return [Item(str(path), path.stem, error=f"{path}: the manifest has no entries")]
    return [Item(r.audio, r.id, id=r.id, offset=r.offset or 0.0, duration=r.duration if r.offset is not None else None, ref=r.text)
            for r in records]


def discover(paths: Iterable[str | Path], recursive: bool = False) -> list[Item]:
    """Expand files, folders and ``.jsonl`` manifests into items, sorted by path (then id).

    Never raises for a bad path: that path becomes an item with ``error`` set. Duplicate inputs
    are kept once; names that collide get ``-2``, ``-3``... appended.
    """
    readable = readable_extensions()
    items: list[Item] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            items += _folder_items(p, recursive, readable)
        elif not p.exists():
            items.append(Item(str(p), p.stem, error=f"{p}: no such file or folder; check the path"))
        elif p.suffix.lower() == ".jsonl":
            items += _manifest_items(p)
        elif p.suffix.lower() in readable:
            items.append(Item(str(p), p.stem))
        else:
            items.append(Item(str(p), p.stem, error=_unsupported(p, readable)))
    unique = {it.key: it for it in items}
    items = sorted(unique.values(), key=lambda it: (it.path, it.id or ""))
    seen: dict[str, int] = {}
    for it in items:
        n = seen.get(it.name, 0) + 1
        seen[it.name] = n
        if n > 1:
            it.name = f"{it.name}-{n}"
    return items


# --------------------------------------------------------------------------- images
def _not_an_image(path: Path) -> str:
    shown = ", ".join(sorted(e.lstrip(".") for e in IMAGE_EXTS))
    return f"{path}: not an image by its extension '{path.suffix or '(none)'}'; supported: {shown}"


def discover_images(paths: Iterable[str | Path], recursive: bool = False) -> list[Item]:
    """Expand files and folders into items, sorted by path; duplicates kept once.

    Files named directly are all tried (a mislabelled file is reported by :func:`load_image`);
    in folders only files with an image extension are taken. ``Item.name`` is the path relative
    to the folder without extension (``-2``, ``-3``... on collisions), used for per-image outputs.
    Never raises for a bad path: it becomes an item with ``error`` set.
    """
    items: list[Item] = []
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(f for f in (p.rglob("*") if recursive else p.iterdir())
                           if f.is_file() and f.suffix.lower() in IMAGE_EXTS
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not files:
                sub = any(c.is_dir() for c in p.iterdir())
                hint = "; add --recursive to look in its subfolders" if sub and not recursive else ""
                items.append(Item(str(p), p.name, error=f"{p}: no image files in this folder{hint}"))
            items += [Item(str(f), str(f.relative_to(p).with_suffix(""))) for f in files]
        elif not p.exists():
            items.append(Item(str(p), p.stem, error=f"{p}: no such file or folder; check the path"))
        elif p.suffix.lower() in IMAGE_EXTS:
            items.append(Item(str(p), p.stem))
        else:
            items.append(Item(str(p), p.stem, error=_not_an_image(p)))
    items = sorted({it.key: it for it in items}.values(), key=lambda it: it.path)
    seen: dict[str, int] = {}
    for it in items:
        seen[it.name] = seen.get(it.name, 0) + 1
        if seen[it.name] > 1:
            it.name = f"{it.name}-{seen[it.name]}"
    return items
