"""Tar shards in the WebDataset layout: writing them, finding them, and indexing their utterances.

A shard is a plain tar whose members are grouped by key, WebDataset's convention: ``KEY.flac`` (or
``.wav``, ``.mp3``, ``.ogg``, ``.opus``) holds the audio and ``KEY.json`` the metadata (``text``,
optional ``id``, ``duration``, ``speaker``); a ``KEY.txt`` member may hold the transcript instead.
``s2s-media shard`` writes FLAC + JSON with :func:`write_shards` (through ``webdataset.TarWriter``).

Training does not unpack shards. :func:`scan_tar` reads each tar's headers and small metadata
members once and returns one :class:`ShardItem` per utterance: the byte range of its audio inside
the tar, its transcript and duration. The stream sampler plans batches from these items alone, and
a DataLoader worker reads an item's audio with one seek into the shard it owns. A damaged entry
(no audio member, a bad field, a tar cut off by a crash) becomes an item with a ``problem``: its
``load`` raises :class:`AudioError` naming the shard and key, so training counts and skips it.
"""
from __future__ import annotations

import glob
import io
import json
import logging
import math
import os
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import soundfile as sf

from s2s_media.data.manifest import AudioRecord
from s2s_media.errors import AudioError, UserError
from s2s_media.frontend.audio import SAMPLE_RATE, decode_audio
from s2s_media.parallel import ordered_map
from s2s_media.progress import progress_bar

try:  # the 'formats' extra
    import braceexpand
    import webdataset
    from webdataset.tariterators import base_plus_ext
except ImportError:
    webdataset = None

log = logging.getLogger("s2s_media.data.shards")

AUDIO_EXTENSIONS = ("flac", "wav", "mp3", "ogg", "opus")


@dataclass
class ShardItem:
    """One utterance inside a tar shard: ``load()`` reads ``size`` bytes at ``offset`` of ``shard``
    and decodes them (the segment ``[start, start + duration)`` when ``start`` is set, as for a
    Lhotse cut holding several supervisions). An item with a ``problem`` cannot be loaded."""
    id: str
    text: str
    duration: float
    shard: str
    key: str
    offset: int = 0
    size: int = 0
    speaker: str | None = None
    start: float | None = None
    problem: str | None = None
    language: str | None = None   # as on a manifest row (AudioRecord.language); None = not marked

    def read_bytes(self) -> bytes:
        try:
            with open(self.shard, "rb") as f:
                f.seek(self.offset)
                data = f.read(self.size)
        except OSError as e:
            raise AudioError(f"{self.shard}: key {self.key}: cannot read the shard ({e.strerror})") from None
        if len(data) < self.size:
            raise AudioError(f"{self.shard}: key {self.key}: the shard is truncated inside this item's audio")
        return data

    def load(self) -> np.ndarray:
        """The utterance's samples ``(samples,)``, 16 kHz mono float32."""
        if self.problem is not None:
            raise AudioError(self.problem)
        where = f"{self.shard}: key {self.key}"
        if self.start is None:
            return decode_audio(self.read_bytes(), where)
        return decode_audio(self.read_bytes(), where, offset=self.start, duration=self.duration)


def broken(shard: str, key: str, reason: str) -> ShardItem:
    """An item that cannot be used, with the reason naming its shard and key."""
    return ShardItem(id=key, text="", duration=0.0, shard=shard, key=key, problem=f"{shard}: key {key}: {reason}")


def require_webdataset() -> None:
    if webdataset is None:
        raise UserError("tar shards need the webdataset package: pip install 's2s-media[formats]'")


# --------------------------------------------------------------------------- finding shards
def expand_shards(spec: str) -> list[Path]:
    """The tar files of a shard spec: a brace pattern (``train-{000000..000007}.tar``), a glob,
    a folder (its ``*.tar``) or one file. A missing file or an empty match is a :class:`UserError`."""
    require_webdataset()
    path = Path(spec)
    if path.is_dir():
        found = sorted(path.glob("*.tar"))
        if not found:
            raise UserError(f"{spec}: folder holds no .tar shards; write them with 's2s-media shard MANIFEST {spec}'")
        return found
    names = [n for part in braceexpand.braceexpand(spec) for n in (sorted(glob.glob(part)) if glob.has_magic(part)
                                                                    else [part])]
    missing = [n for n in names if not Path(n).is_file()]
    if missing or not names:
        raise UserError(f"{spec}: shard {missing[0] if missing else spec} not found"
                        f"{f' ({len(missing)} of {len(names)} missing)' if len(missing) > 1 else ''}; "
                        "check the pattern (brace ranges like {000000..000007} and globs are expanded)")
    return [Path(n) for n in names]


# --------------------------------------------------------------------------- reading one shard
def walk_tar(path: str | Path) -> tuple[list[tarfile.TarInfo], str | None]:
    """The file members of a tar, headers only (data is skipped by seeking), and ``damage``: where
    a cut-off or corrupt tar ends (the members before it are kept), else None."""
    infos: list[tarfile.TarInfo] = []
    size = os.path.getsize(path)
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                if info.offset_data + info.size > size:
                    return infos, f"truncated inside {info.name}"
                infos.append(info)
    except (tarfile.TarError, EOFError) as e:
        after = f"after {infos[-1].name}" if infos else "at the start"
        return infos, f"damaged {after} ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
    return infos, None


def group_by_key(infos: list[tarfile.TarInfo]) -> tuple[dict[str, dict[str, tarfile.TarInfo]], list[str]]:
    """WebDataset grouping: ``({key: {extension: TarInfo}}, keys in order)``; the key is the member
    name up to the first dot of its file name."""
    groups: dict[str, dict[str, tarfile.TarInfo]] = {}
    for info in infos:
        key, ext = base_plus_ext(info.name)
        if key is not None:
            groups.setdefault(key, {})[ext.lower()] = info
    return groups, list(groups)


def _read_member(f, info: tarfile.TarInfo) -> bytes:
    f.seek(info.offset_data)
    return f.read(info.size)


def _item_of(shard: str, key: str, members: dict[str, tarfile.TarInfo], f) -> ShardItem:
    """The item of one key: audio byte range plus checked metadata, or a broken item saying why."""
    audio_ext = next((e for e in AUDIO_EXTENSIONS if e in members), None)
    if audio_ext is None:
        return broken(shard, key, f"no audio member (expected one of .{', .'.join(AUDIO_EXTENSIONS)}; "
                                  f"found .{', .'.join(sorted(members))}); skipped")
    meta: dict = {}
    if "json" in members:
        try:
            meta = json.loads(_read_member(f, members["json"]))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return broken(shard, key, f"{key}.json is not valid JSON ({getattr(e, 'msg', e)}); skipped")
        if not isinstance(meta, dict):
            return broken(shard, key, f"{key}.json holds {type(meta).__name__}, expected an object; skipped")
    text = meta.get("text")
    if text is None and "txt" in members:
        text = _read_member(f, members["txt"]).decode("utf-8", errors="replace").strip()
    if not isinstance(text, str):
        return broken(shard, key, "no transcript (a 'text' string in .json, or a .txt member); skipped"
                      if text is None else f"field 'text' has type {type(text).__name__}; skipped")
    for field_name, types in (("id", str), ("speaker", (str, type(None)))):
        if field_name in meta and not isinstance(meta[field_name], types):
            return broken(shard, key, f"field '{field_name}' has type {type(meta[field_name]).__name__}; skipped")
    info = members[audio_ext]
    duration = meta.get("duration")
    if duration is None:
        try:
            head = sf.info(io.BytesIO(_read_member(f, info)))
            duration = head.frames / head.samplerate
        except (sf.LibsndfileError, RuntimeError) as e:
            return broken(shard, key, f"cannot read the audio header ({str(e).splitlines()[0]}); skipped")
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not 0 < duration < math.inf:
        return broken(shard, key, f"field 'duration' must be a number > 0 seconds, got {duration!r}; skipped")
    return ShardItem(id=meta.get("id", key), text=text, duration=float(duration), shard=shard, key=key,
                     offset=info.offset_data, size=info.size, speaker=meta.get("speaker"))


def scan_tar(path: str | Path) -> list[ShardItem]:
    """The utterances of one WebDataset tar, in the tar's order (broken ones included, marked)."""
    require_webdataset()
    shard = str(path)
    infos, damage = walk_tar(path)
    groups, order = group_by_key(infos)
    with open(path, "rb") as f:
        items = [_item_of(shard, key, groups[key], f) for key in order]
    if damage is not None:
        items.append(damaged_rest(shard, damage))
    return items


def damaged_rest(shard: str, damage: str) -> ShardItem:
    """The broken item standing for the unreadable rest of a damaged shard."""
    return broken(shard, "(end)", f"{damage}; the rest of this shard is skipped")


def scan_shards(paths: Iterable[Path], workers: int = 4) -> list[ShardItem]:
    """:func:`scan_tar` over many shards (``workers`` threads), items in shard order; the number
    of broken items is logged once."""
    paths = list(paths)
    items = [it for found in ordered_map(scan_tar, paths, workers, ahead=2 * workers) for it in found]
    bad = sum(it.problem is not None for it in items)
    if bad:
        log.warning("%d of %d entries in %d shard(s) cannot be used; training skips and counts each", bad,
                    len(items), len(paths))
    return items


# --------------------------------------------------------------------------- writing shards
def shard_key(utt_id: str) -> str:
    """A WebDataset key for an utterance id: the first dot would start the extension, so dots become '_'."""
    return utt_id.replace(".", "_")


def flac_bytes(wav: np.ndarray) -> bytes:
    """16-bit FLAC of a 16 kHz waveform ``(samples,)``."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(wav, -1.0, 1.0), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


@dataclass
class ShardReport:
    shards: list[Path]
    utterances: int
    seconds: float
    skipped: list[tuple[str, str]]     # (utterance id, reason)


def _encode(record: AudioRecord) -> tuple[AudioRecord, bytes | None, str | None]:
    try:
        return record, flac_bytes(record.load()), None
    except AudioError as e:
        return record, None, str(e)


def write_shards(records: list[AudioRecord], out: str | Path, shard_seconds: float = 3600.0,
                 prefix: str = "shard", shuffle: bool = True, seed: int = 0, workers: int = 2,
                 on_skip: Callable[[str, str], None] | None = None) -> ShardReport:
    """Write ``records`` as ``OUT/<prefix>-000000.tar``, ... of about ``shard_seconds`` of audio each.

    Each utterance becomes ``KEY.flac`` (16 kHz, 16-bit) + ``KEY.json`` (``id``, ``text``,
    ``duration``, ``speaker``). Records are shuffled first (``seed``) so every shard mixes speakers
    and sources, as a shuffle buffer over a few shards expects. Audio is decoded on ``workers``
    threads. A record whose audio cannot be read is skipped (``on_skip(id, reason)``). Each shard
    is written under a temporary name and renamed when complete.
    """
    require_webdataset()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    order = list(records)
    if shuffle:
        random.Random(seed).shuffle(order)
    shards: list[Path] = []
    skipped: list[tuple[str, str]] = []
    writer, tmp, held, total, count = None, None, 0.0, 0.0, 0
    keys: set[str] = set()

    def close():
        nonlocal writer
        if writer is not None:
            writer.close()
            os.replace(tmp, shards[-1])
            writer = None

    bar = progress_bar(total=len(order), desc="shard", unit="utt")
    for record, data, error in ordered_map(_encode, order, workers, ahead=4 * max(1, workers)):
        bar.update(1)
        if data is None:
            skipped.append((record.id, error))
            if on_skip is not None:
                on_skip(record.id, error)
            continue
        if writer is None or held >= shard_seconds:
            close()
            shards.append(out / f"{prefix}-{len(shards):06d}.tar")
            tmp = shards[-1].with_name(shards[-1].name + ".tmp")
            writer, held = webdataset.TarWriter(str(tmp)), 0.0
        meta = {"id": record.id, "text": record.text, "duration": record.duration}
        if record.speaker is not None:
            meta["speaker"] = record.speaker
        key = shard_key(record.id)
        while key in keys:          # two ids that differ only in dots
            key += "_"
        keys.add(key)
        writer.write({"__key__": key, "flac": data, "json": meta})
        held += record.duration
        total += record.duration
        count += 1
    close()
    bar.close()
    return ShardReport(shards, count, total, skipped)
