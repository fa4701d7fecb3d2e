"""From a Config to a trained model: tokenizer, normalisation stats, model, trainer."""
from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from s2s_media.audio import compute_cmvn
from s2s_media.config import Config
from s2s_media.data.manifest import AudioRecord, read_manifest
from s2s_media.errors import ConfigError, UserError
from s2s_media.models.build import param_count
from s2s_media.models.seq2seq import Seq2SeqModel
from s2s_media.text.normalize import normalize_text
from s2s_media.text.tokenizer import (CharTokenizer, SentencePieceTokenizer, Tokenizer, WordTokenizer,
                                      tokenizer_from_dict)
from s2s_media.training.distributed import DistInfo, barrier, init_distributed
from s2s_media.training.trainer import Trainer, TrainerState

log = logging.getLogger("s2s_media.train")


def read_train_manifest(cfg: Config) -> list[AudioRecord]:
    """The records of ``data.train``, with clear errors when it is unset or empty."""
    if not cfg.data.train:
        raise ConfigError("data.train: no training manifest given; set it in the config or with --set data.train=PATH")
    records = read_manifest(cfg.data.train)
    if not records:
        raise UserError(f"{cfg.data.train}: the training manifest is empty")
    return records


def train_tokenizer(cfg: Config, records: list[AudioRecord], tasks=()) -> Tokenizer:
    """Fit the configured tokenizer on the normalised training transcripts."""
    texts = [normalize_text(r.text) for r in records]
    tc = cfg.tokenizer
    if tc.kind == "char":
        return CharTokenizer.train(texts, tasks)
    if tc.kind == "word":
        return WordTokenizer.train(texts, tasks)
    return SentencePieceTokenizer.train(texts, tc.vocab_size, tc.model_type, tasks)


def save_tokenizer(tokenizer: Tokenizer, path: str | Path) -> Path:
    from s2s_media.training.checkpoint import save_checkpoint
    return save_checkpoint({"model": {}, "tokenizer": tokenizer.to_dict()}, path)


def load_tokenizer(path: str | Path) -> Tokenizer:
    from s2s_media.training.checkpoint import load_checkpoint
    ck = load_checkpoint(path)
    if "tokenizer" not in ck:
        raise UserError(f"{path}: has no tokenizer entry")
    return tokenizer_from_dict(ck["tokenizer"])


def tokenizer_path(cfg: Config) -> Path:
    return Path(cfg.tokenizer.path) if cfg.tokenizer.path else Path(cfg.train.exp_dir) / "tokenizer.pt"


def get_tokenizer(cfg: Config, records: list[AudioRecord], dist: DistInfo) -> Tokenizer:
    """Load the tokenizer at ``tokenizer.path`` (or ``exp_dir/tokenizer.pt``), training and saving it first if absent."""
    path = tokenizer_path(cfg)
    if not path.is_file():
        if cfg.tokenizer.path:
            raise ConfigError(f"tokenizer.path: {path} does not exist; run the recipe's tokenizer stage "
                              "or remove tokenizer.path to train one")
        if dist.is_main:
            save_tokenizer(train_tokenizer(cfg, records), path)
        barrier(dist)
    return load_tokenizer(path)


def get_cmvn(cfg: Config, records: list[AudioRecord], dist: DistInfo) -> dict:
    """Global mean/std of log-mels over up to ``data.cmvn_utterances`` training utterances, cached in exp_dir."""
    path = Path(cfg.train.exp_dir) / "cmvn.json"
    if not path.is_file() and dist.is_main:
        rng = random.Random(cfg.train.seed)
        sample = rng.sample(records, min(len(records), cfg.data.cmvn_utterances))

        def wavs():
            for r in tqdm(sample, desc="cmvn", unit="utt", mininterval=2.0):
                try:
                    yield r.load()
                except UserError as e:
                    log.warning("cmvn: skipping %s: %s", r.id, e)
        mean, std = compute_cmvn(wavs(), cfg.model.n_mels)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"mean": mean.tolist(), "std": std.tolist(), "utterances": len(sample)}))
    barrier(dist)
    return json.loads(path.read_text())


def build_asr_model(cfg: Config, tokenizer: Tokenizer, cmvn: dict) -> Seq2SeqModel:
    model = Seq2SeqModel(cfg.model, tokenizer.vocab_size)
    model.encoders["audio"].cmvn.set_stats(torch.tensor(cmvn["mean"]), torch.tensor(cmvn["std"]))
    return model


def run_training(cfg: Config) -> TrainerState:
    """The whole ``s2s-media train``: works alone or under ``torchrun`` (DDP)."""
    dist = init_distributed(cfg.train.device)
    torch.manual_seed(cfg.train.seed)
    random.seed(cfg.train.seed)
    np.random.seed(cfg.train.seed)
    train_records = read_train_manifest(cfg)
    dev_records = read_manifest(cfg.data.dev) if cfg.data.dev else []
    tokenizer = get_tokenizer(cfg, train_records, dist)
    cmvn = get_cmvn(cfg, train_records, dist)
    model = build_asr_model(cfg, tokenizer, cmvn)
    if dist.is_main:
        log.info("model: %s encoder + %s decoder, %.2f M parameters, vocab %d", cfg.model.encoder,
                 cfg.model.decoder, param_count(model) / 1e6, tokenizer.vocab_size)
    trainer = Trainer(cfg, model, tokenizer, cmvn, train_records, dev_records, dist)
    return trainer.fit()
