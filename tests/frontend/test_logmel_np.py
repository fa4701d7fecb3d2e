"""The numpy log-mel of the torch-free runtime equals LogMel (torchaudio)."""
import numpy as np
import pytest
import torch

from s2s_media.frontend.audio import SAMPLE_RATE
from s2s_media.frontend.logmel import LogMel
from s2s_media.frontend.logmel_np import log_mel


@pytest.mark.parametrize("samples", [150, 401, 16000, 23457])
def test_numpy_log_mel_equals_torch(samples):
    rng = np.random.default_rng(samples)
    t = np.arange(samples) / SAMPLE_RATE
    wav = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(samples)).astype(np.float32)
    wav[: samples // 3] = 0.0                                  # digital silence hits the floor on both sides
    want = LogMel()(torch.from_numpy(wav)[None])[0].numpy()
    got = log_mel(wav)
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.abs(got - want).max() < 2e-3
