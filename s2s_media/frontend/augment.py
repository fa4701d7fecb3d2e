"""Data augmentation for ASR training: speed, reverb and noise on the waveform; SpecAugment on features.

The aim is robustness: a model trained on clean synthetic (TTS) voices should still cope with real
recordings, which are reverberant, noisy and spoken at other rates. Two callable presets:

- :class:`WaveAugment` ``(wav: (samples,) float32, rng) -> (samples',) float32`` applies, in order,
  speed perturbation (Kaldi style: tempo and pitch change together), a simulated room impulse
  response (image-source method + stochastic tail), then additive noise at a random SNR.
- :class:`SpecAugment` ``(feats: (frames, n_mels), rng) -> (frames, n_mels)`` applies an optional
  time warp, frequency masks and time masks.

Both run inside DataLoader workers, per utterance, on the CPU. All randomness comes from the
``numpy.random.Generator`` passed in, so one seed gives one output whatever the process or the
global RNG state. Seeding the generator per utterance, e.g.
``np.random.default_rng([seed, epoch, index])``, also makes the result independent of the
number of workers.

Every part is switched and tuned by the dataclasses of :mod:`s2s_media.frontend.augment_config`, which form the
``dataset_conf.augment`` block of the YAML config::

    augment:
      speed: {enabled: true, factors: [0.9, 1.0, 1.1]}
      noise: {enabled: true, prob: 0.5, snr_db: [5, 30], noise_dir: null}
      reverb: {enabled: true, prob: 0.3, rt60: [0.15, 0.8]}
      spec_augment: {enabled: true, freq_masks: 2, freq_width: 27, time_masks: 2}
"""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.fft
import torch
import torchaudio

from s2s_media.frontend.audio import SAMPLE_RATE, audio_duration, load_audio
from s2s_media.frontend.augment_config import (NOISE_KINDS, AugmentConfig, NoiseConfig, ReverbConfig,
                                               SpecAugmentConfig, SpeedConfig)
from s2s_media.jsonl import iter_jsonl
from s2s_media.errors import ConfigError

__all__ = [
    "AugmentConfig", "NoiseConfig", "ReverbConfig", "SpecAugmentConfig", "SpeedConfig",
    "NOISE_KINDS", "SPEED_OF_SOUND", "SpecAugment", "WaveAugment",
    "add_noise", "generate_noise", "measure_rt60", "simulate_rir",
]

SPEED_OF_SOUND = 343.0  # m/s
NOISE_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


# --------------------------------------------------------------------------------------------
# Noise
# --------------------------------------------------------------------------------------------

def _smooth_random(rng: np.random.Generator, rows: int, n: int, rate_hz: float, sr: float) -> np.ndarray:
    """Slowly varying Gaussian processes ``(rows, n)`` float32 at sample rate ``sr``: linear
    interpolation between independent points ``1 / rate_hz`` seconds apart."""
    m = int(n * rate_hz / sr) + 2
    points = rng.standard_normal((rows, m), dtype=np.float32)
    x = np.arange(n, dtype=np.float32) * np.float32(rate_hz / sr)
    i0 = x.astype(np.int64)
    frac = x - i0.astype(np.float32)
    return points[:, i0] * (1.0 - frac) + points[:, i0 + 1] * frac


def _shape_spectrum(x: np.ndarray, gain_fn, sr: int) -> np.ndarray:
    """Filter ``x: (n,)`` by the zero-phase magnitude response ``gain_fn(freqs_hz)``."""
    n = x.shape[-1]
    spec = scipy.fft.rfft(x)
    spec *= gain_fn(np.fft.rfftfreq(n, 1.0 / sr)).astype(np.float32)
    return scipy.fft.irfft(spec, n)


_BABBLE_HOP = 16  # samples per step of the slowly varying controls (pitch, syllables, voicing)


def _babble(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """3-7 overlapping pseudo-talkers: a glottal-like buzz with a wandering pitch, syllabic on/off
    gating and noisy unvoiced stretches, band-limited to the speech band."""
    k, hop = int(rng.integers(3, 8)), _BABBLE_HOP
    steps = -(-n // hop)
    ctrl_sr = sr / hop
    # Controls at sr / hop: pitch (Hz), ~4 Hz syllables with pauses, voiced (1) vs unvoiced (0).
    f0 = rng.uniform(85.0, 255.0, (k, 1)).astype(np.float32)
    f0 = f0 * np.exp(0.12 * _smooth_random(rng, k, steps, 3.0, ctrl_sr))
    syllable = np.clip(_smooth_random(rng, k, steps, 4.0, ctrl_sr) + 0.3, 0.0, None)
    voicing = 1.0 / (1.0 + np.exp(-3.0 * _smooth_random(rng, k, steps, 6.0, ctrl_sr)))
    level = rng.uniform(0.5, 1.0, (k, 1)).astype(np.float32) * syllable
    # Sawtooth buzz; the phase (in cycles) advances by f0 / sr per sample, f0 held over each step.
    inc = (f0 / sr).astype(np.float64)
    start = np.cumsum(inc * hop, axis=1) - inc * hop + rng.random((k, 1))
    phase = (start % 1.0).astype(np.float32)[:, :, None] + (inc.astype(np.float32)[:, :, None]
                                                             * np.arange(hop, dtype=np.float32))
    phase -= np.floor(phase)                                              # (k, steps, hop)
    voiced = 2.0 * np.einsum("ks,ksh->sh", level * voicing, phase)
    voiced -= (level * voicing).sum(axis=0)[:, None]                       # sawtooth 2 * phase - 1
    # The talkers' unvoiced parts share one noise carrier scaled to their summed variance.
    unvoiced_std = 0.5 * np.sqrt(((level * (1.0 - voicing)) ** 2).sum(axis=0))
    x = (voiced + unvoiced_std[:, None] * rng.standard_normal((steps, hop), dtype=np.float32)).reshape(-1)[:n]
    # Speech band: 2nd-order high-pass at 100 Hz, 2nd-order low-pass at 3.5 kHz.
    return _shape_spectrum(x, lambda f: (f / 100.0) ** 2 / (1.0 + (f / 100.0) ** 2)
                           / np.sqrt(1.0 + (f / 3500.0) ** 4), sr)


def _hum(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Mains hum/buzz: 50 or 60 Hz and its harmonics up to ~1 kHz, over a faint noise floor."""
    f_mains = float(rng.choice([50.0, 60.0])) * (1.0 + rng.uniform(-0.002, 0.002))
    harmonics = np.arange(1, int(1000 // f_mains) + 1)
    amps = rng.uniform(0.3, 1.0, harmonics.size) * harmonics ** -rng.uniform(0.5, 1.5)
    phases = rng.uniform(0.0, 2 * np.pi, harmonics.size)
    size = 1024                                                      # one period as a wavetable
    grid = np.arange(size + 1) / size
    table = (amps[:, None] * np.sin(2 * np.pi * harmonics[:, None] * grid + phases[:, None])).sum(axis=0)
    pos = np.arange(n) * (f_mains / sr) + rng.random()
    pos -= np.floor(pos)
    pos *= size
    i0 = pos.astype(np.int64)
    frac = pos - i0
    x = table[i0] * (1.0 - frac) + table[i0 + 1] * frac
    x /= np.sqrt(np.mean(x ** 2)) + 1e-12
    return x + 10 ** (-rng.uniform(20.0, 40.0) / 20) * rng.standard_normal(n)


def generate_noise(kind: str, n: int, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Synthetic noise ``(n,)`` float32 with unit RMS.

    ``kind``: ``white``; ``pink`` (power ~ 1/f) and ``brown`` (power ~ 1/f^2), both flat below
    20 Hz and without DC; ``babble`` (overlapping speech-like voices); ``hum`` (mains 50/60 Hz
    harmonics).
    """
    if kind == "white":
        x = rng.standard_normal(n, dtype=np.float32)
    elif kind in ("pink", "brown"):
        exponent = 0.5 if kind == "pink" else 1.0
        x = _shape_spectrum(rng.standard_normal(n, dtype=np.float32),
                            lambda f: np.where(f > 0, np.maximum(f, 20.0) ** -exponent, 0.0), sr)
    elif kind == "babble":
        x = _babble(n, rng, sr)
    elif kind == "hum":
        x = _hum(n, rng, sr)
    else:
        raise ValueError(f"unknown noise kind '{kind}'; choose from {', '.join(NOISE_KINDS)}")
    x = np.asarray(x, dtype=np.float32)
    return x / np.float32(np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-12)


def add_noise(wav: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Mix ``noise: (n,)`` into ``wav: (n,)`` at ``snr_db`` (mean power over the whole utterance).

    Returns a new float32 array; a silent ``wav`` or ``noise`` is returned unchanged (no SNR exists).
    """
    p_signal = float(np.mean(wav.astype(np.float64) ** 2))
    p_noise = float(np.mean(noise.astype(np.float64) ** 2))
    if p_signal == 0.0 or p_noise == 0.0:
        return wav.astype(np.float32, copy=True)
    gain = math.sqrt(p_signal / (p_noise * 10.0 ** (snr_db / 10.0)))
    return (wav + gain * noise).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Room impulse responses
# --------------------------------------------------------------------------------------------

_SINC_HALF = 8  # fractional-delay filter: 2 * _SINC_HALF Hann-windowed sinc taps


def _sample_room(rng: np.random.Generator, room_length: Sequence[float], room_height: Sequence[float],
                 ) -> np.ndarray:
    return np.array([rng.uniform(*room_length), rng.uniform(*room_length), rng.uniform(*room_height)])


def _sample_positions(rng: np.random.Generator, room: np.ndarray, distance: Sequence[float],
                      ) -> tuple[np.ndarray, np.ndarray]:
    """A talker (mouth 1.2-1.9 m high) anywhere in ``room`` and a microphone ``distance`` metres
    away in a random direction, both >= 0.4 m from the walls (less in tiny rooms)."""
    margin = np.minimum(0.4, room / 4)
    lo, hi = margin, room - margin
    source = rng.uniform(lo, hi)
    source[2] = min(max(rng.uniform(1.2, 1.9), lo[2]), hi[2])
    for _ in range(100):
        u = rng.standard_normal(3)
        mic = source + rng.uniform(*distance) * u / np.linalg.norm(u)
        if np.all(mic >= lo) and np.all(mic <= hi):
            return source, mic
    return source, rng.uniform(lo, hi)  # the room is too small for the distance range


def _image_sources(room: np.ndarray, source: np.ndarray, max_dist: float) -> tuple[np.ndarray, np.ndarray]:
    """Image sources of a shoebox room, at least all within ``max_dist`` of the room's origin.

    Returns ``(positions (k, 3), reflection_orders (k,))``; callers filter by distance to the mic.
    Along one axis an image sits at ``2 n L + s`` (``2|n|`` reflections) or ``2 n L - s``
    (``|2n - 1|`` reflections).
    """
    coords, orders = [], []
    for axis in range(3):
        n_max = int(math.ceil(max_dist / (2 * room[axis]))) + 1
        n = np.arange(-n_max, n_max + 1)
        coords.append(np.concatenate([2 * n * room[axis] + source[axis], 2 * n * room[axis] - source[axis]]))
        orders.append(np.concatenate([2 * np.abs(n), np.abs(2 * n - 1)]))
    pos = np.stack(np.meshgrid(*coords, indexing="ij"), axis=-1).reshape(-1, 3)
    order = (orders[0][:, None, None] + orders[1][None, :, None] + orders[2][None, None, :]).reshape(-1)
    return pos, order


def _simulate_rir(rng: np.random.Generator, sr: int, rt60: float, room_dim: Sequence[float] | None,
                  source: Sequence[float] | None, mic: Sequence[float] | None,
                  room_length: Sequence[float], room_height: Sequence[float], distance: Sequence[float],
                  t_mix: float) -> tuple[np.ndarray, int]:
    """:func:`simulate_rir` that also returns the direct-path sample index."""
    if room_dim is None:
        room = _sample_room(rng, room_length, room_height)
    else:
        room = np.asarray(room_dim, dtype=np.float64)
    if source is None or mic is None:
        src_s, mic_s = _sample_positions(rng, room, distance)
        source = src_s if source is None else source
        mic = mic_s if mic is None else mic
    source, mic = np.asarray(source, dtype=np.float64), np.asarray(mic, dtype=np.float64)
    if np.any(source <= 0) or np.any(source >= room) or np.any(mic <= 0) or np.any(mic >= room):
        raise ValueError(f"source {source} and mic {mic} must lie inside the room {room}")
    c = SPEED_OF_SOUND
    volume = float(np.prod(room))
    surface = 2.0 * float(room[0] * room[1] + room[0] * room[2] + room[1] * room[2])
    # Eyring: RT60 = 24 ln10 V / (-c S ln(1 - alpha)); the per-reflection energy factor
    # beta^2 = 1 - alpha makes the image sources decay at the same rate as the stochastic tail.
    beta = math.exp(-12.0 * math.log(10.0) * volume / (c * surface * rt60))
    direct = float(np.linalg.norm(source - mic))
    t_mix = max(t_mix, direct / c + 0.01)
    length = int(math.ceil(max(rt60, t_mix + 0.02) * sr)) + 2 * _SINC_HALF

    # Early part: image sources up to t_mix, each a fractional delay of beta^order / (4 pi r).
    pos, order = _image_sources(room, source, c * t_mix + float(np.linalg.norm(room)))
    dist = np.linalg.norm(pos - mic, axis=1)
    keep = dist < c * t_mix
    dist, order = dist[keep], order[keep]
    amp = beta ** order / (4 * np.pi * dist)
    delay = dist / c * sr
    base = np.floor(delay).astype(np.int64)
    taps = np.arange(-_SINC_HALF + 1, _SINC_HALF + 1)
    offset = taps[None, :] - (delay - base)[:, None]                 # (images, taps), in samples
    window = 0.5 * (1.0 + np.cos(np.pi * offset / (_SINC_HALF + 1)))
    weights = amp[:, None] * np.sinc(offset) * window
    idx = base[:, None] + taps[None, :]
    ok = (idx >= 0) & (idx < length)
    rir = np.bincount(idx[ok], weights=weights[ok], minlength=length)

    # Late part: Gaussian noise with the diffuse-field energy of the images it replaces,
    # c / (4 pi V) per second at t = 0, decaying by 60 dB per RT60.
    start = int(math.ceil(t_mix * sr))
    t = np.arange(start, length) / sr
    envelope = math.sqrt(c / (4 * np.pi * volume * sr)) * np.exp(-3.0 * math.log(10.0) * t / rt60)
    rir[start:] += envelope * rng.standard_normal(length - start)

    rir *= 4 * np.pi * direct                                         # unit gain on the direct path
    return rir.astype(np.float32), int(round(direct / c * sr))


def simulate_rir(rng: np.random.Generator, sr: int = SAMPLE_RATE, rt60: float = 0.5,
                 room_dim: Sequence[float] | None = None, source: Sequence[float] | None = None,
                 mic: Sequence[float] | None = None, room_length: Sequence[float] = (3.0, 10.0),
                 room_height: Sequence[float] = (2.4, 4.0), distance: Sequence[float] = (0.3, 3.0),
                 t_mix: float = 0.05) -> np.ndarray:
    """Room impulse response ``(length,)`` float32 of a shoebox room, ``length ~ rt60 * sr``.

    Early reflections (arrival before ``t_mix`` seconds) come from the image-source method
    (Allen & Berkley 1979) with one frequency-independent wall absorption derived from ``rt60``
    by Eyring's formula; later ones are Gaussian noise with the same diffuse-field energy,
    decaying 60 dB per ``rt60``. Positions in metres; ``room_dim = (x, y, z)``; whatever is
    ``None`` is drawn from ``rng``: a room from ``room_length``/``room_height`` ``[min, max]``, a
    talker anywhere and a microphone ``distance`` ``[min, max]`` metres from it. The response
    keeps the propagation delay: the direct path arrives after ``|source - mic| / 343 * sr``
    samples, with unit gain.
    """
    return _simulate_rir(rng, sr, rt60, room_dim, source, mic, room_length, room_height, distance, t_mix)[0]


def measure_rt60(rir: np.ndarray, sr: int = SAMPLE_RATE, db_range: tuple[float, float] = (-5.0, -25.0)) -> float:
    """RT60 of ``rir: (length,)`` by Schroeder backward integration: a line fitted to the energy
    decay curve between ``db_range`` (T20 by default) and extrapolated to -60 dB."""
    h = np.asarray(rir, dtype=np.float64)
    h = h[int(np.argmax(np.abs(h))):]
    edc = np.cumsum(h[::-1] ** 2)[::-1]
    edc_db = 10.0 * np.log10(edc / edc[0] + 1e-300)
    sel = np.nonzero((edc_db <= db_range[0]) & (edc_db >= db_range[1]))[0]
    if sel.size < 2:
        raise ValueError(f"the energy decay never spans {db_range} dB; the response is too short")
    slope = np.polyfit(sel / sr, edc_db[sel], 1)[0]             # dB per second
    return float(-60.0 / slope)


def _fft_convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Full linear convolution of ``x: (n,)`` and ``h: (m,)`` -> ``(n + m - 1,)`` via one real FFT."""
    size = x.size + h.size - 1
    nfft = scipy.fft.next_fast_len(size, real=True)
    return scipy.fft.irfft(scipy.fft.rfft(x, nfft) * scipy.fft.rfft(h, nfft), nfft)[:size]


# --------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------

class WaveAugment:
    """Waveform augmentation preset: speed -> reverb -> noise, each switched by ``cfg``.

    ``__call__(wav: (samples,) float, rng) -> (samples',) float32`` with ``samples' ~ samples / f``
    for the drawn speed factor ``f`` (reverb and noise keep the length). Reverb is aligned to the
    direct path, so words do not move in time; the direct sound keeps its level. The result is
    rescaled into [-1, 1] if it would exceed it. A new array is always returned.
    """

    def __init__(self, cfg: AugmentConfig, sr: int = SAMPLE_RATE):
        self.cfg = cfg
        self.sr = sr
        # Resampling kernels per speed factor, built once per preset (and per worker copy).
        self._resamplers: dict[float, torchaudio.transforms.Resample] = {}
        if cfg.speed.enabled:
            for f in cfg.speed.factors:
                ratio = Fraction(f).limit_denominator(100)  # 1.1 -> 11/10; odd factors are rounded
                if ratio != 1:
                    # Read the signal as if sampled at f * sr, then resample it back to sr.
                    self._resamplers[f] = torchaudio.transforms.Resample(ratio.numerator, ratio.denominator)
        self._noise_files: list[tuple[str, float | None]] = []
        self._durations: dict[str, float] = {}
        if cfg.noise.enabled and cfg.noise.noise_dir:
            self._noise_files = _list_noise_files(cfg.noise.noise_dir)

    def __call__(self, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 1:
            raise ValueError(f"WaveAugment expects a mono waveform (samples,), got shape {wav.shape}")
        out = wav.copy()
        if out.size == 0:
            return out
        if self.cfg.speed.enabled:
            out = self.speed(out, float(rng.choice(self.cfg.speed.factors)))
        if self.cfg.reverb.enabled and rng.random() < self.cfg.reverb.prob:
            out = self.reverb(out, rng)
        if self.cfg.noise.enabled and rng.random() < self.cfg.noise.prob:
            out = add_noise(out, self.noise(out.size, rng), rng.uniform(*self.cfg.noise.snr_db))
        peak = float(np.max(np.abs(out))) if out.size else 0.0
        if peak > 1.0:
            out /= peak
        return out

    def speed(self, wav: np.ndarray, factor: float) -> np.ndarray:
        """Kaldi/sox ``speed``: ``(n,) -> (~n / factor,)``, tempo and pitch scaled by ``factor``."""
        resampler = self._resamplers.get(factor)
        if resampler is None:
            return wav
        with torch.no_grad():
            return resampler(torch.from_numpy(wav)).numpy()

    def reverb(self, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Convolve ``wav: (n,)`` with a random room's response; ``(n,)`` out, aligned to the direct path."""
        c = self.cfg.reverb
        rir, d = _simulate_rir(rng, self.sr, rng.uniform(*c.rt60), None, None, None,
                               c.room_length, c.room_height, c.distance, t_mix=0.05)
        start = max(d - _SINC_HALF, 0)                        # drop the silent propagation delay
        y = _fft_convolve(wav, rir[start:])
        return y[d - start:d - start + wav.size].astype(np.float32)

    def noise(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``(n,)`` noise: a random stretch of a real noise file, or a generated kind."""
        c = self.cfg.noise
        if self._noise_files and rng.random() < c.real_prob:
            return self._real_noise(n, rng)
        return generate_noise(str(rng.choice(c.kinds)), n, rng, self.sr)

    def _real_noise(self, n: int, rng: np.random.Generator) -> np.ndarray:
        path, duration = self._noise_files[int(rng.integers(len(self._noise_files)))]
        if duration is None:
            duration = self._durations.get(path)
            if duration is None:
                duration = self._durations[path] = audio_duration(path)
        need = n / self.sr
        if duration > need:
            seg = load_audio(path, offset=rng.uniform(0.0, duration - need), duration=need, sr=self.sr)
        else:
            seg = load_audio(path, sr=self.sr)
        return np.resize(seg, n)  # loops a short file; trims rounding surplus


def _list_noise_files(noise_dir: str) -> list[tuple[str, float | None]]:
    """``(path, duration or None)`` for every audio file under a folder or line of a JSONL manifest."""
    root = Path(noise_dir)
    if root.is_dir():
        files = [(str(p), None) for p in sorted(root.rglob("*")) if p.suffix.lower() in NOISE_EXTENSIONS]
    elif root.is_file():
        files = []
        for where, obj in iter_jsonl(root):
            if not isinstance(obj, dict) or not isinstance(obj.get("audio"), str):
                raise ConfigError(f"{where}: a noise manifest line needs an 'audio' path")
            path = Path(obj["audio"])
            path = path if path.is_absolute() else root.resolve().parent / path
            dur = obj.get("duration")
            files.append((str(path), float(dur) if isinstance(dur, (int, float)) and dur > 0 else None))
    else:
        raise ConfigError(f"augment.noise.noise_dir: {noise_dir} is neither a folder nor a JSONL manifest")
    if not files:
        raise ConfigError(f"augment.noise.noise_dir: no audio files ({', '.join(NOISE_EXTENSIONS)}) in {noise_dir}")
    return files


class SpecAugment:
    """SpecAugment preset: optional time warp, then frequency masks, then time masks.

    ``__call__(feats: (frames, n_mels), rng) -> (frames, n_mels)``, a new tensor. Masked cells
    are set to the utterance mean of ``feats`` (a scalar): the features are raw log-mels here and
    global CMVN comes later in the model, so 0 would be an extreme value, whereas the mean is a
    typical one. Masks may overlap.
    """

    def __init__(self, cfg: SpecAugmentConfig):
        self.cfg = cfg

    def sample_masks(self, frames: int, n_mels: int, rng: np.random.Generator,
                     ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Draw ``(freq_masks, time_masks)``, each a list of ``(start, width)``.

        Frequency widths are uniform in ``[0, min(F, n_mels)]``; time widths in ``[0, max_width]``
        with ``max_width = min(time_width_max, floor(time_width_ratio * frames))``.
        """
        c = self.cfg
        freq = []
        for _ in range(c.freq_masks):
            w = int(rng.integers(0, min(c.freq_width, n_mels) + 1))
            freq.append((int(rng.integers(0, n_mels - w + 1)), w))
        n_time = c.time_masks
        if c.time_masks_per_frame > 0:
            n_time = max(n_time, min(c.time_masks_max, int(c.time_masks_per_frame * frames)))
        max_width = min(c.time_width_max, int(c.time_width_ratio * frames))
        time = []
        for _ in range(n_time):
            w = int(rng.integers(0, max_width + 1))
            time.append((int(rng.integers(0, frames - w + 1)), w))
        return freq, time

    def time_warp(self, feats: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Stretch ``feats: (frames, n_mels)`` left of a random centre by up to ``time_warp`` frames
        and squeeze the right part to match (linear interpolation; the length is unchanged)."""
        frames, w_max = feats.shape[0], self.cfg.time_warp
        if w_max <= 0 or frames <= 2 * w_max + 1:
            return feats
        centre = int(rng.integers(w_max, frames - w_max))
        w = int(rng.integers(-w_max, w_max + 1))
        if w == 0:
            return feats
        x = feats.t().unsqueeze(0)                                   # (1, n_mels, frames)
        left = torch.nn.functional.interpolate(x[..., :centre], size=centre + w, mode="linear")
        right = torch.nn.functional.interpolate(x[..., centre:], size=frames - centre - w, mode="linear")
        return torch.cat([left, right], dim=-1)[0].t().contiguous()

    def __call__(self, feats: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if feats.dim() != 2:
            raise ValueError(f"SpecAugment expects (frames, n_mels), got shape {tuple(feats.shape)}")
        out = feats.clone()
        if not self.cfg.enabled or out.numel() == 0:
            return out
        out = self.time_warp(out, rng)
        fill = out.mean()
        freq, time = self.sample_masks(out.shape[0], out.shape[1], rng)
        for start, width in freq:
            out[:, start:start + width] = fill
        for start, width in time:
            out[start:start + width, :] = fill
        return out
