"""The energy detector: no model, no dependency beyond NumPy (the fallback when Silero is not installed).

1. ``frame_energy_db``: log energy of 25 ms frames every 10 ms (the log-mel frame grid).
2. Thresholds adapt to the recording: the noise floor is a low percentile of the frame energies
   and the speech level a high one; speech starts ``on_fraction`` of the way from floor to level
   and ends below ``off_fraction`` of it. A recording whose speech level is under ``silence_db`` is
   silent; one with less than ``min_range_db`` between floor and level has no pauses to find.

It fails where a room is noisy: babble and music are as loud as speech (docs/benchmarks.md,
"Voice activity detection").
"""
from __future__ import annotations

import numpy as np

from s2s_media.frontend.audio import HOP_LENGTH, N_FFT
from s2s_media.frontend.vad.base import Scorer, Vad, VadConfig, num_frames

_HALF = N_FFT // 2


def _energy_db(padded: np.ndarray, n: int) -> np.ndarray:
    """dBFS of the RMS of ``n`` windows of N_FFT samples every HOP_LENGTH, from ``padded[0]``."""
    sq = np.concatenate([[0.0], np.cumsum(padded.astype(np.float64) ** 2)])
    starts = np.arange(n) * HOP_LENGTH
    power = (sq[starts + N_FFT] - sq[starts]) / N_FFT
    return (10.0 * np.log10(np.maximum(power, 1e-12))).astype(np.float32)


def frame_energy_db(wav: np.ndarray) -> np.ndarray:
    """Log energy (dBFS of the RMS) of 25 ms frames every 10 ms. ``wav: (samples,)`` -> ``(frames,)``.

    ``frames = samples // HOP_LENGTH + 1``, the log-mel frame count; frame ``i`` is centred on sample
    ``i * HOP_LENGTH``.
    """
    wav = np.asarray(wav, dtype=np.float32)
    return _energy_db(np.pad(wav, (_HALF, _HALF + HOP_LENGTH)), num_frames(wav.size))


class EnergyScorer(Scorer):
    """:func:`frame_energy_db` of a stream: frame ``i`` is scored once sample ``i*HOP + N_FFT/2`` has arrived."""

    def __init__(self):
        self._buf = np.zeros(_HALF, np.float32)   # from the first sample of the next frame's window
        self._next = 0                            # the next frame to score
        self._samples = 0

    def _emit(self, n: int) -> np.ndarray:
        out = _energy_db(self._buf, n)
        self._buf = self._buf[n * HOP_LENGTH:]
        self._next += n
        return out

    def accept(self, samples: np.ndarray) -> np.ndarray:
        self._buf = np.concatenate([self._buf, np.asarray(samples, np.float32)])
        self._samples += len(samples)
        ready = max(0, (self._samples - _HALF) // HOP_LENGTH + 1 - self._next)
        return self._emit(ready)

    def finish(self) -> np.ndarray:
        n = num_frames(self._samples) - self._next
        self._buf = np.concatenate([self._buf, np.zeros(N_FFT + n * HOP_LENGTH, np.float32)])
        return self._emit(max(n, 0))


class EnergyVad(Vad):
    """Speech where the frame energy stands out from the recording's noise floor."""

    name = "energy"

    def scores(self, wav: np.ndarray) -> np.ndarray:
        return frame_energy_db(wav)

    def thresholds(self, scores: np.ndarray) -> tuple[float, float] | None:
        cfg = self.cfg
        if scores.size == 0:
            return None
        floor = max(float(np.percentile(scores, 10)), cfg.floor_db)
        level = float(np.percentile(scores, 95))
        if level < cfg.silence_db:
            return None
        if level - floor < cfg.min_range_db:  # no quieter stretches: everything counts as speech
            return -np.inf, -np.inf
        span = level - floor
        return floor + cfg.on_fraction * span, floor + cfg.off_fraction * span

    def scorer(self) -> Scorer:
        return EnergyScorer()


def speech_mask(energy_db: np.ndarray, cfg: VadConfig = VadConfig()) -> np.ndarray:
    """Per-frame speech decision of the energy detector. ``energy_db: (frames,)`` -> ``(frames,)`` bool."""
    return EnergyVad(cfg).speech_mask(energy_db)
