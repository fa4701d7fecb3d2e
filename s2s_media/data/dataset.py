"""ASR dataset: manifest records or shard items -> (log-mel features, token ids), with augmentation in training.

With a :class:`~s2s_media.data.feature_cache.FeatureCache` the features come from disk (computed
once), and only SpecAugment is applied on the fly; waveform augmentation is then refused.

Every random choice of an item comes from a NumPy generator seeded by (seed, epoch, index),
so results do not depend on the number of DataLoader workers and resume exactly.
A bad utterance (unreadable audio, empty transcript) is not fatal: the item carries the
reason, ``collate`` drops it, and the trainer warns and counts.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from s2s_media.frontend.audio import HOP_LENGTH, SAMPLE_RATE
from s2s_media.frontend.logmel import LogMel
from s2s_media.frontend.augment import AugmentConfig, SpecAugment, WaveAugment
from s2s_media.data.feature_cache import FeatureCache
from s2s_media.data.manifest import AudioRecord
from s2s_media.data.sampler import BucketingBatchSampler
from s2s_media.data.shards import ShardItem
from s2s_media.errors import UserError
from s2s_media.text.language import DEFAULT_LANGUAGE
from s2s_media.text.normalize import normalize_text
from s2s_media.text.tokenizer import Tokenizer


# the ×4 convolutional subsampling needs 7 feature frames for one output frame
MIN_FRAMES = 7
MIN_SAMPLES = MIN_FRAMES * HOP_LENGTH


@dataclass
class Bad:
    """An item that could not be used, with its reason."""
    id: str
    reason: str


class AudioDataset(torch.utils.data.Dataset):
    """``__getitem__(i)`` -> dict(id, feats (T, n_mels) float32, tokens list[int], text) or :class:`Bad`."""

    def __init__(self, records: list[AudioRecord | ShardItem], tokenizer: Tokenizer, n_mels: int = 80,
                 augment: AugmentConfig | None = None, seed: int = 0, feature_cache: FeatureCache | None = None,
                 language: str = DEFAULT_LANGUAGE):
        self.records = records
        self.language = language          # the normaliser of the targets (tokenizer.language)
        self.tokenizer = tokenizer
        self.logmel = LogMel(n_mels)
        self.cache = feature_cache
        self.wave_aug = WaveAugment(augment) if augment is not None else None
        if self.cache is not None and augment is not None and any(
                getattr(augment, part).enabled for part in ("speed", "noise", "reverb")):
            raise UserError("data.feature_cache: stored features can't take waveform augmentation; turn off "
                            "data.augment.speed, .noise and .reverb (bake them into the corpus) or unset the cache")
        self.spec_aug = SpecAugment(augment.spec_augment) if augment is not None else None
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        r = self.records[i]
        if r.problem is not None:            # a broken shard entry: the reason names its shard and key
            return Bad(r.id, r.problem)
        text = normalize_text(r.text, self.language)
        if not text:
            return Bad(r.id, f"empty transcript after normalisation ({r.text!r})")
        rng = np.random.default_rng([self.seed, self.epoch, i])
        try:
            feats, seconds = self._features(r, rng)
        except UserError as e:
            return Bad(r.id, str(e))
        if feats.size(0) < MIN_FRAMES:
            return Bad(r.id, f"too short ({feats.size(0) * HOP_LENGTH / SAMPLE_RATE:.3f} s; the encoders need at "
                             f"least {MIN_SAMPLES / SAMPLE_RATE:.2f} s)")
        if self.spec_aug is not None:
            feats = self.spec_aug(feats, rng)
        return {"id": r.id, "feats": feats, "tokens": self.tokenizer.encode(text), "text": text,
                "duration": seconds}

    def _features(self, r: AudioRecord, rng: np.random.Generator) -> tuple[torch.Tensor, float]:
        """``(feats (frames, n_mels), seconds)``: from the cache (the manifest's duration), or from
        the (augmented) waveform."""
        if self.cache is not None:
            return self.cache.get(r), r.duration
        wav = r.load()
        if self.wave_aug is not None:
            wav = self.wave_aug(wav, rng)
        return self.logmel(torch.from_numpy(np.ascontiguousarray(wav)).unsqueeze(0))[0], len(wav) / SAMPLE_RATE


def collate(items: list) -> dict:
    """Pad a list of items: ``feats (B, T, F)``, ``lengths (B,)``, ``tokens`` (B lists), ``ids``, ``texts``;
    ``bad`` lists the dropped :class:`Bad` items."""
    good = [x for x in items if not isinstance(x, Bad)]
    bad = [x for x in items if isinstance(x, Bad)]
    batch = {"bad": bad, "ids": [x["id"] for x in good], "texts": [x["text"] for x in good],
             "tokens": [x["tokens"] for x in good], "seconds": sum(x["duration"] for x in good)}
    if good:
        lengths = torch.tensor([x["feats"].size(0) for x in good])
        feats = torch.zeros(len(good), int(lengths.max()), good[0]["feats"].size(1))
        for j, x in enumerate(good):
            feats[j, : x["feats"].size(0)] = x["feats"]
        batch["feats"], batch["lengths"] = feats, lengths
    return batch


def worker_init(_: int) -> None:
    """DataLoader workers: one intra-op thread each, so they don't fight the trainer for cores."""
    torch.set_num_threads(1)


def eval_loader(records: list[AudioRecord], tokenizer: Tokenizer, n_mels: int, batch_seconds: float,
                workers: int = 0, feature_cache: FeatureCache | None = None,
                language: str = DEFAULT_LANGUAGE) -> torch.utils.data.DataLoader:
    """Batches for scoring: no augmentation, duration-bucketed, in a fixed order; references normalised
    by ``language``."""
    ds = AudioDataset(records, tokenizer, n_mels, augment=None, feature_cache=feature_cache, language=language)
    sampler = BucketingBatchSampler([r.duration for r in records], batch_seconds, shuffle=False)
    return torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                                       worker_init_fn=worker_init if workers else None)
