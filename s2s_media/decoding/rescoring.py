"""Attention rescoring: re-rank a CTC n-best list with the attention decoder (as in WeNet).

Every hypothesis of every utterance is teacher-forced through the decoder in one padded
batch; its attention score is the summed log-probability of ``hyp + [eos]`` after the prefix.
The decoder is a torch :class:`~s2s_media.models.decoder.Decoder` or the ONNX one: tokens go to it as the
kind of ``memory`` (:func:`~s2s_media.arrays.like`), its logits come back as numpy.
The final score is ``ctc_weight * ctc_score + (1 - ctc_weight) * att_score + lm_score + context_score``. Both
model scores are raw (not length-normalised) log-probabilities of the whole sequence, so they are
on the same scale and a length normalisation of one would only bias the mix. ``lm_score`` is
the weighted score of a language model fused into the CTC search (0 without one) and
``context_score`` the hotword bonus (0 without hotwords), kept as the search computed them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from s2s_media.arrays import like, log_softmax, to_numpy
from s2s_media.decoding.ctc import CTCHyp
from s2s_media.text.tokenizer import EOS, IGNORE_ID


@dataclass
class RescoredHyp(CTCHyp):
    """A :class:`CTCHyp` chosen by rescoring; ``score`` is the combined score, frames/probs are the CTC ones."""

    ctc_score: float = 0.0
    att_score: float = 0.0

    @property
    def total(self) -> float:
        """The combined score (it holds the LM and context scores already)."""
        return self.score


ROWS = 64   # hypotheses teacher-forced together: sorted by length first, so little padding


def attention_scores(decoder, memory, memory_mask, hyps: list[list[int]], utt: list[int], prefix: list[int],
                     eos: int = EOS) -> np.ndarray:
    """Summed decoder log-probabilities of ``hyps[i] + [eos]`` given ``prefix``, attending to ``memory[utt[i]]``.

    memory: (B, T, D); memory_mask: (B, T) bool (numpy, or torch for a torch decoder). Returns (len(hyps),)
    float32. Hypotheses go through the decoder in groups of similar length (``ROWS`` at a time), each
    group with only the memory rows it attends to.
    """
    out = np.zeros(len(hyps), np.float32)
    order = sorted(range(len(hyps)), key=lambda i: len(hyps[i]))
    for start in range(0, len(order), ROWS):
        rows = order[start:start + ROWS]
        used = sorted({utt[i] for i in rows})
        where = {u: j for j, u in enumerate(used)}
        pick = like(memory, np.array(used, np.int64))
        out[rows] = _scores(decoder, memory[pick], memory_mask[pick], [hyps[i] for i in rows],
                            [where[utt[i]] for i in rows], prefix, eos)
    return out


def _scores(decoder, memory, memory_mask, hyps: list[list[int]], utt: list[int], prefix: list[int],
            eos: int) -> np.ndarray:
    """:func:`attention_scores` of one group, in one padded decoder pass."""
    n, p = len(hyps), len(prefix)
    longest = max((len(h) for h in hyps), default=0)
    tokens = np.full((n, p + longest), eos, np.int64)  # padding: any valid id
    targets = np.full((n, longest + 1), IGNORE_ID, np.int64)
    tokens[:, :p] = prefix
    for i, h in enumerate(hyps):
        tokens[i, p:p + len(h)] = h
        targets[i, :len(h) + 1] = h + [eos]
    logits = decoder(like(memory, tokens), memory, memory_mask, memory_index=like(memory, np.array(utt, np.int64)))
    # position p-1 (the last prefix token) predicts the first output token
    log_probs = log_softmax(to_numpy(logits)[:, p - 1:].astype(np.float32, copy=False))
    picked = np.take_along_axis(log_probs, np.maximum(targets, 0)[..., None], -1)[..., 0]
    return np.where(targets == IGNORE_ID, 0.0, picked).sum(axis=1)


def attention_rescoring(decoder, memory, memory_mask,
                        nbest: list[list[CTCHyp]], prefix: list[int], ctc_weight: float = 0.5,
                        eos: int = EOS) -> list[RescoredHyp]:
    """Pick the best hypothesis of each utterance's CTC n-best by CTC + attention score.

    memory: (B, T, D) encoder output; memory_mask: (B, T) bool; nbest: B lists of
    :class:`CTCHyp` (e.g. from :func:`~s2s_media.decoding.ctc.ctc_prefix_beam_search_batch`);
    prefix: the decoder start sequence. ``ctc_weight`` 1 keeps the CTC ranking, 0 uses the decoder only.
    Returns one :class:`RescoredHyp` per utterance (an empty hypothesis scored ``-inf`` for an empty
    n-best list). The decoder should be in eval mode.
    """
    return [r[0] if r else RescoredHyp([], float("-inf"))
            for r in attention_rescoring_ranked(decoder, memory, memory_mask, nbest, prefix, ctc_weight, eos)]


def attention_rescoring_ranked(decoder, memory, memory_mask,
                               nbest: list[list[CTCHyp]], prefix: list[int], ctc_weight: float = 0.5,
                               eos: int = EOS) -> list[list[RescoredHyp]]:
    """:func:`attention_rescoring` keeping every hypothesis: per utterance its n-best re-ranked, best first."""
    if len(nbest) != memory.shape[0]:
        raise ValueError(f"got {len(nbest)} n-best lists for a batch of {memory.shape[0]}")
    if not 0.0 <= ctc_weight <= 1.0:
        raise ValueError(f"ctc_weight must be in [0, 1], got {ctc_weight}")
    flat = [(b, h) for b, hyps in enumerate(nbest) for h in hyps]
    ranked: list[list[RescoredHyp]] = [[] for _ in nbest]
    if not flat:
        return ranked
    att = attention_scores(decoder, memory, memory_mask, [h.tokens for _, h in flat],
                           [b for b, _ in flat], prefix, eos).tolist()
    for (b, h), a in zip(flat, att):
        # a weight of exactly 0 or 1 ignores the other score, even when it is -inf
        score = (h.score if ctc_weight == 1.0 else a if ctc_weight == 0.0
                 else ctc_weight * h.score + (1.0 - ctc_weight) * a) + h.lm_score + h.context_score
        ranked[b].append(RescoredHyp(list(h.tokens), score, list(h.frames), list(h.probs), h.lm_score,
                                     h.context_score, ctc_score=h.score, att_score=a))
    for r in ranked:
        r.sort(key=lambda h: h.score, reverse=True)     # stable: ties keep the CTC order
    return ranked
