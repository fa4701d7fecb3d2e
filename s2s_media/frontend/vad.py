"""Energy-based voice activity detection and segmentation of long audio.

Long recordings are cut into pieces the model decodes comfortably (``max_segment_s``, 20 s by
default; the recipes train on utterances up to 15 s). The cut points fall in pauses:

1. ``frame_energy_db``: log energy of 25 ms frames every 10 ms (the log-mel frame grid).
2. ``speech_mask``: thresholds adapt to the recording: the noise floor is a low percentile of
   the frame energies and the speech level a high one. A frame enters speech above the ``on``
   threshold and leaves it only below the lower ``off`` threshold (hysteresis), so a word
   whose energy dips for a moment is not cut in two. Pauses shorter than ``min_silence_s`` are
   bridged, and bursts shorter than ``min_speech_s`` (clicks) are dropped.
3. ``segment``: speech regions are padded by ``pad_s``, neighbours closer than ``merge_gap_s``
   are merged while the merged span stays within ``max_segment_s``, and a region still longer
   than that is split at its quietest moment in the second half of each window: a pause if
   there is one, a hard cut at the quietest frame only as the last resort.

Silence longer than ``merge_gap_s`` between segments is not decoded. The module is pure NumPy
and knows nothing about models.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from s2s_media.frontend.audio import HOP_LENGTH, N_FFT, SAMPLE_RATE

FRAME_S = HOP_LENGTH / SAMPLE_RATE  # 10 ms


@dataclass(frozen=True)
class VadConfig:
    max_segment_s: float = 20.0     # longest piece handed to the model
    min_silence_s: float = 0.25     # pauses shorter than this stay inside speech
    min_speech_s: float = 0.08      # speech bursts shorter than this are dropped (clicks)
    pad_s: float = 0.2              # silence kept on each side of a speech region
    merge_gap_s: float = 1.0        # regions closer than this are decoded together (within max_segment_s)
    on_fraction: float = 0.3        # speech starts at floor + on_fraction * (speech level - floor)
    off_fraction: float = 0.15      # ... and ends below floor + off_fraction * (speech level - floor)
    silence_db: float = -70.0       # a recording whose speech level is below this (dBFS) is silent
    floor_db: float = -80.0         # the noise floor is never taken lower than this (digital silence)
    min_range_db: float = 10.0      # less spread than this between floor and speech: no pauses to find

    def __post_init__(self):
        if self.max_segment_s < 1.0:
            raise ValueError(f"max_segment_s must be at least 1 s, got {self.max_segment_s}")
        if not 0.0 <= self.off_fraction <= self.on_fraction <= 1.0:
            raise ValueError("need 0 <= off_fraction <= on_fraction <= 1")


@dataclass(frozen=True)
class Segment:
    """A piece of a recording, in samples: ``wav[start:end]``."""

    start: int
    end: int

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


def frame_energy_db(wav: np.ndarray) -> np.ndarray:
    """Log energy (dBFS of the RMS) of 25 ms frames every 10 ms. ``wav: (samples,)`` -> ``(frames,)``.

    ``frames = samples // HOP_LENGTH + 1``, the log-mel frame count; frame ``i`` is centred on sample
    ``i * HOP_LENGTH``.
    """
    wav = np.asarray(wav, dtype=np.float32)
    n = wav.size // HOP_LENGTH + 1
    half = N_FFT // 2
    padded = np.pad(wav, (half, half + HOP_LENGTH))
    sq = np.concatenate([[0.0], np.cumsum(padded.astype(np.float64) ** 2)])
    starts = np.arange(n) * HOP_LENGTH
    power = (sq[starts + N_FFT] - sq[starts]) / N_FFT
    return (10.0 * np.log10(np.maximum(power, 1e-12))).astype(np.float32)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` of the True runs of a 1-D bool array (end exclusive)."""
    if mask.size == 0:
        return []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def thresholds(energy_db: np.ndarray, cfg: VadConfig) -> tuple[float, float] | None:
    """``(on_db, off_db)`` for this recording, or None when it is silent throughout."""
    if energy_db.size == 0:
        return None
    floor = max(float(np.percentile(energy_db, 10)), cfg.floor_db)
    level = float(np.percentile(energy_db, 95))
    if level < cfg.silence_db:
        return None
    if level - floor < cfg.min_range_db:  # no quieter stretches: everything counts as speech
        return -np.inf, -np.inf
    span = level - floor
    return floor + cfg.on_fraction * span, floor + cfg.off_fraction * span


def speech_mask(energy_db: np.ndarray, cfg: VadConfig = VadConfig()) -> np.ndarray:
    """Per-frame speech decision with hysteresis. ``energy_db: (frames,)`` -> ``(frames,)`` bool."""
    th = thresholds(energy_db, cfg)
    if th is None:
        return np.zeros(energy_db.shape, dtype=bool)
    on, off = th
    above_on, above_off = energy_db > on, energy_db > off
    mask = np.zeros(energy_db.shape, dtype=bool)
    # a speech run is a stretch above ``off`` that reaches ``on`` somewhere
    for s, e in _runs(above_off):
        if above_on[s:e].any():
            mask[s:e] = True
    min_sil = int(round(cfg.min_silence_s / FRAME_S))
    for s, e in _runs(~mask):
        if s > 0 and e < mask.size and e - s < min_sil:
            mask[s:e] = True
    min_speech = int(round(cfg.min_speech_s / FRAME_S))
    for s, e in _runs(mask):
        if e - s < min_speech:
            mask[s:e] = False
    return mask


def _split_long(start: int, end: int, energy_db: np.ndarray, max_frames: int) -> list[tuple[int, int]]:
    """Cut the frame range ``[start, end)`` into pieces of at most ``max_frames``, each cut at the
    quietest frame (smoothed over 50 ms) of the second half of its window."""
    smooth = np.convolve(energy_db, np.ones(5) / 5, mode="same") if energy_db.size >= 5 else energy_db
    out = []
    while end - start > max_frames:
        lo, hi = start + max_frames // 2, start + max_frames
        cut = lo + int(np.argmin(smooth[lo:hi]))
        out.append((start, cut))
        start = cut
    out.append((start, end))
    return out


def segment(wav: np.ndarray, cfg: VadConfig = VadConfig()) -> list[Segment]:
    """Speech segments of ``wav: (samples,)`` at 16 kHz, in order, each at most ``cfg.max_segment_s``.

    Segments never overlap. An empty list means no speech was found (silence throughout).
    """
    energy = frame_energy_db(wav)
    mask = speech_mask(energy, cfg)
    pad = int(round(cfg.pad_s / FRAME_S))
    gap = int(round(cfg.merge_gap_s / FRAME_S))
    max_frames = int(cfg.max_segment_s / FRAME_S)
    n = energy.size
    # speech runs longer than the limit are split first, so merging below only has to respect it
    runs: list[tuple[int, int]] = []
    for s, e in _runs(mask):
        runs.extend(_split_long(s, e, energy, max_frames - 2 * pad))
    merged: list[list[int]] = []
    for s, e in runs:
        s, e = max(0, s - pad), min(n, e + pad)
        if merged and s - merged[-1][1] <= gap and e - merged[-1][0] <= max_frames:
            merged[-1][1] = e
        elif merged and s < merged[-1][1]:  # padding overlaps a neighbour it cannot merge with
            mid = (merged[-1][1] + s) // 2
            merged[-1][1], s = mid, mid
            merged.append([s, e])
        else:
            merged.append([s, e])
    total = len(wav)
    return [Segment(min(s * HOP_LENGTH, total), min(e * HOP_LENGTH, total))
            for s, e in merged if min(e * HOP_LENGTH, total) > min(s * HOP_LENGTH, total)]
