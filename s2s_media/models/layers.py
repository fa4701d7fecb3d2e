"""Building blocks shared by the encoders and decoders."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class PositionalEncoding(nn.Module):
    """Sinusoidal absolute positions, added after scaling by sqrt(d_model).

    ``forward(x: (batch, time, d), offset: int | (batch,) = 0) -> (batch, time, d)``; ``offset``
    is the index of the first frame, for chunked or incremental use: one int for the batch, or
    a long tensor with one offset per row (a batch of streams at different positions).
    """

    def __init__(self, d_model: int, dropout: float = 0.0, max_len: int = 5000):
        super().__init__()
        self.d_model = d_model
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("pe", self._table(max_len), persistent=False)

    def _table(self, n: int) -> torch.Tensor:
        pos = torch.arange(n, dtype=torch.float32).unsqueeze(1)
        div = torch.exp(torch.arange(0, self.d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / self.d_model))
        pe = torch.zeros(n, self.d_model)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)
        return pe

    def forward(self, x: torch.Tensor, offset: int | torch.Tensor = 0) -> torch.Tensor:
        per_row = isinstance(offset, torch.Tensor)
        first = (int(offset.max()) if offset.numel() else 0) if per_row else offset
        end = first + x.size(1)
        if end > self.pe.size(0):
            self.pe = self._table(max(end, 2 * self.pe.size(0))).to(self.pe.device)
        if per_row:
            pe = self.pe[offset.to(self.pe.device).unsqueeze(1) + torch.arange(x.size(1), device=self.pe.device)]
        else:
            pe = self.pe[offset:end]
        return self.dropout(x * math.sqrt(self.d_model) + pe.to(x.dtype))


class MultiHeadAttention(nn.Module):
    """Multi-head attention over ``query: (B, Tq, d)`` and ``key/value: (B, Tk, d)``.

    ``mask: (B, Tq or 1, Tk)`` bool, True where attention is allowed. Uses PyTorch's fused
    kernel unless the weights are asked for; then also returns ``(B, Tq, Tk)`` averaged over heads.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.h, self.dk = n_heads, d_model // n_heads
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d) -> (B, h, T, dk)"""
        return x.view(x.size(0), -1, self.h, self.dk).transpose(1, 2)

    def project_kv(self, kv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Key/value projections ``(B, h, Tk, dk)`` each, cacheable across decoder steps."""
        return self.split(self.k(kv)), self.split(self.v(kv))

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, need_weights: bool = False,
                kv: tuple[torch.Tensor, torch.Tensor] | None = None):
        q = self.split(self.q(query))
        k, v = kv if kv is not None else (self.split(self.k(key)), self.split(self.v(value)))
        m = None if mask is None else mask.unsqueeze(1)  # (B, 1, Tq|1, Tk)
        if need_weights:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.dk)
            if m is not None:
                scores = scores.masked_fill(~m, float("-inf"))
            attn = torch.softmax(scores, dim=-1).nan_to_num(0.0)
            ctx = F.dropout(attn, self.dropout, self.training) @ v
            weights = attn.mean(1)
        else:
            if m is not None:
                # a fully masked row would give NaN; let it see everything (its output is masked later)
                m = m | ~m.any(-1, keepdim=True)
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=m,
                                                 dropout_p=self.dropout if self.training else 0.0)
            weights = None
        out = self.out(ctx.transpose(1, 2).reshape(query.size(0), -1, self.h * self.dk))
        return (out, weights) if need_weights else out


class FeedForward(nn.Module):
    """Position-wise ``d -> ffn_dim -> d`` with SiLU (Swish)."""

    def __init__(self, d_model: int, ffn_dim: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_model, ffn_dim), nn.SiLU(), nn.Dropout(dropout),
                                 nn.Linear(ffn_dim, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def lengths_to_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """``lengths: (B,)`` -> ``(B, max_len)`` bool, True at valid positions."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def chunk_mask(size: int, chunk_size: int, left_chunks: int = -1, device=None) -> torch.Tensor:
    """Attention mask for chunked streaming: ``(size, size)`` bool.

    Frame ``i`` sees every frame of its own chunk and of ``left_chunks`` chunks before it
    (all of them when ``left_chunks < 0``), and nothing after its chunk.
    """
    idx = torch.arange(size, device=device)
    chunk = idx // chunk_size
    qc, kc = chunk.unsqueeze(1), chunk.unsqueeze(0)
    allowed = kc <= qc
    if left_chunks >= 0:
        allowed &= kc >= qc - left_chunks
    return allowed
