"""Transformer and Conformer encoders over ×4 convolutional subsampling.

Optionally a run of middle blocks works at half the frame rate (``half_rate_blocks``, Zipformer
style): frame pairs are merged with learned weights before the run, and after it each merged frame
is repeated twice and mixed into the frames that entered the run (a learned per-channel bypass).
The output keeps the ×4 rate that CTC over characters needs, while those blocks cost about half.

Both support dynamic-chunk training (U2): each training batch draws either full context or
a random chunk size (1..``max_chunk`` frames after subsampling), optionally with a random
number of left chunks. With causal convolutions the same weights then decode with full
context or in chunks for streaming.

Streaming: :meth:`AttentionEncoder.forward_chunk` runs one chunk of a batch of streams against
an :class:`EncoderCache` (each stream's attention keys/values and causal-conv inputs from its
earlier chunks) and gives the same frames as ``forward(..., chunk_size=C, left_chunks=N)`` over
the whole input, without recomputing the past.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from s2s_media.errors import UserError
from s2s_media.models.layers import FeedForward, MultiHeadAttention, PositionalEncoding, chunk_mask, lengths_to_mask
from s2s_media.models.subsampling import SUBSAMPLING


@dataclass
class TransformerEncoderConfig:
    d_model: int = 256
    n_heads: int = 4
    n_layers: int = 12
    ffn_dim: int = 1024
    dropout: float = 0.1
    attn_dropout: float = 0.0
    subsampling: str = "conv2d"         # the x4 front: conv2d or dwconv2d (models/subsampling.py)
    subsampling_channels: int = 0       # 0 = d_model
    half_rate_blocks: list[int] = field(default_factory=list)  # [first, stop): blocks at half frame rate
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
        return self._out(x)

    def _out(self, x: torch.Tensor) -> torch.Tensor:
        """Depthwise output ``(B, d, T)`` -> LayerNorm, SiLU, pointwise -> ``(B, T, d)``."""
        x = F.silu(self.norm(x.transpose(1, 2)))
        return self.dropout(self.pointwise_out(x.transpose(1, 2)).transpose(1, 2))

    def forward_chunk(self, x: torch.Tensor, pad_mask: torch.Tensor,
                      state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Causal conv over a chunk that continues earlier ones.

        x: (B, T, d); pad_mask: (B, T), valid frames first; state: (B, d, kernel_size - 1) the
        depthwise conv's input over each stream's last frames (zeros at the start of a stream).
        Returns ``(out (B, T, d), new_state (B, d, kernel_size - 1))``; the new state ends at each
        stream's last valid frame.
        """
        x = x.masked_fill(~pad_mask.unsqueeze(-1), 0.0).transpose(1, 2)
        x = F.glu(self.pointwise_in(x), dim=1)
        x = x.masked_fill(~pad_mask.unsqueeze(1), 0.0)
        full = torch.cat([state, x], dim=2)                                # (B, d, K-1+T)
        k = self.kernel_size - 1
        index = pad_mask.sum(1, keepdim=True) + torch.arange(k, device=x.device)  # last K-1 valid columns
        new_state = full.gather(2, index.unsqueeze(1).expand(-1, full.size(1), -1))
        return self._out(self.depthwise(full)), new_state


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
        x = self._pre(x)
        h = self.attn_norm(x)
        x = x + self.dropout(self.attn(h, h, h, mask=att_mask))
        if self.conformer:
            x = x + self.conv(self.conv_norm(x), pad_mask)
        return self._post(x)

    def forward_chunk(self, x: torch.Tensor, att_mask: torch.Tensor, pad_mask: torch.Tensor, keys: torch.Tensor,
                      values: torch.Tensor, conv_state: torch.Tensor | None):
        """One chunk against cached left context.

        x: (B, C, d); att_mask: (B, 1, L + C) over cached then new frames; pad_mask: (B, C);
        keys/values: (B, h, L, dk) cached projections; conv_state: see :meth:`ConvModule.forward_chunk`
        (None for the Transformer). Returns ``(x, keys, values, conv_state)`` with the chunk's
        keys/values appended: ``(B, h, L + C, dk)``.
        """
        x = self._pre(x)
        h = self.attn_norm(x)
        k, v = self.attn.project_kv(h)
        keys, values = torch.cat([keys, k], dim=2), torch.cat([values, v], dim=2)
        x = x + self.dropout(self.attn(h, mask=att_mask, kv=(keys, values)))
        if self.conformer:
            out, conv_state = self.conv.forward_chunk(self.conv_norm(x), pad_mask, conv_state)
            x = x + out
        return self._post(x), keys, values, conv_state

    def _pre(self, x: torch.Tensor) -> torch.Tensor:
        """Conformer: the first half-step FFN. Transformer: nothing."""
        return x + 0.5 * self.dropout(self.ff_pre(self.ff_pre_norm(x))) if self.conformer else x

    def _post(self, x: torch.Tensor) -> torch.Tensor:
        """The (half-step for the Conformer) FFN, and the Conformer's final LayerNorm."""
        scale = 0.5 if self.conformer else 1.0
        x = x + scale * self.dropout(self.ff(self.ff_norm(x)))
        return self.final_norm(x) if self.conformer else x


@dataclass
class EncoderCache:
    """The left context of a batch of streams for :meth:`AttentionEncoder.forward_chunk`.

    offset: (B,) long, encoder frames each stream has produced (the position of its next frame).
    lengths: (B,) long, cached frames per stream (at most the cap given to ``forward_chunk``).
    keys, values: one ``(B, h, L, dk)`` per block at this frame rate, left-padded: stream ``b``'s
        frames are the last ``lengths[b]`` positions, ``L = max(lengths)``.
    conv: one ``(B, d, kernel_size - 1)`` per block, the causal depthwise conv's input over the
        stream's last frames (Conformer; empty for the Transformer).
    inner: the same for the half-rate blocks (their own offset, lengths and ``L``), or None.

    ``stack`` batches the caches of several streams; ``unstack`` splits them again, each part a
    copy sized to its own frames, so a stream's memory never depends on its batch mates.
    """

    offset: torch.Tensor
    lengths: torch.Tensor
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    conv: list[torch.Tensor]
    inner: EncoderCache | None = None

    @property
    def batch_size(self) -> int:
        return self.offset.size(0)

    @property
    def frames(self) -> int:
        """Cached positions ``L`` (padding included)."""
        return self.keys[0].size(2) if self.keys else 0

    def num_bytes(self) -> int:
        own = sum(t.numel() * t.element_size() for t in self.keys + self.values + self.conv)
        return own + (self.inner.num_bytes() if self.inner is not None else 0)

    @staticmethod
    def stack(caches: list[EncoderCache]) -> EncoderCache:
        """One batch from several caches (left-padding keys/values to the longest)."""
        if len(caches) == 1:
            return caches[0]
        length = max(c.frames for c in caches)

        def padded(ts: list[torch.Tensor]) -> torch.Tensor:   # one copy, left padding only where needed
            if all(t.size(2) == length for t in ts):
                return torch.cat(ts)
            out = ts[0].new_zeros(sum(t.size(0) for t in ts), ts[0].size(1), length, ts[0].size(3))
            row = 0
            for t in ts:
                out[row:row + t.size(0), :, length - t.size(2):] = t
                row += t.size(0)
            return out

        n = len(caches[0].keys)
        inner = EncoderCache.stack([c.inner for c in caches]) if caches[0].inner is not None else None
        return EncoderCache(torch.cat([c.offset for c in caches]), torch.cat([c.lengths for c in caches]),
                            [padded([c.keys[i] for c in caches]) for i in range(n)],
                            [padded([c.values[i] for c in caches]) for i in range(n)],
                            [torch.cat([c.conv[i] for c in caches]) for i in range(len(caches[0].conv))], inner)

    def unstack(self) -> list[EncoderCache]:
        """One cache per stream, each trimmed to its own frames (copies, unless the batch is one stream)."""
        if self.batch_size == 1:
            return [self]
        inner = self.inner.unstack() if self.inner is not None else [None] * self.batch_size
        out = []
        length = self.frames
        for b, n in enumerate(self.lengths.tolist()):
            out.append(EncoderCache(self.offset[b:b + 1].clone(), self.lengths[b:b + 1].clone(),
                                    [k[b:b + 1, :, length - n:].clone() for k in self.keys],
                                    [v[b:b + 1, :, length - n:].clone() for v in self.values],
                                    [c[b:b + 1].clone() for c in self.conv], inner[b]))
        return out


class PairMerge(nn.Module):
    """Half the frame rate: frames ``2k`` and ``2k + 1`` merged with learned (softmax) weights.

    ``forward(x: (B, T, d), pad_mask: (B, T)) -> (B, ceil(T / 2), d)``; padding counts as zeros,
    so a chunk of a stream gives the frames that the whole stream gives.
    """

    def __init__(self):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(2))

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        x = x.masked_fill(~pad_mask.unsqueeze(-1), 0.0)
        if x.size(1) % 2:
            x = F.pad(x, (0, 0, 0, 1))
        w = torch.softmax(self.logits, 0)
        return w[0] * x[:, 0::2] + w[1] * x[:, 1::2]


class Bypass(nn.Module):
    """Back to the full rate: each half-rate frame twice, mixed into the frames that entered the run.

    ``forward(x_full: (B, T, d), x_half: (B, ceil(T / 2), d)) -> x_full + c * (up - x_full)`` with a
    learned per-channel ``c`` (0.5 at the start).
    """

    def __init__(self, d_model: int):
        super().__init__()
        self.scale = nn.Parameter(torch.full((d_model,), 0.5))

    def forward(self, x_full: torch.Tensor, x_half: torch.Tensor) -> torch.Tensor:
        up = x_half.repeat_interleave(2, dim=1)[:, : x_full.size(1)]
        return x_full + self.scale * (up - x_full)


def half_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """Frames after :class:`PairMerge`: ``ceil(lengths / 2)``."""
    return torch.div(lengths + 1, 2, rounding_mode="floor")


class AttentionEncoder(nn.Module):
    """Subsampling + positional encoding + a stack of :class:`EncoderBlock`.

    ``forward(feats: (B, T, n_mels), lengths: (B,), chunk_size=0, left_chunks=-1)``
    returns ``(out: (B, T', d_model), out_lengths: (B,))``. ``chunk_size > 0`` decodes in
    chunks; in training with ``dynamic_chunk`` the chunk size is drawn per batch. With
    ``half_rate_blocks`` the chunk size must be even (a merged pair never straddles two chunks).
    """

    Config = TransformerEncoderConfig
    conformer = False

    def __init__(self, n_mels: int, cfg: TransformerEncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.output_dim = cfg.d_model
        if cfg.subsampling not in SUBSAMPLING:
            raise UserError(f"model.encoder_conf.subsampling: unknown {cfg.subsampling!r}; "
                            f"choose one of {', '.join(SUBSAMPLING)}")
        self.subsampling = SUBSAMPLING[cfg.subsampling](n_mels, cfg.d_model, cfg.subsampling_channels)
        self.pos = PositionalEncoding(cfg.d_model, cfg.dropout)
        self.blocks = nn.ModuleList(EncoderBlock(cfg, self.conformer) for _ in range(cfg.n_layers))
        self.final_norm = nn.LayerNorm(cfg.d_model)
        self.half_rate = self._half_rate_range(cfg)
        if self.half_rate:
            self.merge, self.bypass = PairMerge(), Bypass(cfg.d_model)

    @staticmethod
    def _half_rate_range(cfg: TransformerEncoderConfig) -> range:
        hr = list(cfg.half_rate_blocks)
        if not hr:
            return range(0)
        if len(hr) != 2 or not 0 <= hr[0] < hr[1] <= cfg.n_layers:
            raise UserError(f"model.encoder_conf.half_rate_blocks: expected [first, stop) with "
                            f"0 <= first < stop <= n_layers={cfg.n_layers}, got {hr}")
        return range(hr[0], hr[1])

    def _check_chunk(self, chunk_size: int) -> None:
        if self.half_rate and chunk_size > 0 and chunk_size % 2:
            raise UserError(f"chunk size {chunk_size}: this encoder runs blocks at half rate "
                            "(half_rate_blocks), so chunks need an even number of frames; use "
                            f"{chunk_size + 1}")

    def sample_chunk(self, t: int) -> tuple[int, int]:
        """Draw (chunk_size, left_chunks) for one training batch; (0, -1) means full context."""
        r = int(torch.randint(1, t + 1, (1,)))
        if r > t // 2:
            return 0, -1
        chunk = r % self.cfg.max_chunk + 1
        if self.half_rate:
            chunk += chunk % 2
        left = int(torch.randint(0, self.cfg.max_left_chunks + 1, (1,))) if self.cfg.dynamic_left_chunks else -1
        return chunk, left

    @staticmethod
    def _masks(lengths: torch.Tensor, t: int, chunk_size: int, left_chunks: int,
               device) -> tuple[torch.Tensor, torch.Tensor]:
        """``pad_mask (B, t)`` and the attention mask ``(B, 1 or t, t)`` of one frame rate."""
        pad_mask = lengths_to_mask(lengths, t)
        att_mask = pad_mask.unsqueeze(1)
        if chunk_size > 0:
            att_mask = att_mask & chunk_mask(t, chunk_size, left_chunks, device).unsqueeze(0)
        return pad_mask, att_mask

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, chunk_size: int = 0,
                left_chunks: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
        x, out_lengths = self.subsampling(feats, lengths)
        x = self.pos(x)
        if self.training and self.cfg.dynamic_chunk and chunk_size == 0:
            chunk_size, left_chunks = self.sample_chunk(x.size(1))
        self._check_chunk(chunk_size)
        pad_mask, att_mask = self._masks(out_lengths, x.size(1), chunk_size, left_chunks, x.device)
        full = None
        for i, block in enumerate(self.blocks):
            if self.half_rate and i == self.half_rate.start:
                full = (x, pad_mask, att_mask)
                x = self.merge(x, pad_mask)
                pad_mask, att_mask = self._masks(half_lengths(out_lengths), x.size(1), chunk_size // 2,
                                                 left_chunks, x.device)
            x = block(x, att_mask, pad_mask)
            if full is not None and i == self.half_rate.stop - 1:
                x, pad_mask, att_mask = self.bypass(full[0], x), full[1], full[2]
        return self.final_norm(x), out_lengths

    # ---- streaming
    def check_streamable(self) -> None:
        """Raise :class:`~s2s_media.errors.UserError` if chunked streaming cannot match ``forward``."""
        if self.conformer and not self.cfg.causal:
            raise UserError("model.encoder_conf.causal is false: streaming needs the Conformer's causal "
                            "convolution (a centred one looks into future chunks); train with causal: true")

    def init_cache(self, batch_size: int = 1, device=None) -> EncoderCache:
        """An empty cache: streams at frame 0 with no left context."""
        cfg, device = self.cfg, device or self.final_norm.weight.device
        dtype = self.final_norm.weight.dtype
        h = cfg.n_heads
        empty = torch.zeros(batch_size, h, 0, cfg.d_model // h, device=device, dtype=dtype)

        def level(n_blocks: int, inner: EncoderCache | None = None) -> EncoderCache:
            conv = ([torch.zeros(batch_size, cfg.d_model, cfg.kernel_size - 1, device=device, dtype=dtype)
                     for _ in range(n_blocks)] if self.conformer else [])
            zeros = torch.zeros(batch_size, dtype=torch.long, device=device)
            return EncoderCache(zeros, zeros.clone(), [empty] * n_blocks, [empty] * n_blocks, conv, inner)

        n_half = len(self.half_rate)
        return level(len(self.blocks) - n_half, level(n_half) if n_half else None)

    def forward_chunk(self, feats: torch.Tensor, lengths: torch.Tensor, cache: EncoderCache,
                      max_cache_frames: int = -1) -> tuple[torch.Tensor, torch.Tensor, EncoderCache]:
        """Encode the next chunk of each stream in a batch.

        feats: (B, T, n_mels) the feature frames under this chunk's subsampling windows: for
            ``C`` output frames, ``stride * (C - 1) + right_context + 1`` frames (``4C + 3``) starting
            at input frame ``stride * cache.offset``, i.e. overlapping the previous chunk's last 3.
        lengths: (B,) valid frames per stream (a stream's last chunk may be short).
        cache: the streams' left context (:meth:`init_cache` for new streams).
        max_cache_frames: keep at most this many frames of left context per stream (-1: all).
            ``C * N`` reproduces ``forward(..., chunk_size=C, left_chunks=N)``; a cap below the
            context that ``forward`` would see changes the output.

        Every output frame of the call belongs to one chunk (they see each other and the cache);
        with half-rate blocks every chunk but a stream's last must have an even number of frames.
        Returns ``(out (B, C, d_model), out_lengths (B,), new_cache)``.
        """
        self.check_streamable()
        x, out_lengths = self.subsampling(feats, lengths)
        x = self.pos(x, cache.offset)
        outer = _ChunkLevel(cache, lengths_to_mask(out_lengths, x.size(1)))
        inner = full = None
        for i, block in enumerate(self.blocks):
            if self.half_rate and i == self.half_rate.start:
                full = x
                x = self.merge(x, outer.pad_mask)
                inner = _ChunkLevel(cache.inner, lengths_to_mask(half_lengths(out_lengths), x.size(1)))
            level = inner if i in self.half_rate else outer
            x = level.run(block, x)
            if full is not None and i == self.half_rate.stop - 1:
                x = self.bypass(full, x)
        half_cap = max_cache_frames // 2 if max_cache_frames >= 0 else -1
        new_inner = inner.new_cache(half_cap) if inner is not None else None
        return self.final_norm(x), out_lengths, outer.new_cache(max_cache_frames, new_inner)


class _ChunkLevel:
    """One frame rate's part of :meth:`AttentionEncoder.forward_chunk`: its blocks run in order
    against ``cache``'s entries, and the new cache is gathered at the end."""

    def __init__(self, cache: EncoderCache, pad_mask: torch.Tensor):
        self.cache, self.pad_mask = cache, pad_mask
        cached = cache.frames
        left_valid = torch.arange(cached, device=pad_mask.device) >= cached - cache.lengths.unsqueeze(1)
        self.valid = torch.cat([left_valid, pad_mask], dim=1)                     # (B, L + C)
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.conv: list[torch.Tensor] = []

    def run(self, block: EncoderBlock, x: torch.Tensor) -> torch.Tensor:
        i = len(self.keys)
        x, k, v, state = block.forward_chunk(x, self.valid.unsqueeze(1), self.pad_mask, self.cache.keys[i],
                                             self.cache.values[i], self.cache.conv[i] if block.conformer else None)
        self.keys.append(k)
        self.values.append(v)
        if state is not None:
            self.conv.append(state)
        return x

    def new_cache(self, cap: int, inner: EncoderCache | None = None) -> EncoderCache:
        n = self.pad_mask.sum(1)
        lengths = self.cache.lengths + n
        if cap >= 0:
            lengths = lengths.clamp(max=cap)
        keys, values = _keep_last_valid(self.keys, self.values, self.valid, lengths)
        return EncoderCache(self.cache.offset + n, lengths, keys, values, self.conv, inner)


def _keep_last_valid(keys: list[torch.Tensor], values: list[torch.Tensor], valid: torch.Tensor,
                     keep: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per stream, the last ``keep[b]`` valid positions of ``(B, h, P, dk)`` tensors, left-padded.

    valid: (B, P) bool; keep: (B,) with ``keep[b] <= valid[b].sum()``.
    """
    length = int(keep.max()) if keep.numel() else 0
    p = valid.size(1)
    if bool(valid[:, p - length:].all()) and bool((keep == length).all()):
        return [k[:, :, p - length:] for k in keys], [v[:, :, p - length:] for v in values]
    # rank of each valid position counted from the stream's last one: 0, 1, ...
    from_end = valid.flip(1).cumsum(1).flip(1) - 1
    slot = length - 1 - from_end                                   # its slot in the new cache
    take = valid & (from_end < keep.unsqueeze(1))
    index = torch.zeros(valid.size(0), length, dtype=torch.long, device=valid.device)
    rows, cols = take.nonzero(as_tuple=True)
    index[rows, slot[rows, cols]] = cols

    def gather(t: torch.Tensor) -> torch.Tensor:
        return t.gather(2, index[:, None, :, None].expand(-1, t.size(1), -1, t.size(3)))
    return [gather(k) for k in keys], [gather(v) for v in values]


class TransformerEncoder(AttentionEncoder):
    Config = TransformerEncoderConfig
    conformer = False


class ConformerEncoder(AttentionEncoder):
    Config = ConformerEncoderConfig
    conformer = True
