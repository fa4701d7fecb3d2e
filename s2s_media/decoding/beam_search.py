"""Batched attention beam search over the :class:`~s2s_media.models.decoder.Decoder` interface.

All ``batch x beam`` hypotheses advance together: one ``decoder.step`` call per output
position, with the state reordered by :func:`~s2s_media.models.decoder.select_state`. A
hypothesis that emits ``eos`` leaves the beam and joins its utterance's finished list
(fairseq-style: only end-of-sentence candidates ranked within the top ``beam`` are accepted,
and the beam is refilled with the best continuations). An utterance is done when it has
``beam`` finished hypotheses; done utterances are dropped from the batch so the remaining
ones step faster. Greedy search is ``beam=1``.

Finished hypotheses are ranked by a length-normalised score, a small strategy object
(:class:`PowerLengthNorm`, :class:`GNMTLengthNorm`). Live hypotheses are always ranked by their
raw log-probability, as usual.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from s2s_media.models.decoder import Decoder, select_state
from s2s_media.text.tokenizer import EOS


@dataclass
class Hypothesis:
    """One finished hypothesis.

    tokens: the output tokens, without the prefix and without ``eos``.
    score: the length-normalised score the n-best list is ranked by.
    log_prob: the raw log-probability of ``tokens + [eos]`` given the prefix.
    attention: (len(tokens), T_valid) cross-attention of the step that predicted each token,
        over the utterance's valid (unmasked) memory frames, on the CPU; ``None`` unless requested.
    """

    tokens: list[int]
    score: float
    log_prob: float
    attention: torch.Tensor | None = None


class LengthPenalty(Protocol):
    """Turns a finished hypothesis' log-probability and length (tokens + eos) into its ranking score."""

    def __call__(self, log_prob: float, length: int) -> float: ...


@dataclass(frozen=True)
class PowerLengthNorm:
    """``log_prob / length ** alpha``: 0 keeps raw sums (favours short outputs), 1 is the per-token mean."""

    alpha: float = 1.0

    def __call__(self, log_prob: float, length: int) -> float:
        return log_prob / (length ** self.alpha) if self.alpha else log_prob


@dataclass(frozen=True)
class GNMTLengthNorm:
    """GNMT (Wu et al., 2016): ``log_prob / ((5 + length) / 6) ** alpha``."""

    alpha: float = 0.6

    def __call__(self, log_prob: float, length: int) -> float:
        return log_prob / (((5 + length) / 6) ** self.alpha)


MaxLen = int | Callable[[int], int]


@torch.no_grad()
def beam_search(decoder: Decoder, memory: torch.Tensor, memory_mask: torch.Tensor, prefix: list[int],
                beam: int = 10, max_len: MaxLen = 200, length_penalty: float | LengthPenalty = 1.0,
                eos: int = EOS, return_attention: bool = False,
                nbest: int | None = None) -> list[list[Hypothesis]]:
    """Beam search for a batch of utterances (or images).

    memory: (B, T, D) encoder output; memory_mask: (B, T) bool, True on valid frames.
    prefix: the decoder start sequence, e.g. ``tokenizer.prefix("asr")``.
    beam: hypotheses kept per utterance; 1 is greedy search.
    max_len: most output tokens (``eos`` excluded), or a function of the utterance's number of
        valid memory frames, e.g. ``lambda t: t // 2 + 10``; at that length ``eos`` is forced.
    length_penalty: a float ``alpha`` for :class:`PowerLengthNorm`, or any :class:`LengthPenalty`.
    return_attention: also return each hypothesis' attention map (see :class:`Hypothesis`).
    nbest: hypotheses returned per utterance (default ``beam``).
    Returns per utterance its finished hypotheses, best first. The decoder should be in eval mode.
    """
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    if not prefix:
        raise ValueError("prefix must hold at least the start token")
    penalty: LengthPenalty = PowerLengthNorm(length_penalty) if isinstance(length_penalty, (int, float)) \
        else length_penalty
    batch, time = memory.shape[:2]
    device = memory.device
    valid = [int(n) for n in memory_mask.sum(1).tolist()]
    limits = [int(max_len(n)) if callable(max_len) else int(max_len) for n in valid]

    # run the prefix once per utterance, then copy everything beam times
    state = decoder.init_state(memory, memory_mask)
    for tok in prefix:
        log_probs, state, attn = decoder.step(
            torch.full((batch,), tok, dtype=torch.long, device=device), state, memory, memory_mask)
    rows = torch.arange(batch, device=device).repeat_interleave(beam)
    state = select_state(state, rows)
    mem, mask = memory.index_select(0, rows), memory_mask.index_select(0, rows)
    log_probs, attn = log_probs.index_select(0, rows), attn.index_select(0, rows)

    scores = torch.full((batch, beam), -math.inf, device=device)
    scores[:, 0] = 0.0  # only the first copy is live at the start, so no duplicates
    seqs = torch.zeros((batch * beam, 0), dtype=torch.long, device=device)
    attn_hist = torch.zeros((batch * beam, 0, time), device=device) if return_attention else None
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    active = list(range(batch))  # utterance of each block of ``beam`` rows
    step = 0
    while True:
        n_act, vocab = len(active), log_probs.size(-1)
        cand = scores.reshape(-1, 1) + log_probs.float()  # (n_act * beam, vocab)
        forced = [i for i, u in enumerate(active) if step >= limits[u]]
        if forced:
            rows_f = (torch.tensor(forced, device=device)[:, None] * beam
                      + torch.arange(beam, device=device)).reshape(-1)
            eos_col = cand[rows_f, eos].clone()
            cand[rows_f] = -math.inf
            cand[rows_f, eos] = eos_col
        top_scores, top_idx = cand.view(n_act, beam * vocab).topk(min(2 * beam, beam * vocab), dim=1)
        src, tokens = top_idx // vocab, top_idx % vocab  # (n_act, 2 * beam)
        is_eos = tokens == eos

        # eos within the top ``beam`` candidates: a finished hypothesis
        ends = (is_eos[:, :beam] & torch.isfinite(top_scores[:, :beam])).nonzero().tolist()
        if ends:
            for i, j in ends:
                row = i * beam + int(src[i, j])
                u, lp = active[i], float(top_scores[i, j])
                seq = seqs[row].tolist()
                att = attn_hist[row][:, memory_mask[u]].cpu() if attn_hist is not None else None
                finished[u].append(Hypothesis(seq, penalty(lp, len(seq) + 1), lp, att))

        # the best ``beam`` non-eos candidates continue (there are always enough of them)
        order = torch.sort(is_eos.to(torch.int8), dim=1, stable=True).indices[:, :beam]
        new_scores, new_src, new_tok = top_scores.gather(1, order), src.gather(1, order), tokens.gather(1, order)
        best_live = new_scores[:, 0].tolist()
        keep = [i for i, u in enumerate(active)
                if len(finished[u]) < beam and step < limits[u] and best_live[i] > -math.inf]
        if not keep:
            break
        keep_t = torch.tensor(keep, device=device)
        src_rows = ((keep_t * beam)[:, None] + new_src.index_select(0, keep_t)).reshape(-1)
        scores = new_scores.index_select(0, keep_t)
        next_tok = new_tok.index_select(0, keep_t).reshape(-1)
        seqs = torch.cat([seqs.index_select(0, src_rows), next_tok[:, None]], dim=1)
        if attn_hist is not None:
            attn_hist = torch.cat([attn_hist.index_select(0, src_rows),
                                   attn.float().index_select(0, src_rows)[:, None]], dim=1)
        state = select_state(state, src_rows)
        if len(keep) < n_act:  # drop the rows of done utterances
            mem_rows = ((keep_t * beam)[:, None] + torch.arange(beam, device=device)).reshape(-1)
            mem, mask = mem.index_select(0, mem_rows), mask.index_select(0, mem_rows)
            active = [active[i] for i in keep]
        log_probs, state, attn = decoder.step(next_tok, state, mem, mask)
        step += 1

    n = nbest or beam
    return [sorted(f, key=lambda h: h.score, reverse=True)[:n] for f in finished]


def greedy_search(decoder: Decoder, memory: torch.Tensor, memory_mask: torch.Tensor, prefix: list[int],
                  max_len: MaxLen = 200, eos: int = EOS,
                  return_attention: bool = False) -> list[Hypothesis]:
    """Greedy (argmax) decoding: :func:`beam_search` with ``beam=1``, one hypothesis per utterance.

    An utterance whose decoder gives ``eos`` zero probability everywhere gets an empty hypothesis
    scored ``-inf``.
    """
    out = beam_search(decoder, memory, memory_mask, prefix, beam=1, max_len=max_len, eos=eos,
                      return_attention=return_attention)
    return [h[0] if h else Hypothesis([], -math.inf, -math.inf) for h in out]
