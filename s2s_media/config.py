"""Typed configs, filled from YAML.

A recipe's YAML has one block per dataclass below; ``encoder``/``decoder`` name a component
from the model registries and ``encoder_conf``/``decoder_conf`` are checked against that
component's own config dataclass. Unknown keys and wrong types raise :class:`ConfigError`
with the dotted path of the field, e.g. ``model.encoder_conf.n_layers: expected int, got 'x'``.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from s2s_media.errors import ConfigError, UserError
from s2s_media.frontend.augment_config import AugmentConfig
from s2s_media.frontend.vision_config import ImageConfig
from s2s_media.methods import DECODING_METHODS
from s2s_media.text.language import get_language
from s2s_media.typed import convert, from_dict, to_dict  # noqa: F401 - part of this module's API


# --------------------------------------------------------------------------- the blocks
@dataclass
class ModelConfig:
    encoder: str = "conformer"          # name in models.ENCODERS
    encoder_conf: dict = field(default_factory=dict)
    decoder: str = "transformer"        # name in models.DECODERS
    decoder_conf: dict = field(default_factory=dict)
    ctc_weight: float = 0.3             # λ in λ·CTC + (1-λ)·attention CE
    lsm_weight: float = 0.1             # label smoothing of the attention CE
    n_mels: int = 80
    modalities: list[str] = field(default_factory=lambda: ["audio"])   # "audio" (ASR), "image" (captioning)
                                        # or both: encoders feeding the one decoder; the CTC head is audio-only
    image_encoder: str = "resnet"       # name in models.IMAGE_ENCODERS
    image_encoder_conf: dict = field(default_factory=dict)
    attention_penalty: float = 0.0      # λ of the doubly stochastic attention penalty on image batches
                                        # (Show, Attend and Tell), λ·Σ_pixels (1 - Σ_t α_t,i)², per target token


@dataclass
class TokenizerConfig:
    kind: Literal["char", "sentencepiece", "word"] = "sentencepiece"
    vocab_size: int = 256               # sentencepiece only
    min_freq: int = 1                   # word only: rarer words become <unk>
    model_type: Literal["bpe", "unigram"] = "bpe"
    path: str | None = None             # a saved tokenizer (.pt dict); trained from data when absent
    language: str = "en"                # language tag (en, de, ru, zh-CN, ...): picks the text normaliser, the
                                        # SentencePiece character_coverage and the headline metric (CER without
                                        # spaces); checkpoints without it are English


@dataclass
class DataSource:
    """Where training utterances come from: exactly one field set (docs/data-formats.md)."""
    jsonl: str = ""                     # our JSONL manifest (the same as giving data.train the path itself)
    shards: str = ""                    # WebDataset tar shards: a brace pattern (train-{000000..000007}.tar),
                                        # a glob or a folder of .tar (written by 's2s-media shard' or any tool)
    shar: str = ""                      # a Lhotse Shar directory (cuts.NNNNNN.jsonl.gz + recording.NNNNNN.tar)

    def kind(self) -> str:
        """The one source set: ``jsonl``, ``shards`` or ``shar``."""
        given = [f.name for f in dataclasses.fields(self) if getattr(self, f.name)]
        if len(given) != 1:
            raise ConfigError(f"data.train: set exactly one of jsonl, shards, shar (got {given or 'none'})")
        return given[0]


@dataclass
class DataConfig:
    train: str | DataSource = ""        # ASR training data: a JSONL manifest path, or {shards: ...}/{shar: ...}
    shuffle_buffer: int = 1000          # shard streams: utterances held by each stream's shuffle buffer
    dev: str = ""
    caption_train: str = ""             # JSONL caption manifest (id, image, captions, split)
    caption_dev: str = ""
    images_per_batch: int = 32          # caption batches hold this many images
    captions_per_image: int = 1         # reference captions trained per image and step (the image is encoded once)
    image: ImageConfig = field(default_factory=ImageConfig)
    max_batch_seconds: float = 200.0    # padded seconds of audio per batch
    max_batch_size: int = 128
    min_duration: float = 0.3
    max_duration: float = 20.0
    num_buckets: int = 20
    num_workers: int = 2
    feature_cache: str = ""             # folder of stored log-mels (data/feature_cache.py); "" = compute each epoch
    cmvn_utterances: int = 2000         # utterances sampled to estimate global mean/variance
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 1e-2
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    scheduler: Literal["noam", "cosine", "constant"] = "noam"
    warmup_steps: int = 1000
    min_lr: float = 1e-5                # floor for cosine
    grad_clip: float = 5.0
    accum_grad: int = 1


@dataclass
class ScheduledSamplingConfig:
    max_prob: float = 0.0               # chance of feeding the model's own sampled token instead of the reference
    start_step: int = 0                 # the probability is 0 before this optimizer step
    ramp_steps: int = 1000              # ... and reaches max_prob this many steps later
    schedule: Literal["linear", "inverse_sigmoid"] = "linear"


@dataclass
class SCSTConfig:
    enabled: bool = False               # self-critical sequence training on caption batches (a second stage,
                                        # usually with train.init_from = the cross-entropy model)
    samples: int = 5                    # captions sampled per image; the greedy caption is the baseline
    temperature: float = 1.0            # sampling temperature


@dataclass
class TrainConfig:
    exp_dir: str = "exp"
    epochs: int = 50
    max_minutes: float = 0.0            # stop (and save) after this wall time; 0 = no limit
    max_steps: int = 0                  # stop (and save) after this many optimizer steps; 0 = no limit
    max_audio_hours: float = 0.0        # stop (and save) after this much audio trained on, all ranks; 0 = no limit
    seed: int = 0
    log_interval: int = 20              # steps
    valid_interval: int = 0             # steps between validations; 0 = once per epoch
    save_interval: int = 500            # steps between resume checkpoints (last.pt)
    keep_best: int = 5                  # best checkpoints kept by dev WER
    keep_last: int = 10                 # epoch checkpoints kept (for averaging)
    valid_utterances: int = 300         # dev utterances used for periodic WER
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 0                    # torch intra-op threads on CPU; 0 = all cores
    init_from: str = ""                 # checkpoint whose model weights start a new run (e.g. SCST after XE)
    best_metric: str = "auto"           # dev metric the best checkpoints are kept by: auto (ASR dev_wer, or
                                        # dev_cer for a language written without spaces,
                                        # captioning dev_cider_d, both dev_loss), or dev_wer, dev_cer, dev_loss,
                                        # dev_bleu4, dev_cider_d
    scheduled_sampling: ScheduledSamplingConfig = field(default_factory=ScheduledSamplingConfig)
    scst: SCSTConfig = field(default_factory=SCSTConfig)


@dataclass
class DecodeConfig:
    method: Literal[DECODING_METHODS] = "rescoring"
    beam: int = 10
    ctc_weight: float = 0.5             # CTC share of the score when rescoring
    rescore_nbest: int = 4              # rescoring: the decoder re-ranks this many of the CTC beam's best (0 = all)
    lm_weight: float = 0.7              # weight of the checkpoint's language model, if it has one (0 = off)
    lm_bonus: float = 1.0               # reward per token when the language model is on
    token_floor: float = 3e-3           # CTC prefix search: tokens below this posterior are not tried
    blank_skip: float = 0.99            # CTC prefix search: frames whose blank posterior exceeds this only extend
                                        # prefixes with blank (1.0: never skip)
    ctc_search: Literal["python", "native"] = "python"   # CTC prefix search implementation: python
                                        # (s2s_media.decoding.ctc) or native (flashlight-text, s2s_media.decoding.native);
                                        # same results, native is faster without an LM (docs/benchmarks.md)
    length_penalty: float = 1.0
    batch_seconds: float = 300.0
    chunk_size: int = 0                 # encoder chunk (frames after subsampling); 0 = full context
    left_chunks: int = -1
    caption_max_len: int = 30           # most tokens in a caption (image decoding)

    def override(self, **values: Any) -> DecodeConfig:
        """A copy with the given fields replaced; ``None`` values (an option not given) leave a field as it is."""
        return dataclasses.replace(self, **{k: v for k, v in values.items() if v is not None})


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)


# --------------------------------------------------------------------------- loading
class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.1 only knows ``1.0e-3``)."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                              re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``key.sub=value`` strings (value parsed as YAML) to a nested dict in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.epochs=10")
        key, value = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            if node.get(p) is None:          # a section left empty in the YAML reads as null
                node[p] = {}
            node = node[p]
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: '{p}' is not a section")
        node[parts[-1]] = _parse_scalar(value)
    return data


def read_yaml(path: str | Path) -> dict:
    """A YAML config file's top-level mapping of sections; ConfigError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.load(path.read_text(), Loader=_Loader) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections (model, data, ...)")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Read a YAML config (and ``--set`` overrides) into a validated :class:`Config`.

    Relative paths inside (manifests, exp_dir) are relative to the current directory: recipes
    run from their own folder.
    """
    data = read_yaml(path) if path is not None else {}
    apply_overrides(data, list(overrides))
    try:
        cfg = from_dict(Config, data)
        validate(cfg)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path is not None else str(e)) from None
    return cfg


def config_from_dict(data: dict, components: bool = True) -> Config:
    """Rebuild a Config stored in a checkpoint (``components``: check the model blocks against the registry of
    torch modules too; an ONNX model's config is checked against its graphs instead)."""
    cfg = from_dict(Config, data)
    validate(cfg, components)
    return cfg


MODALITY_TASKS = {"audio": "asr", "image": "caption"}   # the decoder task token of each modality


def _validate_components(m: ModelConfig) -> None:
    """The encoder, image encoder and decoder blocks against their registries (the torch modules' configs;
    imported here because the registry is the models' layer, which a runtime install lacks)."""
    from s2s_media.models.registry import DECODERS, ENCODERS, IMAGE_ENCODERS, component_config
    audio = component_config(ENCODERS, m.encoder, m.encoder_conf, "model.encoder")
    if "image" in m.modalities:
        img = component_config(IMAGE_ENCODERS, m.image_encoder, m.image_encoder_conf, "model.image_encoder")
        if "audio" in m.modalities and img.d_model != audio.d_model:
            raise ConfigError(f"model.image_encoder_conf.d_model: {img.d_model} differs from the audio encoder's "
                              f"d_model {audio.d_model}; both feed one decoder, so they must match")
    component_config(DECODERS, m.decoder, m.decoder_conf, "model.decoder")
BEST_METRICS = {"auto", "dev_wer", "dev_cer", "dev_loss", "dev_bleu4", "dev_cider_d"}


def tasks_of(cfg: ModelConfig) -> list[str]:
    """The decoder tasks of a model, in ``modalities`` order: ``["asr"]``, ``["caption"]`` or both."""
    return [MODALITY_TASKS[m] for m in cfg.modalities]


def validate(cfg: Config, components: bool = True) -> None:
    """Cross-field checks, and (``components``) the component blocks against their registries."""
    m = cfg.model
    if not m.modalities or len(set(m.modalities)) != len(m.modalities) or set(m.modalities) - set(MODALITY_TASKS):
        raise ConfigError(f"model.modalities: must list 'audio', 'image' or both once each, got {m.modalities}")
    if components:
        _validate_components(m)
    if m.attention_penalty < 0:
        raise ConfigError(f"model.attention_penalty: must be >= 0, got {m.attention_penalty}")
    try:
        get_language(cfg.tokenizer.language, "tokenizer.language")
    except UserError as e:
        raise ConfigError(str(e)) from None
    d = cfg.data
    if d.images_per_batch < 1 or d.captions_per_image < 1:
        raise ConfigError("data.images_per_batch and data.captions_per_image: must be >= 1")
    ss = cfg.train.scheduled_sampling
    if not 0.0 <= ss.max_prob <= 1.0 or ss.ramp_steps < 0 or ss.start_step < 0:
        raise ConfigError("train.scheduled_sampling: max_prob must be within [0, 1], steps >= 0")
    if cfg.train.scst.enabled and (cfg.train.scst.samples < 1 or cfg.train.scst.temperature <= 0):
        raise ConfigError("train.scst: samples must be >= 1 and temperature > 0")
    if cfg.train.scst.enabled and "image" not in m.modalities:
        raise ConfigError("train.scst.enabled: self-critical training needs a captioning model "
                          "(model.modalities with 'image')")
    if cfg.train.best_metric not in BEST_METRICS:
        raise ConfigError(f"train.best_metric: {cfg.train.best_metric!r} is not one of {sorted(BEST_METRICS)}")
    if not 0.0 <= m.ctc_weight <= 1.0:
        raise ConfigError(f"model.ctc_weight: must be within [0, 1], got {m.ctc_weight}")
    dec = cfg.decode
    if dec.lm_weight < 0 or dec.rescore_nbest < 0:
        raise ConfigError(f"decode.lm_weight and decode.rescore_nbest: must be >= 0, got {dec.lm_weight} "
                          f"and {dec.rescore_nbest}")
    if not 0.0 <= dec.token_floor < 1.0:
        raise ConfigError(f"decode.token_floor: must be a probability within [0, 1), got {dec.token_floor}")
    if not 0.0 < dec.blank_skip <= 1.0:
        raise ConfigError(f"decode.blank_skip: must be a probability within (0, 1], got {dec.blank_skip}")
    if not 0.0 <= m.lsm_weight < 1.0:
        raise ConfigError(f"model.lsm_weight: must be within [0, 1), got {m.lsm_weight}")
    if cfg.optim.accum_grad < 1:
        raise ConfigError(f"optim.accum_grad: must be >= 1, got {cfg.optim.accum_grad}")
    if isinstance(d.train, DataSource):
        d.train.kind()
    if d.shuffle_buffer < 1:
        raise ConfigError(f"data.shuffle_buffer: must be >= 1, got {d.shuffle_buffer}")
    if cfg.data.max_batch_seconds <= 0:
        raise ConfigError("data.max_batch_seconds: must be > 0")
