"""The log-mel front-end in torch (training, evaluation) and the CMVN statistics of a corpus.

:func:`s2s_media.frontend.logmel_np.log_mel` computes the same features in numpy (inference without torch).
"""
from __future__ import annotations

import torch
import torchaudio

from s2s_media.errors import AudioError
from s2s_media.frontend.audio import HOP_LENGTH, LOG_MEL_FLOOR, N_FFT, N_MELS, SAMPLE_RATE, num_frames


class LogMel(torch.nn.Module):
    """80-dim log-mel filterbank, 25 ms window, 10 ms hop, 16 kHz.

    ``forward(wav: (batch, samples)) -> (batch, frames, n_mels)``, with
    ``frames = samples // HOP_LENGTH + 1`` (centred STFT).
    """

    def __init__(self, n_mels: int = N_MELS, sample_rate: int = SAMPLE_RATE):
        super().__init__()
        self.n_mels = n_mels
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=N_FFT, win_length=N_FFT, hop_length=HOP_LENGTH,
            n_mels=n_mels, power=2.0, center=True)

    @torch.no_grad()
    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        n = wav.size(-1)
        if n <= N_FFT // 2:  # the centred STFT's reflect padding needs more samples: zero-pad, keep the frame count
            wav = torch.nn.functional.pad(wav, (0, N_FFT // 2 + 1 - n))
        spec = self.mel(wav.float())[..., : num_frames(n)]
        return torch.log(spec.clamp_min(LOG_MEL_FLOOR)).transpose(-1, -2)



def compute_cmvn(wavs, n_mels: int = N_MELS) -> tuple[torch.Tensor, torch.Tensor]:
    """Global mean and std of log-mel features over an iterable of 1-D waveforms.

    Returns ``(mean (n_mels,), std (n_mels,))``, accumulated in float64.
    """
    logmel = LogMel(n_mels)
    total = torch.zeros(n_mels, dtype=torch.float64)
    total_sq = torch.zeros(n_mels, dtype=torch.float64)
    count = 0
    for wav in wavs:
        feats = logmel(torch.as_tensor(wav).unsqueeze(0))[0].double()
        total += feats.sum(0)
        total_sq += (feats ** 2).sum(0)
        count += feats.size(0)
    if count == 0:
        raise AudioError("no readable audio to compute normalisation statistics from; check the training manifest")
    mean = total / count
    std = (total_sq / count - mean ** 2).clamp_min(1e-10).sqrt()
    return mean.float(), std.float()
