"""What every voice activity detector shares: its options, the 10 ms frame grid, and the interface.

A :class:`Vad` turns audio into one speech *score* per 10 ms frame (the log-mel grid: frame ``i``
is centred on sample ``i * HOP_LENGTH``; ``samples // HOP_LENGTH + 1`` frames), higher meaning
more like speech, and says which scores mean speech (:meth:`Vad.thresholds`). The decision is
the same for every detector: a speech run is a stretch above the ``off`` threshold that reaches
the ``on`` threshold somewhere (hysteresis), pauses shorter than ``min_silence_s`` are bridged and
bursts shorter than ``min_speech_s`` are dropped (:func:`speech_runs`).

For a stream, :meth:`Vad.scorer` gives a :class:`Scorer` that turns audio pieces into the same
scores incrementally (see :mod:`s2s_media.frontend.vad.stream`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from s2s_media.frontend.audio import HOP_LENGTH, SAMPLE_RATE

FRAME_S = HOP_LENGTH / SAMPLE_RATE  # 10 ms
VAD_METHODS = ("auto", "silero", "energy")   # auto: silero when its package is installed, else energy


@dataclass(frozen=True)
class VadConfig:
    method: str = "auto"            # auto | silero | energy (see VAD_METHODS)
    max_segment_s: float = 20.0     # longest piece handed to the model
    min_silence_s: float = 0.25     # pauses shorter than this stay inside speech
    min_speech_s: float = 0.08      # speech bursts shorter than this are dropped (clicks)
    pad_s: float = 0.2              # silence kept on each side of a speech region
    merge_gap_s: float = 1.0        # regions closer than this are decoded together (within max_segment_s)
    # silero: speech probability thresholds
    on_probability: float = 0.5     # speech starts above this probability ...
    off_probability: float = 0.35   # ... and ends below this one
    # energy: thresholds adapt to the recording's noise floor and speech level
    on_fraction: float = 0.3        # speech starts at floor + on_fraction * (speech level - floor)
    off_fraction: float = 0.15      # ... and ends below floor + off_fraction * (speech level - floor)
    silence_db: float = -70.0       # a recording whose speech level is below this (dBFS) is silent
    floor_db: float = -80.0         # the noise floor is never taken lower than this (digital silence)
    min_range_db: float = 10.0      # less spread than this between floor and speech: no pauses to find

    def __post_init__(self):
        if self.method not in VAD_METHODS:
            raise ValueError(f"vad method {self.method!r}: unknown; choose from {', '.join(VAD_METHODS)}")
        if self.max_segment_s < 1.0:
            raise ValueError(f"max_segment_s must be at least 1 s, got {self.max_segment_s}")
        if not 0.0 <= self.off_fraction <= self.on_fraction <= 1.0:
            raise ValueError("need 0 <= off_fraction <= on_fraction <= 1")
        if not 0.0 < self.off_probability <= self.on_probability < 1.0:
            raise ValueError("need 0 < off_probability <= on_probability < 1")


@dataclass(frozen=True)
class Segment:
    """A piece of a recording, in samples: ``wav[start:end]``."""

    start: int
    end: int

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


def num_frames(samples: int) -> int:
    """Frames of the 10 ms grid for ``samples`` samples (the log-mel frame count)."""
    return samples // HOP_LENGTH + 1


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` of the True runs of a 1-D bool array (end exclusive)."""
    if mask.size == 0:
        return []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def speech_runs(scores: np.ndarray, on: float, off: float, cfg: VadConfig) -> np.ndarray:
    """Per-frame speech decision. ``scores: (frames,)`` -> ``(frames,)`` bool: hysteresis between
    ``on`` and ``off``, pauses under ``cfg.min_silence_s`` bridged, bursts under ``cfg.min_speech_s`` dropped."""
    above_on, above_off = scores > on, scores > off
    mask = np.zeros(scores.shape, dtype=bool)
    for s, e in runs(above_off):          # a speech run is a stretch above ``off`` that reaches ``on``
        if above_on[s:e].any():
            mask[s:e] = True
    min_sil = int(round(cfg.min_silence_s / FRAME_S))
    for s, e in runs(~mask):
        if s > 0 and e < mask.size and e - s < min_sil:
            mask[s:e] = True
    min_speech = int(round(cfg.min_speech_s / FRAME_S))
    for s, e in runs(mask):
        if e - s < min_speech:
            mask[s:e] = False
    return mask


class Scorer(ABC):
    """Scores of one stream, computed as its audio arrives (equal to :meth:`Vad.scores` of all of it)."""

    @abstractmethod
    def accept(self, samples: np.ndarray) -> np.ndarray:
        """``samples: (n,)`` float32 at 16 kHz -> the scores of the frames they complete ``(k,)``."""

    @abstractmethod
    def finish(self) -> np.ndarray:
        """The end of the input: the scores of the frames still open."""


class Vad(ABC):
    """A voice activity detector over 16 kHz mono audio (see the module docstring)."""

    name: ClassVar[str]

    def __init__(self, cfg: VadConfig = VadConfig()):
        self.cfg = cfg

    @abstractmethod
    def scores(self, wav: np.ndarray) -> np.ndarray:
        """``wav: (samples,)`` -> ``(num_frames(samples),)`` float32, higher is more like speech."""

    @abstractmethod
    def thresholds(self, scores: np.ndarray) -> tuple[float, float] | None:
        """``(on, off)`` for a recording with these scores, or None when it is silent throughout."""

    @abstractmethod
    def scorer(self) -> Scorer:
        """A new incremental scorer for one stream."""

    def speech_mask(self, scores: np.ndarray) -> np.ndarray:
        """``scores: (frames,)`` -> ``(frames,)`` bool speech decision (see :func:`speech_runs`)."""
        th = self.thresholds(scores)
        if th is None:
            return np.zeros(scores.shape, dtype=bool)
        return speech_runs(scores, th[0], th[1], self.cfg)
