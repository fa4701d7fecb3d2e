"""The default shared decoder: a pre-LN Transformer with causal self-attention and cross-attention."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from s2s_media.models.decoder import Decoder, State, select_state
from s2s_media.models.layers import FeedForward, MultiHeadAttention, PositionalEncoding


@dataclass
class TransformerDecoderConfig:
    n_layers: int = 6
    n_heads: int = 4
    ffn_dim: int = 1024
    dropout: float = 0.1
    attn_dropout: float = 0.0


class DecoderLayer(nn.Module):
    """Self-attention, cross-attention, feed-forward; each pre-normed with a residual."""

    def __init__(self, d: int, cfg: TransformerDecoderConfig):
        super().__init__()
        self.self_norm, self.self_attn = nn.LayerNorm(d), MultiHeadAttention(d, cfg.n_heads, cfg.attn_dropout)
        self.cross_norm, self.cross_attn = nn.LayerNorm(d), MultiHeadAttention(d, cfg.n_heads, cfg.attn_dropout)
        self.ff_norm, self.ff = nn.LayerNorm(d), FeedForward(d, cfg.ffn_dim, cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, past_kv: tuple[torch.Tensor, torch.Tensor] | None,
                self_mask: torch.Tensor | None, memory_kv: tuple[torch.Tensor, torch.Tensor],
                memory_mask: torch.Tensor, need_weights: bool):
        """x: (B, U, d) queries; past_kv: self-attention keys/values of earlier positions, each
        (B, h, P, dk), or None. Returns (x, keys/values including these positions, cross-attention)."""
        h = self.self_norm(x)
        k, v = self.self_attn.project_kv(h)
        if past_kv is not None:
            k, v = torch.cat([past_kv[0], k], dim=2), torch.cat([past_kv[1], v], dim=2)
        x = x + self.dropout(self.self_attn(h, mask=self_mask, kv=(k, v)))
        out = self.cross_attn(self.cross_norm(x), mask=memory_mask.unsqueeze(1), need_weights=need_weights,
                              kv=memory_kv)
        attn = None
        if need_weights:
            out, attn = out
        x = x + self.dropout(out)
        x = x + self.dropout(self.ff(self.ff_norm(x)))
        return x, (k, v), attn


class TransformerDecoder(Decoder):
    """``forward(tokens: (B, U), memory: (B, T, d), memory_mask: (B, T))`` -> logits ``(B, U, V)``.

    Incremental state: per layer the self-attention keys and values of past positions
    ``(B, h, P, dk)``, plus the cross-attention key/value projections of the memory, computed
    once in ``init_state``. A step costs the same whatever the prefix length, but for attention
    over the prefix itself.
    """

    Config = TransformerDecoderConfig

    def __init__(self, vocab_size: int, d_model: int, cfg: TransformerDecoderConfig):
        super().__init__()
        self.vocab_size, self.d_model, self.cfg = vocab_size, d_model, cfg
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = PositionalEncoding(d_model, cfg.dropout)
        self.layers = nn.ModuleList(DecoderLayer(d_model, cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.output = nn.Linear(d_model, vocab_size)

    def _memory_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [layer.cross_attn.project_kv(memory) for layer in self.layers]

    def forward(self, tokens, memory, memory_mask, return_attention: bool = False, memory_index=None):
        u = tokens.size(1)
        x = self.pos(self.embed(tokens))
        causal = torch.ones(u, u, dtype=torch.bool, device=tokens.device).tril().unsqueeze(0)
        attn = None
        memory_kv = self._memory_kv(memory)
        if memory_index is not None:       # project each utterance once, then pick rows
            memory_kv = select_state(memory_kv, memory_index)
            memory_mask = memory_mask.index_select(0, memory_index)
        for i, (layer, kv) in enumerate(zip(self.layers, memory_kv)):
            last = return_attention and i == len(self.layers) - 1
            x, _, a = layer(x, None, causal, kv, memory_mask, need_weights=last)
            attn = a if last else attn
        logits = self.output(self.norm(x))
        return (logits, attn) if return_attention else logits

    def init_state(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> State:
        b, h = memory.size(0), self.cfg.n_heads
        empty = memory.new_zeros(b, h, 0, self.d_model // h)
        return {"past": [(empty, empty) for _ in self.layers], "memory_kv": self._memory_kv(memory)}

    def step(self, tokens, state, memory, memory_mask):
        offset = state["past"][0][0].size(2)
        x = self.pos(self.embed(tokens.unsqueeze(1)), offset=offset)       # (B, 1, d)
        new_past, attn = [], None
        for i, layer in enumerate(self.layers):
            last = i == len(self.layers) - 1
            x, kv, a = layer(x, state["past"][i], None, state["memory_kv"][i], memory_mask, need_weights=last)
            new_past.append(kv)
            attn = a if last else attn
        logp = torch.log_softmax(self.output(self.norm(x[:, 0])).float(), dim=-1)
        return logp, {"past": new_past, "memory_kv": state["memory_kv"]}, attn[:, 0]
