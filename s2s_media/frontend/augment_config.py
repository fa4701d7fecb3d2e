"""The configs of :mod:`s2s_media.frontend.augment` (the ``dataset_conf.augment`` block), without its torch code:
the config is read wherever a model's config is, the runtime too."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from s2s_media.errors import ConfigError

NOISE_KINDS = ("white", "pink", "brown", "babble", "hum")


def _range(value: Any, name: str, lo: float = -math.inf, hi: float = math.inf) -> list[float]:
    """Validate a ``[min, max]`` pair (a list or tuple from YAML) and return it as floats."""
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected [min, max], got {value!r}") from None
    if not (lo <= a <= b <= hi):
        raise ConfigError(f"{name}: need {lo} <= min <= max <= {hi}, got [{a}, {b}]")
    return [a, b]


def _prob(value: float, name: str) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{name}: must be a probability in [0, 1], got {value}")
    return float(value)


@dataclass
class SpeedConfig:
    """Kaldi-style speed perturbation: factor ``f`` gives ``len / f`` samples and pitch times ``f``."""

    enabled: bool = True
    factors: list[float] = field(default_factory=lambda: [0.9, 1.0, 1.1])  # drawn uniformly

    def __post_init__(self) -> None:
        self.factors = [float(f) for f in self.factors]
        if not self.factors or any(not 0.5 <= f <= 2.0 for f in self.factors):
            raise ConfigError(f"augment.speed.factors: need a non-empty list within [0.5, 2.0], got {self.factors}")


@dataclass
class NoiseConfig:
    """Additive noise at an SNR drawn uniformly in dB."""

    enabled: bool = True
    prob: float = 0.5                  # chance that an utterance gets noise
    snr_db: list[float] = field(default_factory=lambda: [5.0, 30.0])  # [min, max], uniform in dB
    noise_dir: str | None = None       # folder of real noise files, or a JSONL manifest ("audio", optional "duration")
    real_prob: float = 1.0             # with noise_dir: chance of a real file rather than a generated kind
    kinds: list[str] = field(default_factory=lambda: list(NOISE_KINDS))  # generated noise kinds to draw from

    def __post_init__(self) -> None:
        self.prob = _prob(self.prob, "augment.noise.prob")
        self.real_prob = _prob(self.real_prob, "augment.noise.real_prob")
        self.snr_db = _range(self.snr_db, "augment.noise.snr_db", -20.0, 100.0)
        self.kinds = list(self.kinds)
        bad = [k for k in self.kinds if k not in NOISE_KINDS]
        if bad or not self.kinds:
            raise ConfigError(f"augment.noise.kinds: {bad or 'empty'}; choose from {', '.join(NOISE_KINDS)}")


@dataclass
class ReverbConfig:
    """Simulated shoebox-room reverberation."""

    enabled: bool = True
    prob: float = 0.3                  # chance that an utterance gets reverb
    rt60: list[float] = field(default_factory=lambda: [0.15, 0.8])  # [min, max] seconds, uniform
    room_length: list[float] = field(default_factory=lambda: [3.0, 10.0])  # [min, max] m, each floor side
    room_height: list[float] = field(default_factory=lambda: [2.4, 4.0])   # [min, max] m
    distance: list[float] = field(default_factory=lambda: [0.3, 3.0])      # [min, max] m, talker to microphone

    def __post_init__(self) -> None:
        self.prob = _prob(self.prob, "augment.reverb.prob")
        self.rt60 = _range(self.rt60, "augment.reverb.rt60", 0.05, 3.0)
        self.room_length = _range(self.room_length, "augment.reverb.room_length", 1.5, 50.0)
        self.room_height = _range(self.room_height, "augment.reverb.room_height", 1.5, 20.0)
        self.distance = _range(self.distance, "augment.reverb.distance", 0.1, 50.0)


@dataclass
class SpecAugmentConfig:
    """SpecAugment (Park et al., 2019). Defaults: the LibriSpeech LD policy with a relative time width."""

    enabled: bool = True
    freq_masks: int = 2                # number of frequency masks
    freq_width: int = 27               # F: max frequency-mask width in mel bins
    time_masks: int = 2                # number of time masks (the minimum, with time_masks_per_frame)
    time_width_ratio: float = 0.05     # max time-mask width as a fraction of the utterance length ...
    time_width_max: int = 100          # ... capped at this many frames (T of the LD policy)
    time_masks_per_frame: float = 0.0  # adaptive count: > 0 uses max(time_masks, floor(rate * frames)) masks
    time_masks_max: int = 20           # cap on the adaptive count
    time_warp: int = 0                 # W: max warp in frames; 0 = off (the paper's least useful part)

    def __post_init__(self) -> None:
        for name in ("freq_masks", "freq_width", "time_masks", "time_width_max", "time_masks_max", "time_warp"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"augment.spec_augment.{name}: must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.time_width_ratio <= 1.0:
            raise ConfigError(f"augment.spec_augment.time_width_ratio: must be in [0, 1], got {self.time_width_ratio}")
        if not 0.0 <= self.time_masks_per_frame <= 1.0:
            raise ConfigError("augment.spec_augment.time_masks_per_frame: must be in [0, 1], "
                              f"got {self.time_masks_per_frame}")


@dataclass
class AugmentConfig:
    """``dataset_conf.augment``: one block per augmentation; nested mappings are converted."""

    speed: SpeedConfig = field(default_factory=SpeedConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    reverb: ReverbConfig = field(default_factory=ReverbConfig)
    spec_augment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)

    @classmethod
    def disabled(cls) -> "AugmentConfig":
        """Everything off (evaluation, or a baseline run)."""
        return cls(speed=SpeedConfig(enabled=False), noise=NoiseConfig(enabled=False),
                   reverb=ReverbConfig(enabled=False), spec_augment=SpecAugmentConfig(enabled=False))
