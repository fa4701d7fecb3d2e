"""Convolutional fronts of the attention encoders: ×4 time reduction.

Two interchangeable fronts, picked by ``encoder_conf.subsampling`` (:data:`SUBSAMPLING`):

- ``conv2d``: two full 3×3 stride-2 convolutions (WeNet's ``Conv2dSubsampling4``).
- ``dwconv2d``: the second convolution depthwise-separable (a 3×3 depthwise stride-2 conv and a
  1×1 pointwise one), as in NVIDIA's FastConformer. Same windows and output frames, about a
  fifth of the front's training time on a CPU (``scripts/bench_train.py``).

Both map ``forward(x: (B, T, n_mels), lengths: (B,)) -> ((B, T', d_model), (B,))`` with
``T' = ((T - 1) // 2 - 1) // 2``; they look ``right_context = 6`` frames ahead and advance
``stride = 4`` input frames per output frame, so streaming code treats them alike.
"""
from __future__ import annotations

import torch
from torch import nn


class Conv2dSubsampling4(nn.Module):
    """Two 3×3 stride-2 convolutions over (time, mel), then a projection to ``d_model``."""

    stride = 4
    right_context = 6

    def __init__(self, n_mels: int, d_model: int, channels: int = 0):
        super().__init__()
        c = channels or d_model
        self.conv = nn.Sequential(*self._convs(c))
        freq = ((n_mels - 1) // 2 - 1) // 2
        self.proj = nn.Linear(c * freq, d_model)

    @staticmethod
    def _convs(c: int) -> list[nn.Module]:
        return [nn.Conv2d(1, c, 3, 2), nn.ReLU(), nn.Conv2d(c, c, 3, 2), nn.ReLU()]

    @staticmethod
    def output_lengths(lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(torch.div(lengths - 1, 2, rounding_mode="floor") - 1, 2, rounding_mode="floor")

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv(x.unsqueeze(1))                      # (B, C, T', F')
        b, c, t, f = x.shape
        x = self.proj(x.transpose(1, 2).reshape(b, t, c * f))
        return x, self.output_lengths(lengths).clamp(min=0)


class DepthwiseConv2dSubsampling4(Conv2dSubsampling4):
    """As :class:`Conv2dSubsampling4`, with the second convolution depthwise-separable."""

    @staticmethod
    def _convs(c: int) -> list[nn.Module]:
        return [nn.Conv2d(1, c, 3, 2), nn.ReLU(), nn.Conv2d(c, c, 3, 2, groups=c), nn.Conv2d(c, c, 1), nn.ReLU()]


class Conv1dSubsampling4(nn.Module):
    """Two 3-tap stride-2 convolutions along time with the mel bins as channels (as Whisper's front,
    strided twice): dense matrix products, no 2-D feature maps to keep for the backward pass."""

    stride = 4
    right_context = 6

    def __init__(self, n_mels: int, d_model: int, channels: int = 0):
        super().__init__()
        c = channels or d_model
        self.conv = nn.Sequential(nn.Conv1d(n_mels, c, 3, 2), nn.GELU(), nn.Conv1d(c, d_model, 3, 2), nn.GELU())

    output_lengths = staticmethod(Conv2dSubsampling4.output_lengths)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv(x.transpose(1, 2)).transpose(1, 2)   # (B, T', d_model)
        return x, self.output_lengths(lengths).clamp(min=0)


SUBSAMPLING: dict[str, type[nn.Module]] = {
    "conv1d": Conv1dSubsampling4,
    "conv2d": Conv2dSubsampling4,
    "dwconv2d": DepthwiseConv2dSubsampling4,
}
