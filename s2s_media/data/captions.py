"""Caption manifests (JSONL, one image per line) and the captioning dataset, batches and sampler.

Manifest fields: ``id``, ``image`` (a path, absolute or relative to the manifest), ``captions``
(a non-empty list of reference captions) and ``split`` (``train``, ``val``, ``test``, ...).
Readers validate every line and report a bad one as ``file:line: reason``, like audio manifests.

:class:`CaptionDataset` gives one image per item with ``captions_per_image`` of its captions
(drawn per epoch, seeded by (seed, epoch, index), so resume and worker count do not change
anything); :func:`collate` stacks the pixels and flattens the captions with a per-image
``repeat`` count; :class:`ImageBatchSampler` makes batches by image count.
"""
from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from s2s_media.data.dataset import Bad, worker_init
from s2s_media.data.manifest import iter_jsonl, write_jsonl
from s2s_media.data.sampler import EpochBatches
from s2s_media.errors import ManifestError, UserError
from s2s_media.text.normalize import normalize_text
from s2s_media.text.tokenizer import Tokenizer
from s2s_media.frontend.vision import ImageConfig, eval_transform, load_image, train_transform


@dataclass
class CaptionRecord:
    id: str
    image: str
    captions: list[str]
    split: str

    def to_json(self) -> dict:
        return asdict(self)


def parse_caption_record(obj: object, where: str, base_dir: Path | None = None) -> CaptionRecord:
    """Validate one decoded JSON object; ``where`` is ``file:line`` for the error message."""
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for key in ("id", "image", "captions", "split"):
        if key not in obj:
            raise ManifestError(f"{where}: missing field '{key}' (required: id, image, captions, split)")
    for key in ("id", "image", "split"):
        if not isinstance(obj[key], str) or not obj[key]:
            raise ManifestError(f"{where}: field '{key}' must be a non-empty string, got {obj[key]!r}")
    caps = obj["captions"]
    if not isinstance(caps, list) or not caps:
        raise ManifestError(f"{where}: field 'captions' must be a non-empty list of strings")
    for i, c in enumerate(caps):
        if not isinstance(c, str) or not c.strip():
            raise ManifestError(f"{where}: captions[{i}] must be a non-empty string, got {c!r}")
    image = obj["image"]
    if base_dir is not None and not os.path.isabs(image):
        image = str(base_dir / image)
    return CaptionRecord(id=obj["id"], image=image, captions=list(caps), split=obj["split"])


def read_caption_manifest(path: str | Path) -> list[CaptionRecord]:
    """Read and validate a caption manifest; relative image paths resolve against its folder."""
    base = Path(path).resolve().parent
    records = [parse_caption_record(obj, where, base) for where, obj in iter_jsonl(path)]
    seen: set[str] = set()
    for r in records:
        if r.id in seen:
            raise ManifestError(f"{path}: image id {r.id!r} appears twice; ids must be unique")
        seen.add(r.id)
    return records


def write_caption_manifest(path: str | Path, records: Iterable[CaptionRecord], relative_to: Path | None = None) -> int:
    """Write records as JSONL (atomically). With ``relative_to``, image paths under it are written relative."""
    def row(r: CaptionRecord) -> dict:
        d = r.to_json()
        if relative_to is not None and os.path.isabs(d["image"]):
            try:
                d["image"] = str(Path(d["image"]).relative_to(relative_to))
            except ValueError:
                pass
        return d
    return write_jsonl(path, (row(r) for r in records))


def is_caption_manifest(path: str | Path) -> bool:
    """True if the first line of a JSONL manifest has a ``captions`` field (else it is an audio manifest)."""
    for _, obj in iter_jsonl(path):
        return isinstance(obj, dict) and "captions" in obj
    return False


# --------------------------------------------------------------------------- dataset
class CaptionDataset(torch.utils.data.Dataset):
    """``__getitem__(i)`` -> dict(id, pixels (3, S, S) float, tokens: K lists, texts: K captions,
    refs: all normalised captions) or :class:`~s2s_media.data.dataset.Bad`.

    train: random captions and the train preset (flip mirrors the captions); otherwise the first
    ``captions_per_image`` captions and the eval preset.
    """

    def __init__(self, records: list[CaptionRecord], tokenizer: Tokenizer, image: ImageConfig, train: bool,
                 captions_per_image: int = 1, seed: int = 0):
        self.records, self.tokenizer, self.cfg = records, tokenizer, image
        self.train, self.k, self.seed = train, captions_per_image, seed
        self.transform = train_transform(image) if train else eval_transform(image)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        r = self.records[i]
        refs = [t for t in (normalize_text(c) for c in r.captions) if t]
        if not refs:
            return Bad(r.id, f"every caption is empty after normalisation ({r.captions[:2]!r})")
        try:
            image = load_image(r.image, self.cfg.max_pixels)
        except UserError as e:
            return Bad(r.id, str(e))
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            texts = [refs[j] for j in rng.choice(len(refs), size=min(self.k, len(refs)), replace=False)]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(rng.integers(2 ** 62)))
                pixels, texts = self.transform(image, texts)
        else:
            texts = refs[: self.k]
            pixels = self.transform(image)
        return {"id": r.id, "pixels": pixels, "texts": texts, "tokens": [self.tokenizer.encode(t) for t in texts],
                "refs": refs}


def collate(items: list) -> dict:
    """``pixels (B, 3, S, S)``, ``repeat (B,)`` captions per image, ``tokens``/``texts`` (sum(repeat),
    image by image), ``ids``, ``refs`` (B lists); ``bad`` lists the dropped items."""
    good = [x for x in items if not isinstance(x, Bad)]
    batch = {"bad": [x for x in items if isinstance(x, Bad)], "ids": [x["id"] for x in good],
             "refs": [x["refs"] for x in good], "texts": [t for x in good for t in x["texts"]],
             "tokens": [t for x in good for t in x["tokens"]], "images": len(good), "seconds": 0.0}
    if good:
        batch["pixels"] = torch.stack([x["pixels"] for x in good])
        batch["repeat"] = torch.tensor([len(x["tokens"]) for x in good])
    return batch


class ImageBatchSampler(EpochBatches):
    """Batches of ``batch_size`` images, reshuffled per epoch (same interface and resume state as
    :class:`~s2s_media.data.sampler.BucketingBatchSampler`). With ``shuffle`` the last partial batch is
    dropped (BatchNorm dislikes tiny batches); under DDP rank r takes every world-th batch."""

    def __init__(self, n: int, batch_size: int, shuffle: bool = True, seed: int = 0, rank: int = 0,
                 world_size: int = 1):
        self.n, self.batch_size = n, batch_size
        self.shuffle, self.seed, self.rank, self.world_size = shuffle, seed, rank, world_size
        self.epoch, self.skip = 0, 0

    def _all_batches(self) -> list[list[int]]:
        order = list(range(self.n))
        if self.shuffle:
            random.Random(self.seed * 1000003 + self.epoch).shuffle(order)
            full = self.n // self.batch_size * self.batch_size or self.n   # keep one short batch if that is all
            order = order[:full]
        return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def _epoch_order(self) -> list[list[int]]:
        batches = self._all_batches()
        per_rank = len(batches) // self.world_size
        return batches[self.rank::self.world_size][:per_rank]

    def __len__(self) -> int:
        return len(self._all_batches()) // self.world_size



def caption_eval_loader(records: list[CaptionRecord], tokenizer: Tokenizer, image: ImageConfig, batch_size: int,
                        workers: int = 0, captions_per_image: int = 1) -> torch.utils.data.DataLoader:
    """Batches for scoring: the eval preset, manifest order, ``batch_size`` images each."""
    ds = CaptionDataset(records, tokenizer, image, train=False, captions_per_image=captions_per_image)
    sampler = ImageBatchSampler(len(records), batch_size, shuffle=False)
    return torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                                       worker_init_fn=worker_init if workers else None)
