"""The classic RNN seq2seq encoder: a pyramidal bidirectional LSTM (Listen, Attend and Spell)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


@dataclass
class PyramidalLSTMConfig:
    hidden: int = 256            # per direction
    n_layers: int = 4
    pyramid_layers: int = 2      # the first layers each halve the frame rate: 2 -> ×4
    d_model: int = 256           # output width, fed to the decoder
    dropout: float = 0.1


class PyramidalLSTMEncoder(nn.Module):
    """BLSTM stack; after each of the first ``pyramid_layers`` layers, adjacent frames are
    concatenated (time halves, width doubles).

    ``forward(feats: (B, T, n_mels), lengths: (B,)) -> ((B, T / 2**pyramid_layers, d_model), (B,))``.
    Chunked decoding is not supported (the encoder is bidirectional); ``chunk_size`` must be 0.
    """

    Config = PyramidalLSTMConfig

    def __init__(self, n_mels: int, cfg: PyramidalLSTMConfig):
        super().__init__()
        self.cfg = cfg
        self.output_dim = cfg.d_model
        layers, width = [], n_mels
        for i in range(cfg.n_layers):
            layers.append(nn.LSTM(width, cfg.hidden, batch_first=True, bidirectional=True))
            width = 2 * cfg.hidden * (2 if i < cfg.pyramid_layers else 1)
        self.layers = nn.ModuleList(layers)
        self.dropout = nn.Dropout(cfg.dropout)
        self.proj = nn.Linear(width, cfg.d_model)   # 4*hidden when the last layer is pyramidal too

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, chunk_size: int = 0,
                left_chunks: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
        if chunk_size:
            raise ValueError("the pyramidal BLSTM encoder is bidirectional and cannot decode in chunks")
        x = feats
        for i, lstm in enumerate(self.layers):
            packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
            x, _ = pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=x.size(1))
            x = self.dropout(x)
            if i < self.cfg.pyramid_layers:
                t = x.size(1) // 2
                x = x[:, : 2 * t].reshape(x.size(0), t, 2 * x.size(2))
                lengths = torch.div(lengths, 2, rounding_mode="floor")
        return self.proj(x), lengths
