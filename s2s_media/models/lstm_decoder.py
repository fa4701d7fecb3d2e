"""The classic RNN decoder: an LSTM with additive (Bahdanau) attention over the encoder memory."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from s2s_media.models.decoder import Decoder, State, select_state


@dataclass
class LSTMDecoderConfig:
    hidden: int = 512
    n_layers: int = 1
    embed_dim: int = 256
    attention_dim: int = 256
    dropout: float = 0.1


class AdditiveAttention(nn.Module):
    """``score(h, m) = vᵀ tanh(W_q h + W_m m)``. The memory projection is computed once per utterance.

    ``forward(query: (B, H), memory: (B, T, d), projected: (B, T, A), mask: (B, T))``
    returns ``(context: (B, d), weights: (B, T))``.
    """

    def __init__(self, query_dim: int, memory_dim: int, attention_dim: int):
        super().__init__()
        self.query = nn.Linear(query_dim, attention_dim, bias=False)
        self.memory = nn.Linear(memory_dim, attention_dim)
        self.v = nn.Linear(attention_dim, 1, bias=False)

    def forward(self, query, memory, projected, mask):
        scores = self.v(torch.tanh(projected + self.query(query).unsqueeze(1))).squeeze(-1)
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1).nan_to_num(0.0)
        return torch.bmm(weights.unsqueeze(1), memory).squeeze(1), weights


class LSTMDecoder(Decoder):
    """Input feeding: each step sees the embedding and the previous attention context.

    State: ``h, c: (B, n_layers, H)``, ``context: (B, d)``, ``projected: (B, T, A)``.
    """

    Config = LSTMDecoderConfig

    def __init__(self, vocab_size: int, d_model: int, cfg: LSTMDecoderConfig):
        super().__init__()
        self.vocab_size, self.d_model, self.cfg = vocab_size, d_model, cfg
        self.embed = nn.Embedding(vocab_size, cfg.embed_dim)
        self.cells = nn.ModuleList(
            nn.LSTMCell(cfg.embed_dim + d_model if i == 0 else cfg.hidden, cfg.hidden) for i in range(cfg.n_layers))
        self.attention = AdditiveAttention(cfg.hidden, d_model, cfg.attention_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.pre_output = nn.Linear(cfg.hidden + d_model, d_model)
        self.output = nn.Linear(d_model, vocab_size)

    def init_state(self, memory, memory_mask) -> State:
        b, n, hdim = memory.size(0), self.cfg.n_layers, self.cfg.hidden
        zeros = memory.new_zeros(b, n, hdim)
        return {"h": zeros, "c": zeros.clone(), "context": memory.new_zeros(b, self.d_model),
                "projected": self.attention.memory(memory)}

    def _advance(self, tokens, state, memory, memory_mask):
        """One step without the output softmax: returns (pre-logits (B, V), state, weights (B, T))."""
        x = torch.cat([self.dropout(self.embed(tokens)), state["context"]], dim=-1)
        hs, cs = [], []
        for i, cell in enumerate(self.cells):
            h, c = cell(x, (state["h"][:, i], state["c"][:, i]))
            hs.append(h)
            cs.append(c)
            x = self.dropout(h)
        context, weights = self.attention(hs[-1], memory, state["projected"], memory_mask)
        out = torch.tanh(self.pre_output(torch.cat([hs[-1], context], dim=-1)))
        logits = self.output(self.dropout(out))
        new = {"h": torch.stack(hs, 1), "c": torch.stack(cs, 1), "context": context, "projected": state["projected"]}
        return logits, new, weights

    def forward(self, tokens, memory, memory_mask, return_attention: bool = False, memory_index=None):
        state = self.init_state(memory, memory_mask)
        if memory_index is not None:       # project each utterance once, then pick rows
            state = select_state(state, memory_index)
            memory, memory_mask = memory.index_select(0, memory_index), memory_mask.index_select(0, memory_index)
        logits, attn = [], []
        for u in range(tokens.size(1)):
            lg, state, w = self._advance(tokens[:, u], state, memory, memory_mask)
            logits.append(lg)
            attn.append(w)
        logits = torch.stack(logits, 1)
        return (logits, torch.stack(attn, 1)) if return_attention else logits

    def step(self, tokens, state, memory, memory_mask):
        logits, state, weights = self._advance(tokens, state, memory, memory_mask)
        return torch.log_softmax(logits.float(), dim=-1), state, weights
