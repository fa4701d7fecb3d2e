"""The log-mel front-end in numpy, for inference without torch (the ONNX runtime).

:func:`log_mel` computes what :class:`s2s_media.frontend.logmel.LogMel` computes (torchaudio's
``MelSpectrogram``: periodic Hann window of ``N_FFT``, centred frames with reflect padding, power spectrum,
HTK mel filters without normalisation, then ``log(max(mel, LOG_MEL_FLOOR))``), to float rounding;
``tests/frontend/test_logmel_np.py`` holds them together. Inference (the transcriber and the streaming
front-end) computes its features here, on either runtime.
"""
from __future__ import annotations

import functools

import numpy as np

from s2s_media.frontend.audio import HOP_LENGTH, LOG_MEL_FLOOR, N_FFT, N_MELS, SAMPLE_RATE, num_frames


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=4)
def mel_filters(n_mels: int = N_MELS, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT) -> np.ndarray:
    """Triangular HTK mel filters ``(n_fft // 2 + 1, n_mels)`` over 0..sample_rate/2, unnormalised."""
    freqs = np.linspace(0, sample_rate // 2, n_fft // 2 + 1)
    points = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_mels + 2))
    diff = np.diff(points)
    slopes = points[None, :] - freqs[:, None]
    down, up = -slopes[:, :-2] / diff[:-1], slopes[:, 2:] / diff[1:]
    return np.maximum(0.0, np.minimum(down, up))


@functools.lru_cache(maxsize=1)
def _window(n_fft: int = N_FFT) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)          # periodic Hann


def log_mel(wav: np.ndarray, n_mels: int = N_MELS) -> np.ndarray:
    """``wav: (samples,)`` float at 16 kHz -> log-mels ``(samples // HOP_LENGTH + 1, n_mels)`` float32."""
    wav = np.asarray(wav, np.float64)
    n = wav.shape[-1]
    if n <= N_FFT // 2:                     # reflect padding needs more samples: zero-pad, keep the frame count
        wav = np.pad(wav, (0, N_FFT // 2 + 1 - n))
    padded = np.pad(wav, N_FFT // 2, mode="reflect")
    count = 1 + (padded.size - N_FFT) // HOP_LENGTH
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH][:count]
    power = np.abs(np.fft.rfft(frames * _window(), axis=-1)) ** 2
    mel = power @ mel_filters(n_mels)
    return np.log(np.maximum(mel, LOG_MEL_FLOOR))[: num_frames(n)].astype(np.float32)
