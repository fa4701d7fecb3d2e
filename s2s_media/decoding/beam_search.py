"""Batched attention beam search over the :class:`~s2s_media.models.decoder.Decoder` interface.

All ``batch x beam`` hypotheses advance together: one ``decoder.step`` call per output
position, with the state reordered by :func:`~s2s_media.arrays.take_rows`. A
hypothesis that emits ``eos`` leaves the beam and joins its utterance's finished list
(fairseq-style: only end-of-sentence candidates ranked within the top ``beam`` are accepted,
and the beam is refilled with the best continuations). An utterance is done when it has
``beam`` finished hypotheses; done utterances are dropped from the batch so the remaining
ones step faster. Greedy search is ``beam=1``.

The decoder is a torch :class:`~s2s_media.models.decoder.Decoder` or the ONNX runtime's
(:class:`~s2s_media.inference.onnx_model.OnnxDecoder`): tokens go to it as the kind of ``memory``
(:func:`~s2s_media.arrays.like`), and the search's own bookkeeping runs on numpy, so both runtimes
rank hypotheses with the same code and this module does not import torch.

Finished hypotheses are ranked by a length-normalised score, a small strategy object
(:class:`PowerLengthNorm`, :class:`GNMTLengthNorm`). Live hypotheses are always ranked by their
raw log-probability, as usual.
"""
from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from s2s_media.arrays import like, take_rows, to_numpy, topk
from s2s_media.text.tokenizer import EOS


@dataclass
class Hypothesis:
    """One finished hypothesis.

    tokens: the output tokens, without the prefix and without ``eos``.
    score: the length-normalised score the n-best list is ranked by.
    log_prob: the raw log-probability of ``tokens + [eos]`` given the prefix.
    attention: (len(tokens), T_valid) cross-attention of the step that predicted each token,
        over the utterance's valid (unmasked) memory frames, on the CPU, the kind of the memory (a tensor
        or numpy); ``None`` unless requested.
    """

    tokens: list[int]
    score: float
    log_prob: float
    attention: object = None


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


def _no_grad(memory):
    """torch's ``no_grad`` for a tensor ``memory`` (torch is imported, since the tensor exists)."""
    return contextlib.nullcontext() if isinstance(memory, np.ndarray) else sys.modules["torch"].no_grad()


def beam_search(decoder, memory, memory_mask, prefix: list[int], beam: int = 10, max_len: MaxLen = 200,
                length_penalty: float | LengthPenalty = 1.0, eos: int = EOS, return_attention: bool = False,
                nbest: int | None = None) -> list[list[Hypothesis]]:
    """Beam search for a batch of utterances (or images).

    decoder: a torch ``Decoder`` in eval mode, or the ONNX one (see the module docstring).
    memory: (B, T, D) encoder output; memory_mask: (B, T) bool, True on valid frames (tensors or numpy).
    prefix: the decoder start sequence, e.g. ``tokenizer.prefix("asr")``.
    beam: hypotheses kept per utterance; 1 is greedy search.
    max_len: most output tokens (``eos`` excluded), or a function of the utterance's number of
        valid memory frames, e.g. ``lambda t: t // 2 + 10``; at that length ``eos`` is forced.
    length_penalty: a float ``alpha`` for :class:`PowerLengthNorm`, or any :class:`LengthPenalty`.
    return_attention: also return each hypothesis' attention map (see :class:`Hypothesis`).
    nbest: hypotheses returned per utterance (default ``beam``).
    Returns per utterance its finished hypotheses, best first.
    """
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    if not prefix:
        raise ValueError("prefix must hold at least the start token")
    penalty: LengthPenalty = PowerLengthNorm(length_penalty) if isinstance(length_penalty, (int, float)) \
        else length_penalty
    with _no_grad(memory):
        return _search(decoder, memory, memory_mask, prefix, beam, max_len, penalty, eos, return_attention, nbest)


def _search(decoder, memory, memory_mask, prefix, beam, max_len, penalty, eos, return_attention, nbest):
    batch, time = memory.shape[:2]
    mask_np = to_numpy(memory_mask).astype(bool)
    valid = mask_np.sum(1).tolist()
    limits = [int(max_len(n)) if callable(max_len) else int(max_len) for n in valid]

    def step(tokens: np.ndarray, state, mem, mask):
        log_probs, state, attn = decoder.step(like(memory, tokens.astype(np.int64)), state, mem, mask)
        attn = to_numpy(attn).astype(np.float32) if return_attention else None
        return to_numpy(log_probs).astype(np.float32), state, attn

    # run the prefix once per utterance, then copy everything beam times
    state = decoder.init_state(memory, memory_mask)
    for tok in prefix:
        log_probs, state, attn = step(np.full(batch, tok), state, memory, memory_mask)
    rows = np.repeat(np.arange(batch), beam)
    state = take_rows(state, rows)
    mem, mask = take_rows(memory, rows), take_rows(memory_mask, rows)
    log_probs = log_probs[rows]
    attn = attn[rows] if attn is not None else None

    scores = np.full((batch, beam), -np.inf, np.float32)
    scores[:, 0] = 0.0  # only the first copy is live at the start, so no duplicates
    seqs = np.zeros((batch * beam, 0), np.int64)
    attn_hist = np.zeros((batch * beam, 0, time), np.float32) if return_attention else None
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    active = list(range(batch))  # utterance of each block of ``beam`` rows
    step_no = 0
    while True:
        n_act, vocab = len(active), log_probs.shape[-1]
        cand = scores.reshape(-1, 1) + log_probs  # (n_act * beam, vocab)
        forced = [i for i, u in enumerate(active) if step_no >= limits[u]]
        if forced:
            rows_f = (np.array(forced)[:, None] * beam + np.arange(beam)).reshape(-1)
            eos_col = cand[rows_f, eos].copy()
            cand[rows_f] = -np.inf
            cand[rows_f, eos] = eos_col
        top_scores, top_idx = topk(cand.reshape(n_act, beam * vocab), min(2 * beam, beam * vocab))
        src, tokens = top_idx // vocab, top_idx % vocab  # (n_act, 2 * beam)
        is_eos = tokens == eos

        # eos within the top ``beam`` candidates: a finished hypothesis
        for i, j in np.argwhere(is_eos[:, :beam] & np.isfinite(top_scores[:, :beam])).tolist():
            row = i * beam + int(src[i, j])
            u, lp = active[i], float(top_scores[i, j])
            seq = seqs[row].tolist()
            att = attn_hist[row][:, mask_np[u]] if attn_hist is not None else None
            if att is not None and not isinstance(memory, np.ndarray):
                att = like(memory, att).cpu()
            finished[u].append(Hypothesis(seq, penalty(lp, len(seq) + 1), lp, att))

        # the best ``beam`` non-eos candidates continue (there are always enough of them)
        order = np.argsort(is_eos.astype(np.int8), axis=1, kind="stable")[:, :beam]
        new_scores = np.take_along_axis(top_scores, order, 1)
        new_src, new_tok = np.take_along_axis(src, order, 1), np.take_along_axis(tokens, order, 1)
        best_live = new_scores[:, 0].tolist()
        keep = [i for i, u in enumerate(active)
                if len(finished[u]) < beam and step_no < limits[u] and best_live[i] > -math.inf]
        if not keep:
            break
        keep_a = np.array(keep)
        src_rows = ((keep_a * beam)[:, None] + new_src[keep_a]).reshape(-1)
        scores = new_scores[keep_a]
        next_tok = new_tok[keep_a].reshape(-1)
        seqs = np.concatenate([seqs[src_rows], next_tok[:, None]], axis=1)
        if attn_hist is not None:
            attn_hist = np.concatenate([attn_hist[src_rows], attn[src_rows][:, None]], axis=1)
        state = take_rows(state, src_rows)
        if len(keep) < n_act:  # drop the rows of done utterances
            mem_rows = ((keep_a * beam)[:, None] + np.arange(beam)).reshape(-1)
            mem, mask = take_rows(mem, mem_rows), take_rows(mask, mem_rows)
            active = [active[i] for i in keep]
        log_probs, state, attn = step(next_tok, state, mem, mask)
        step_no += 1

    n = nbest or beam
    return [sorted(f, key=lambda h: h.score, reverse=True)[:n] for f in finished]


def greedy_search(decoder, memory, memory_mask, prefix: list[int],
                  max_len: MaxLen = 200, eos: int = EOS,
                  return_attention: bool = False) -> list[Hypothesis]:
    """Greedy (argmax) decoding: :func:`beam_search` with ``beam=1``, one hypothesis per utterance.

    An utterance whose decoder gives ``eos`` zero probability everywhere gets an empty hypothesis
    scored ``-inf``.
    """
    out = beam_search(decoder, memory, memory_mask, prefix, beam=1, max_len=max_len, eos=eos,
                      return_attention=return_attention)
    return [h[0] if h else Hypothesis([], -math.inf, -math.inf) for h in out]
