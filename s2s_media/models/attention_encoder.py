"""Transformer and Conformer encoders over ×4 convolutional subsampling.

Both support dynamic-chunk training (U2): each training batch draws either full context or
a random chunk size (1..``max_chunk`` frames after subsampling), optionally with a random
number of left chunks. With causal convolutions the same weights then decode with full
context or in chunks for streaming.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from s2s_media.models.layers import FeedForward, MultiHeadAttention, PositionalEncoding, chunk_mask, lengths_to_mask
from s2s_media.models.subsampling import Conv2dSubsampling4


@dataclass
class TransformerEncoderConfig:
    d_model: int = 256
    n_heads: int = 4
    n_layers: int = 12
    ffn_dim: int = 1024
    dropout: float = 0.1
    attn_dropout: float = 0.0
    subsampling_channels: int = 0       # 0 = d_model
    dynamic_chunk: bool = True          # U2 dynamic-chunk training
    max_chunk: int = 25                 # largest random chunk (frames after subsampling)
    dynamic_left_chunks: bool = False   # also randomise how many chunks to the left are seen
    max_left_chunks: int = 8


@dataclass
class ConformerEncoderConfig(TransformerEncoderConfig):
    kernel_size: int = 15
    causal: bool = True                 # causal depthwise conv: needed for exact chunked streaming


class ConvModule(nn.Module):
    """Conformer convolution: pointwise+GLU, depthwise (optionally causal), LayerNorm, SiLU, pointwise.

    ``forward(x: (B, T, d), pad_mask: (B, T)) -> (B, T, d)``.
    """

    def __init__(self, d_model: int, kernel_size: int, causal: bool, dropout: float):
        super().__init__()
        self.causal = causal
        self.kernel_size = kernel_size
        self.pointwise_in = nn.Conv1d(d_model, 2 * d_model, 1)
        pad = 0 if causal else (kernel_size - 1) // 2
        self.depthwise = nn.Conv1d(d_model, d_model, kernel_size, padding=pad, groups=d_model)
        self.norm = nn.LayerNorm(d_model)
        self.pointwise_out = nn.Conv1d(d_model, d_model, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        x = x.masked_fill(~pad_mask.unsqueeze(-1), 0.0).transpose(1, 2)   # (B, d, T)
        x = F.glu(self.pointwise_in(x), dim=1)
        # zero padding again after the biased pointwise conv: the depthwise conv must see zeros there
        x = x.masked_fill(~pad_mask.unsqueeze(1), 0.0)
        if self.causal:
            x = F.pad(x, (self.kernel_size - 1, 0))
        x = self.depthwise(x)
        x = F.silu(self.norm(x.transpose(1, 2)))
        return self.dropout(self.pointwise_out(x.transpose(1, 2)).transpose(1, 2))


class EncoderBlock(nn.Module):
    """Pre-LN block. Conformer: ½FFN, MHSA, Conv, ½FFN. Transformer: MHSA, FFN.

    ``forward(x: (B, T, d), att_mask: (B, T, T), pad_mask: (B, T)) -> (B, T, d)``.
    """

    def __init__(self, cfg: TransformerEncoderConfig, conformer: bool):
        super().__init__()
        d = cfg.d_model
        self.conformer = conformer
        self.attn_norm = nn.LayerNorm(d)
        self.attn = MultiHeadAttention(d, cfg.n_heads, cfg.attn_dropout)
        self.ff_norm = nn.LayerNorm(d)
        self.ff = FeedForward(d, cfg.ffn_dim, cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)
        if conformer:
            self.ff_pre_norm = nn.LayerNorm(d)
            self.ff_pre = FeedForward(d, cfg.ffn_dim, cfg.dropout)
            self.conv_norm = nn.LayerNorm(d)
            self.conv = ConvModule(d, cfg.kernel_size, cfg.causal, cfg.dropout)
            self.final_norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, att_mask: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        scale = 0.5 if self.conformer else 1.0
        if self.conformer:
            x = x + 0.5 * self.dropout(self.ff_pre(self.ff_pre_norm(x)))
        h = self.attn_norm(x)
        x = x + self.dropout(self.attn(h, h, h, mask=att_mask))
        if self.conformer:
            x = x + self.conv(self.conv_norm(x), pad_mask)
        x = x + scale * self.dropout(self.ff(self.ff_norm(x)))
        return self.final_norm(x) if self.conformer else x


class AttentionEncoder(nn.Module):
    """Subsampling + positional encoding + a stack of :class:`EncoderBlock`.

    ``forward(feats: (B, T, n_mels), lengths: (B,), chunk_size=0, left_chunks=-1)``
    returns ``(out: (B, T', d_model), out_lengths: (B,))``. ``chunk_size > 0`` decodes in
    chunks; in training with ``dynamic_chunk`` the chunk size is drawn per batch.
    """

    Config = TransformerEncoderConfig
    conformer = False

    def __init__(self, n_mels: int, cfg: TransformerEncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.output_dim = cfg.d_model
        self.subsampling = Conv2dSubsampling4(n_mels, cfg.d_model, cfg.subsampling_channels)
        self.pos = PositionalEncoding(cfg.d_model, cfg.dropout)
        self.blocks = nn.ModuleList(EncoderBlock(cfg, self.conformer) for _ in range(cfg.n_layers))
        self.final_norm = nn.LayerNorm(cfg.d_model)

    def sample_chunk(self, t: int) -> tuple[int, int]:
        """Draw (chunk_size, left_chunks) for one training batch; (0, -1) means full context."""
        r = int(torch.randint(1, t + 1, (1,)))
        if r > t // 2:
            return 0, -1
        chunk = r % self.cfg.max_chunk + 1
        left = int(torch.randint(0, self.cfg.max_left_chunks + 1, (1,))) if self.cfg.dynamic_left_chunks else -1
        return chunk, left

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, chunk_size: int = 0,
                left_chunks: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
        x, out_lengths = self.subsampling(feats, lengths)
        x = self.pos(x)
        t = x.size(1)
        pad_mask = lengths_to_mask(out_lengths, t)
        if self.training and self.cfg.dynamic_chunk and chunk_size == 0:
            chunk_size, left_chunks = self.sample_chunk(t)
        att_mask = pad_mask.unsqueeze(1)                                   # (B, 1, T)
        if chunk_size > 0:
            att_mask = att_mask & chunk_mask(t, chunk_size, left_chunks, x.device).unsqueeze(0)
        for block in self.blocks:
            x = block(x, att_mask, pad_mask)
        return self.final_norm(x), out_lengths


class TransformerEncoder(AttentionEncoder):
    Config = TransformerEncoderConfig
    conformer = False


class ConformerEncoder(AttentionEncoder):
    Config = ConformerEncoderConfig
    conformer = True
