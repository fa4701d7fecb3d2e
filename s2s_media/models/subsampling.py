"""Convolutional front of the attention encoders: ×4 time reduction."""
from __future__ import annotations

import torch
from torch import nn


class Conv2dSubsampling4(nn.Module):
    """Two 3×3 stride-2 convolutions over (time, mel), then a projection to ``d_model``.

    ``forward(x: (B, T, n_mels), lengths: (B,)) -> ((B, T', d_model), (B,))`` with
    ``T' = ((T - 1) // 2 - 1) // 2``. It looks ``right_context = 6`` frames ahead and
    advances ``stride = 4`` input frames per output frame.
    """

    stride = 4
    right_context = 6

    def __init__(self, n_mels: int, d_model: int, channels: int = 0):
        super().__init__()
        c = channels or d_model
        self.conv = nn.Sequential(nn.Conv2d(1, c, 3, 2), nn.ReLU(), nn.Conv2d(c, c, 3, 2), nn.ReLU())
        freq = ((n_mels - 1) // 2 - 1) // 2
        self.proj = nn.Linear(c * freq, d_model)

    @staticmethod
    def output_lengths(lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(torch.div(lengths - 1, 2, rounding_mode="floor") - 1, 2, rounding_mode="floor")

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv(x.unsqueeze(1))                      # (B, C, T', F')
        b, c, t, f = x.shape
        x = self.proj(x.transpose(1, 2).reshape(b, t, c * f))
        return x, self.output_lengths(lengths).clamp(min=0)
