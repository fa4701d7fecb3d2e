"""Ancestral sampling over the :class:`~s2s_media.models.decoder.Decoder` interface (SCST, diversity)."""
from __future__ import annotations

import torch

from s2s_media.models.decoder import Decoder
from s2s_media.text.tokenizer import EOS


@torch.no_grad()
def sample(decoder: Decoder, memory: torch.Tensor, memory_mask: torch.Tensor, prefix: list[int],
           max_len: int, temperature: float = 1.0, eos: int = EOS) -> list[list[int]]:
    """Draw one output per row of ``memory: (N, T, d)`` (mask ``(N, T)``) from the decoder's distribution
    (softened by ``temperature``), using torch's global generator.

    Returns N token lists without the prefix and without ``eos``; a row that reaches ``max_len``
    tokens stops there. To draw K per input, repeat the memory rows K times.
    """
    if not prefix:
        raise ValueError("prefix must hold at least the start token")
    n, device = memory.size(0), memory.device
    state = decoder.init_state(memory, memory_mask)
    for tok in prefix:
        log_probs, state, _ = decoder.step(torch.full((n,), tok, dtype=torch.long, device=device), state,
                                           memory, memory_mask)
    out = torch.full((n, max_len), eos, dtype=torch.long, device=device)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    for t in range(max_len):
        probs = torch.softmax(log_probs.float() / temperature, dim=-1)
        tok = torch.multinomial(probs, 1).squeeze(1).masked_fill(done, eos)
        out[:, t] = tok
        done |= tok == eos
        if bool(done.all()) or t == max_len - 1:
            break
        log_probs, state, _ = decoder.step(tok, state, memory, memory_mask)
    rows = []
    for row in out.tolist():
        rows.append(row[: row.index(eos)] if eos in row else row)
    return rows
