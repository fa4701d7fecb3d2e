"""What the trainer trains: one small class per task, the same interface for each.

A task owns its training data (dataset, batch sampler, collate), computes the loss of one of its
batches through the (possibly DDP-wrapped) model, and validates on its dev data:

- :class:`AsrTask`: audio manifests, batches capped by seconds, hybrid CTC/attention loss,
  dev WER from CTC greedy search;
- :class:`CaptionTask`: caption manifests, batches by image count, cross-entropy (optionally with
  scheduled sampling) or self-critical sequence training with a CIDEr-D reward, dev BLEU-4 and
  CIDEr-D from greedy captions.

:class:`MultiTaskData` joins the tasks' data into one dataset and one batch sampler (every batch
holds one task), so a multimodal model trains both tasks in one loop and one checkpoint.
"""
from __future__ import annotations

import random
from typing import Protocol

import torch

from s2s_media.caption_metrics import CiderD, bleu, cider_d
from s2s_media.config import Config
from s2s_media.errors import ConfigError
from s2s_media.data.captions import (CaptionDataset, CaptionRecord, ImageBatchSampler, caption_eval_loader,
                                     collate as collate_captions)
from s2s_media.data.dataset import AudioDataset, collate as collate_audio, eval_loader
from s2s_media.data.feature_cache import FeatureCache
from s2s_media.data.manifest import AudioRecord
from s2s_media.data.sampler import BucketingBatchSampler, EpochBatches
from s2s_media.data.shards import ShardItem
from s2s_media.data.stream_sampler import StreamBatchSampler
from s2s_media.decoding.beam_search import greedy_search
from s2s_media.decoding.ctc import ctc_greedy
from s2s_media.decoding.sampling import sample
from s2s_media.metrics import cer as char_error_rate
from s2s_media.metrics import wer as word_error_rate
from s2s_media.models.seq2seq import Seq2SeqModel, SelfCritical
from s2s_media.text.normalize import normalize_text
from s2s_media.text.tokenizer import Tokenizer, task_prefix
from s2s_media.training.distributed import DistInfo


class Task(Protocol):
    name: str                       # "asr" or "caption"
    dataset: torch.utils.data.Dataset
    sampler: object                 # a batch sampler with set_epoch/state_dict/load_state_dict/_epoch_order
    unit: str                       # what ``amount`` counts, for the throughput log
    dev: list                       # the dev records validated on

    def collate(self, items: list) -> dict: ...
    def amount(self, batch: dict) -> float: ...
    def loss(self, net, model: Seq2SeqModel, batch: dict, device: torch.device, ss_prob: float) -> dict: ...
    def validate(self, model: Seq2SeqModel, device: torch.device) -> dict[str, float]: ...


def _evenly_spaced(records: list, n: int) -> list:
    """``n`` records spread over the list (manifests are often sorted by speaker or source)."""
    step = max(1, len(records) // max(1, n))
    return records[::step][:n]


class AsrTask:
    name, unit = "asr", "audio_s"

    def __init__(self, cfg: Config, tokenizer: Tokenizer, train: list[AudioRecord | ShardItem],
                 dev: list[AudioRecord], dist: DistInfo):
        self.cfg, self.tokenizer = cfg, tokenizer
        self.prefix = task_prefix(tokenizer, "asr")
        d, t = cfg.data, cfg.train
        # broken shard entries stay: training counts them when their batch comes
        train = [r for r in train if d.min_duration <= r.duration <= d.max_duration
                 or r.problem is not None]
        self.cache = FeatureCache(d.feature_cache, cfg.model.n_mels) if d.feature_cache else None
        self.language = cfg.tokenizer.language
        self.dataset = AudioDataset(train, tokenizer, cfg.model.n_mels, d.augment, seed=t.seed,
                                    feature_cache=self.cache, language=self.language)
        if train and isinstance(train[0], ShardItem):    # a shard stream (tar shards, Lhotse Shar)
            if self.cache is not None:
                raise ConfigError("data.feature_cache: works with JSONL manifests only; unset it to train from shards")
            self.sampler = StreamBatchSampler(train, d.max_batch_seconds, d.max_batch_size, d.num_buckets,
                                              d.shuffle_buffer, seed=t.seed, rank=dist.rank,
                                              world_size=dist.world_size, num_workers=d.num_workers)
        else:
            self.sampler = BucketingBatchSampler([r.duration for r in train], d.max_batch_seconds, d.max_batch_size,
                                                 d.num_buckets, shuffle=True, seed=t.seed, rank=dist.rank,
                                                 world_size=dist.world_size)
        self.dev = _evenly_spaced(dev, t.valid_utterances)

    def collate(self, items: list) -> dict:
        return collate_audio(items)

    def amount(self, batch: dict) -> float:
        return batch["seconds"]

    def loss(self, net, model, batch, device, ss_prob):
        return net(batch["feats"].to(device), batch["lengths"].to(device), batch["tokens"], self.prefix,
                   modality="audio", ss_prob=ss_prob)

    def validate(self, model, device) -> dict[str, float]:
        """Dev loss and CTC-greedy WER and CER (NaN without a CTC head), normalised by ``tokenizer.language``."""
        loader = eval_loader(self.dev, self.tokenizer, self.cfg.model.n_mels, self.cfg.decode.batch_seconds,
                             feature_cache=self.cache, language=self.language)
        refs, hyps, loss_sum, n = [], [], 0.0, 0
        for batch in loader:
            if not batch["ids"]:
                continue
            feats, lengths = batch["feats"].to(device), batch["lengths"].to(device)
            out = model(feats, lengths, batch["tokens"], self.prefix)
            loss_sum += float(out["loss"]) * len(batch["ids"])
            n += len(batch["ids"])
            if model.ctc is not None:
                memory, mask = model.encode(feats, lengths)
                for h in ctc_greedy(model.ctc(memory), mask.sum(1)):
                    hyps.append(self.tokenizer.decode(h.tokens))
                refs.extend(batch["texts"])
        if not refs:
            return {"dev_loss": loss_sum / max(1, n), "dev_wer": float("nan"), "dev_cer": float("nan")}
        return {"dev_loss": loss_sum / max(1, n), "dev_wer": word_error_rate(refs, hyps, language=self.language).rate,
                "dev_cer": char_error_rate(refs, hyps, language=self.language).rate}


class CaptionTask:
    name, unit = "caption", "images"

    def __init__(self, cfg: Config, tokenizer: Tokenizer, train: list[CaptionRecord], dev: list[CaptionRecord],
                 dist: DistInfo):
        self.cfg, self.tokenizer = cfg, tokenizer
        self.prefix = task_prefix(tokenizer, "caption")
        d, t = cfg.data, cfg.train
        self.train_records = train
        self.dataset = CaptionDataset(train, tokenizer, d.image, train=True, captions_per_image=d.captions_per_image,
                                      seed=t.seed)
        self.sampler = ImageBatchSampler(len(train), d.images_per_batch, shuffle=True, seed=t.seed, rank=dist.rank,
                                         world_size=dist.world_size)
        self.dev = _evenly_spaced(dev, t.valid_utterances)
        self._cider = None

    def collate(self, items: list) -> dict:
        return collate_captions(items)

    def amount(self, batch: dict) -> float:
        return float(batch["images"])

    # ------------------------------------------------------------------ training
    def loss(self, net, model, batch, device, ss_prob):
        pixels = batch["pixels"].to(device)
        if not self.cfg.train.scst.enabled:
            return net(pixels, None, batch["tokens"], self.prefix, modality="image",
                       repeat=batch["repeat"].to(device), ss_prob=ss_prob)
        s = self.cfg.train.scst
        critic = SelfCritical(samples=s.samples, max_len=self.cfg.decode.caption_max_len, temperature=s.temperature,
                              reward=lambda sampled, greedy: self.rewards(batch["ids"], sampled, greedy),
                              rollouts=self.rollouts)
        # the policy being improved is the one used at test time: no dropout, BatchNorm running stats
        model.eval()
        try:
            return net(pixels, None, None, self.prefix, modality="image", self_critical=critic)
        finally:
            model.train()

    def rollouts(self, decoder, memory, mask, prefix) -> tuple[list[list[int]], list[list[int]]]:
        """SCST's captions of a batch ``memory (B, T, d)``: ``samples`` sampled per image (``(B*samples)``
        token lists, image by image) and the greedy one of each image (the baseline)."""
        s = self.cfg.train.scst
        max_len = self.cfg.decode.caption_max_len
        greedy = [h.tokens for h in greedy_search(decoder, memory, mask, prefix, max_len=max_len)]
        rows = torch.arange(memory.size(0), device=memory.device).repeat_interleave(s.samples)
        return sample(decoder, memory[rows], mask[rows], prefix, max_len, s.temperature), greedy

    def cider(self):
        """CIDEr-D with document frequencies from the training references, built once."""
        if self._cider is None:
            refs = {r.id: [t for t in map(normalize_text, r.captions) if t] for r in self.train_records}
            self._cider = CiderD({k: v for k, v in refs.items() if v})
        return self._cider

    def rewards(self, ids: list[str], sampled: list[list[int]], greedy: list[list[int]]):
        """CIDEr-D of each sampled caption ``(B*K,)`` and of its image's greedy caption ``(B*K,)``."""
        k = len(sampled) // len(ids)
        texts = [self.tokenizer.decode(s) for s in sampled] + [self.tokenizer.decode(g) for g in greedy]
        keys = [i for i in ids for _ in range(k)] + list(ids)
        _, per_item = self.cider().score(list(zip(keys, texts)))
        sample_r = torch.tensor(per_item[: len(sampled)])
        base_r = torch.tensor(per_item[len(sampled):]).repeat_interleave(k)
        return sample_r, base_r

    # ------------------------------------------------------------------ validation
    def decode(self, model: Seq2SeqModel, pixels: torch.Tensor) -> list[str]:
        """Greedy captions of a batch ``pixels (B, 3, S, S)``."""
        memory, mask = model.encode(pixels, modality="image")
        hyps = greedy_search(model.decoder, memory, mask, self.prefix, max_len=self.cfg.decode.caption_max_len)
        return [self.tokenizer.decode(h.tokens) for h in hyps]

    def validate(self, model, device) -> dict[str, float]:
        """Dev loss (teacher forcing, first caption) and greedy-caption BLEU-4 and CIDEr-D."""
        loader = caption_eval_loader(self.dev, self.tokenizer, self.cfg.data.image, self.cfg.data.images_per_batch)
        cands, refs, loss_sum, n = {}, {}, 0.0, 0
        for batch in loader:
            if not batch["ids"]:
                continue
            pixels = batch["pixels"].to(device)
            out = model(pixels, None, batch["tokens"], self.prefix, modality="image", repeat=batch["repeat"].to(device))
            loss_sum += float(out["loss"]) * len(batch["ids"])
            n += len(batch["ids"])
            for uid, ref, hyp in zip(batch["ids"], batch["refs"], self.decode(model, pixels)):
                cands[uid], refs[uid] = hyp, ref
        if not cands:
            return {"dev_loss": float("nan"), "dev_bleu4": float("nan"), "dev_cider_d": float("nan")}
        return {"dev_loss": loss_sum / max(1, n), "dev_bleu4": bleu(cands, refs)[3], "dev_cider_d": cider_d(cands, refs)[0]}


TASKS = {"asr": AsrTask, "caption": CaptionTask}


# --------------------------------------------------------------------------- joining tasks
class MultiTaskDataset(torch.utils.data.Dataset):
    """Items addressed as ``(task index, item index)``; returns ``(task index, item)``."""

    def __init__(self, datasets: list[torch.utils.data.Dataset]):
        self.datasets = datasets

    def set_epoch(self, epoch: int) -> None:
        for d in self.datasets:
            d.set_epoch(epoch)

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)

    def __getitem__(self, index: tuple[int, int]):
        t, i = index
        return t, self.datasets[t][i]


class MultiTaskBatchSampler(EpochBatches):
    """The tasks' batches of an epoch, shuffled together (deterministically from ``seed`` and the
    epoch; with one task, that task's own order). Yields lists of ``(task index, item index)``.
    Resume state as :class:`~s2s_media.data.sampler.BucketingBatchSampler`."""

    def __init__(self, samplers: list, seed: int = 0):
        self.samplers, self.seed = samplers, seed
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        for s in self.samplers:
            s.set_epoch(epoch)

    def _epoch_order(self) -> list[list[tuple[int, int]]]:
        batches = [[(t, i) for i in b] for t, s in enumerate(self.samplers) for b in s._epoch_order()]
        if len(self.samplers) > 1:
            random.Random(self.seed * 7919 + self.epoch).shuffle(batches)
        return batches

    def __len__(self) -> int:
        return sum(len(s) for s in self.samplers)

    def state_dict(self, consumed: int) -> dict:
        """The position after ``consumed`` batches, with each task's own state (a shard stream adds
        its read positions and a fingerprint of its shards)."""
        done = [0] * len(self.samplers)
        for batch in self._epoch_order()[:consumed]:
            done[batch[0][0]] += 1
        return {**super().state_dict(consumed), "tasks": [s.state_dict(n) for s, n in zip(self.samplers, done)]}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for s, sub in zip(self.samplers, state.get("tasks") or [{"epoch": self.epoch, "consumed": 0}] * len(self.samplers)):
            s.load_state_dict(sub)   # checks a stream's shards; the order is skipped here, not in the task
            s.skip = 0


class MultiTaskCollate:
    """Collate a batch of ``(task index, item)`` with its task's collate; adds ``batch["task"]``."""

    def __init__(self, tasks: list[Task]):
        self.tasks = tasks

    def __call__(self, items: list) -> dict:
        t = items[0][0]
        batch = self.tasks[t].collate([x for _, x in items])
        batch["task"] = t
        return batch
