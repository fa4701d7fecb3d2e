"""Many speakers from one voice: per-utterance pitch and formant (vocal-tract length) changes.

:func:`change_voice` uses Praat's "Change gender" (PSOLA; praat-parselmouth): the formants move by
``formant`` (> 1: a shorter vocal tract, e.g. 1.15 turns a male voice towards a female one) and the
median F0 by ``pitch`` while duration stays the same (about 70x real time). Voices that can do this
inside their vocoder (hibari) do it there instead; see ``tts_voices``.

The corpus plan draws a vocal-tract factor for a share of the utterances from a fixed set of
values; dev and test draw from values that train never uses (:data:`VTL_FACTORS`), so their
perturbed speakers are unseen. A perturbed speaker is written ``engine:voice+vtl0.89``.
"""
from __future__ import annotations

import warnings

import numpy as np

from s2s_media.errors import UserError

# Vocal-tract (formant) factors by split. Held-out values sit at least 0.02 from any train value.
VTL_FACTORS: dict[str, tuple[float, ...]] = {
    "train": (0.84, 0.85, 0.86, 0.93, 0.94, 0.95, 1.05, 1.06, 1.07, 1.14, 1.15, 1.16, 1.17),
    "dev": (0.88, 0.90, 1.10, 1.12),
    "test": (0.89, 0.91, 1.09, 1.11),
}
PITCH_FLOOR, PITCH_CEILING = 60.0, 600.0   # Hz, the F0 search range


def require_parselmouth():
    """praat-parselmouth, or a one-line UserError naming the package."""
    try:
        import parselmouth
    except ImportError:
        raise UserError("synthetic: pitch and formant changes need praat-parselmouth; install it with "
                        "`pip install praat-parselmouth` (or `bash scripts/setup.sh`)") from None
    return parselmouth


def median_f0(wav: np.ndarray, sr: int) -> float:
    """Median F0 in Hz of the voiced frames of ``wav: (samples,)`` (0.0 if none is voiced)."""
    pm = require_parselmouth()
    f0 = pm.Sound(wav.astype(np.float64), sr).to_pitch(pitch_floor=PITCH_FLOOR,
                                                      pitch_ceiling=PITCH_CEILING).selected_array["frequency"]
    voiced = f0[f0 > 0]
    return float(np.median(voiced)) if voiced.size else 0.0


def change_voice(wav: np.ndarray, sr: int, pitch: float = 1.0, formant: float = 1.0, seed: int = 0) -> np.ndarray:
    """Scale the median F0 by ``pitch`` and the formants by ``formant``; same length and dtype.

    ``wav: (samples,)`` float32 -> ``(samples,)`` float32. Unvoiced audio only gets the formant change.
    Praat's PSOLA draws random numbers; ``seed`` makes the result reproducible.
    """
    if pitch == 1.0 and formant == 1.0:
        return wav
    pm = require_parselmouth()
    from parselmouth.praat import call
    pm.praat.run(f"random_initializeWithSeedUnsafelyButPredictably ({int(seed) % 2**31})")
    sound = pm.Sound(wav.astype(np.float64), sr)
    new_median = 0.0
    if pitch != 1.0:
        f0 = median_f0(wav, sr)
        new_median = f0 * pitch if f0 > 0 else 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pm.PraatWarning)          # "no voiced segments" in a whisper
        out = call(sound, "Change gender", PITCH_FLOOR, PITCH_CEILING, formant, new_median, 1.0, 1.0)
    y = out.values[0].astype(np.float32)
    if len(y) != len(wav):
        y = np.pad(y, (0, max(0, len(wav) - len(y))))[: len(wav)]
    return y
