"""The numpy log-mel of the torch-free runtime equals LogMel (torchaudio)."""
import numpy as np
import pytest
import torch

from s2s_media.frontend import audio
from s2s_media.frontend.logmel_np import HOP_LENGTH, LOG_MEL_FLOOR, N_FFT, N_MELS, SAMPLE_RATE, log_mel


def test_constants_are_those_of_audio():
    assert (SAMPLE_RATE, N_FFT, HOP_LENGTH, N_MELS, LOG_MEL_FLOOR) == (
        audio.SAMPLE_RATE, audio.N_FFT, audio.HOP_LENGTH, audio.N_MELS, audio.LOG_MEL_FLOOR)


@pytest.mark.parametrize("samples", [150, 401, 16000, 23457])
def test_numpy_log_mel_equals_torch(samples):
    rng = np.random.default_rng(samples)
    t = np.arange(samples) / SAMPLE_RATE
    wav = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(samples)).astype(np.float32)
    wav[: samples // 3] = 0.0                                  # digital silence hits the floor on both sides
    want = audio.LogMel()(torch.from_numpy(wav)[None])[0].numpy()
    got = log_mel(wav)
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.abs(got - want).max() < 2e-3
