"""From a Config to a trained model: manifests, tokenizer, normalisation stats, model, tasks, trainer.

The model's modalities decide what is read: ``audio`` reads ``data.train``/``data.dev`` (ASR),
``image`` reads ``data.caption_train``/``data.caption_dev`` (captioning); a model with both
trains both tasks in one run and one checkpoint.
"""
from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import torch

from s2s_media.frontend.logmel import compute_cmvn
from s2s_media.config import Config, tasks_of
from s2s_media.data.captions import CaptionRecord, read_caption_manifest
from s2s_media.data.manifest import AudioRecord, check_language, read_manifest
from s2s_media.data.shards import ShardItem
from s2s_media.data.sources import describe, read_source, usable
from s2s_media.errors import ConfigError, UserError
from s2s_media.models.seq2seq import Seq2SeqModel, param_count
from s2s_media.progress import progress_bar
from s2s_media.text.language import get_language
from s2s_media.text.normalize import normalize_text
from s2s_media.text.tokenizer import (CharTokenizer, SentencePieceTokenizer, Tokenizer, WordTokenizer,
                                      tokenizer_from_dict)
from s2s_media.training.checkpoint import float_state, load_checkpoint, save_checkpoint
from s2s_media.training.distributed import DistInfo, barrier, init_distributed
from s2s_media.training.tasks import TASKS
from s2s_media.training.trainer import Trainer, TrainerState

log = logging.getLogger("s2s_media.train")


def read_train_manifest(cfg: Config) -> list[AudioRecord | ShardItem]:
    """The utterances of ``data.train`` (a JSONL manifest, tar shards or a Lhotse Shar directory),
    with clear errors when it is unset or empty."""
    if not cfg.data.train:
        raise ConfigError("data.train: no training manifest given; set it in the config or with --set data.train=PATH")
    records = read_source(cfg.data.train)
    if not usable(records):
        raise UserError(f"data.train: {describe(cfg.data.train)} holds no usable utterances")
    return records


def read_caption_train_manifest(cfg: Config) -> list[CaptionRecord]:
    """The records of ``data.caption_train``, with clear errors when it is unset or empty."""
    if not cfg.data.caption_train:
        raise ConfigError("data.caption_train: no caption manifest given; set it in the config or with "
                          "--set data.caption_train=PATH")
    records = read_caption_manifest(cfg.data.caption_train)
    if not records:
        raise UserError(f"{cfg.data.caption_train}: the caption manifest is empty")
    return records


def read_task_data(cfg: Config) -> dict[str, tuple[list, list]]:
    """``{task: (train records, dev records)}`` for the model's tasks (``asr``, ``caption``)."""
    data: dict[str, tuple[list, list]] = {}
    for task in tasks_of(cfg.model):
        if task == "asr":
            train, dev = read_train_manifest(cfg), read_manifest(cfg.data.dev) if cfg.data.dev else []
            check_language(train, cfg.tokenizer.language, describe(cfg.data.train))
            check_language(dev, cfg.tokenizer.language, cfg.data.dev)
            data[task] = (train, dev)
        else:
            data[task] = (read_caption_train_manifest(cfg),
                          read_caption_manifest(cfg.data.caption_dev) if cfg.data.caption_dev else [])
    return data


def training_texts(cfg: Config, data: dict[str, tuple[list, list]] | None = None) -> list[str]:
    """The training transcripts and captions the tokenizer is fitted on, normalised by ``tokenizer.language``."""
    data = read_task_data(cfg) if data is None else data
    language = cfg.tokenizer.language
    texts = []
    for task, (train, _) in data.items():
        if task == "asr":
            texts += [normalize_text(r.text, language) for r in usable(train)]
        else:
            texts += [normalize_text(c, language) for r in train for c in r.captions]
    return texts


def tokenizer_tasks(cfg: Config) -> list[str]:
    """Task tokens: none for an ASR-only model (prefix ``[<sos>]``), else one per task (``<caption>``, ...)."""
    tasks = tasks_of(cfg.model)
    return [] if tasks == ["asr"] else tasks


def train_tokenizer(cfg: Config, texts: list[str]) -> Tokenizer:
    """Fit the configured tokenizer on normalised training texts, with the model's task tokens."""
    tc, tasks = cfg.tokenizer, tokenizer_tasks(cfg)
    if tc.kind == "char":
        return CharTokenizer.train(texts, tasks)
    if tc.kind == "word":
        return WordTokenizer.train(texts, tasks, min_freq=tc.min_freq)
    return SentencePieceTokenizer.train(texts, tc.vocab_size, tc.model_type, tasks,
                                        character_coverage=get_language(tc.language).character_coverage)


def save_tokenizer(tokenizer: Tokenizer, path: str | Path) -> Path:
    return save_checkpoint({"model": {}, "tokenizer": tokenizer.to_dict()}, path)


def load_tokenizer(path: str | Path) -> Tokenizer:
    ck = load_checkpoint(path)
    if "tokenizer" not in ck:
        raise UserError(f"{path}: has no tokenizer entry")
    return tokenizer_from_dict(ck["tokenizer"])


def tokenizer_path(cfg: Config) -> Path:
    return Path(cfg.tokenizer.path) if cfg.tokenizer.path else Path(cfg.train.exp_dir) / "tokenizer.pt"


def get_tokenizer(cfg: Config, texts: list[str], dist: DistInfo) -> Tokenizer:
    """Load the tokenizer at ``tokenizer.path`` (or ``exp_dir/tokenizer.pt``), training and saving it first if absent."""
    path = tokenizer_path(cfg)
    if not path.is_file():
        if cfg.tokenizer.path:
            raise ConfigError(f"tokenizer.path: {path} does not exist; run the recipe's tokenizer stage "
                              "or remove tokenizer.path to train one")
        if dist.is_main:
            save_tokenizer(train_tokenizer(cfg, texts), path)
    # every rank meets here, whether or not it saw the file: a rank that found it already written must
    # not skip this barrier, or it would meet rank 0's next one (get_cmvn's) and read cmvn.json too early
    barrier(dist)
    tokenizer = load_tokenizer(path)
    missing = [t for t in tokenizer_tasks(cfg) if t not in tokenizer.tasks]
    if missing:
        raise ConfigError(f"tokenizer: {path} has no <{missing[0]}> task token (it has {tokenizer.tasks or 'none'}); "
                          f"train a tokenizer for model.modalities {cfg.model.modalities}")
    return tokenizer


def get_cmvn(cfg: Config, records: list[AudioRecord | ShardItem], dist: DistInfo) -> dict:
    """Global mean/std of log-mels over up to ``data.cmvn_utterances`` training utterances, cached in exp_dir."""
    path = Path(cfg.train.exp_dir) / "cmvn.json"
    if not path.is_file() and dist.is_main:
        rng = random.Random(cfg.train.seed)
        sample = rng.sample(records, min(len(records), cfg.data.cmvn_utterances))

        def wavs():
            for r in progress_bar(sample, desc="cmvn", unit="utt"):
                try:
                    yield r.load()
                except UserError as e:
                    log.warning("cmvn: skipping %s: %s", r.id, e)
        mean, std = compute_cmvn(wavs(), cfg.model.n_mels)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"mean": mean.tolist(), "std": std.tolist(), "utterances": len(sample)}))
    barrier(dist)
    return json.loads(path.read_text())


def build_model(cfg: Config, tokenizer: Tokenizer, cmvn: dict | None) -> Seq2SeqModel:
    """A new model: CMVN stats into the audio encoder, then the starting weights — those of
    ``train.init_from`` (a training checkpoint, or an exported one such as the bundled model: its int8
    rows are scaled back to float32), else a pretrained image trunk (``image_encoder_conf.weights``)."""
    model = Seq2SeqModel(cfg.model, tokenizer.vocab_size)
    if cmvn is not None:
        model.encoders["audio"].cmvn.set_stats(torch.tensor(cmvn["mean"]), torch.tensor(cmvn["std"]))
    if cfg.train.init_from:
        state = float_state(load_checkpoint(cfg.train.init_from))
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise UserError(f"train.init_from: {cfg.train.init_from} does not fit this model's config "
                            f"({str(e).splitlines()[1 if len(str(e).splitlines()) > 1 else 0].strip()})") from None
    elif "image" in model.encoders and model.encoders["image"].cfg.weights:
        model.encoders["image"].load_trunk_weights(model.encoders["image"].cfg.weights)
    return model


def run_training(cfg: Config) -> TrainerState:
    """The whole ``s2s-media train``: works alone or under ``torchrun`` (DDP)."""
    dist = init_distributed(cfg.train.device)
    torch.manual_seed(cfg.train.seed)
    random.seed(cfg.train.seed)
    np.random.seed(cfg.train.seed)
    data = read_task_data(cfg)
    tokenizer = get_tokenizer(cfg, training_texts(cfg, data), dist)
    cmvn = get_cmvn(cfg, usable(data["asr"][0]), dist) if "asr" in data else None
    model = build_model(cfg, tokenizer, cmvn)
    if dist.is_main:
        encoders = " + ".join(f"{m} ({cfg.model.encoder if m == 'audio' else cfg.model.image_encoder})"
                              for m in model.encoders)
        log.info("model: %s encoder(s) + %s decoder, %.2f M parameters, vocab %d", encoders,
                 cfg.model.decoder, param_count(model) / 1e6, tokenizer.vocab_size)
    tasks = [TASKS[name](cfg, tokenizer, train, dev, dist) for name, (train, dev) in data.items()]
    trainer = Trainer(cfg, model, tokenizer, cmvn, tasks, dist)
    return trainer.fit()
