"""Attention rescoring: re-rank a CTC n-best list with the attention decoder (as in WeNet).

Every hypothesis of every utterance is teacher-forced through the decoder in one padded
batch; its attention score is the summed log-probability of ``hyp + [eos]`` after the prefix.
The final score is ``ctc_weight * ctc_score + (1 - ctc_weight) * att_score + lm_score + context_score``. Both
model scores are raw (not length-normalised) log-probabilities of the whole sequence, so they are
on the same scale and a length normalisation of one would only bias the mix. ``lm_score`` is
the weighted score of a language model fused into the CTC search (0 without one) and
``context_score`` the hotword bonus (0 without hotwords), kept as the search computed them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from s2s_media.decoding.ctc import CTCHyp
from s2s_media.models.decoder import Decoder
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


@torch.no_grad()
def attention_scores(decoder: Decoder, memory: torch.Tensor, memory_mask: torch.Tensor,
                     hyps: list[list[int]], utt: list[int], prefix: list[int], eos: int = EOS) -> torch.Tensor:
    """Summed decoder log-probabilities of ``hyps[i] + [eos]`` given ``prefix``, attending to ``memory[utt[i]]``.

    memory: (B, T, D); memory_mask: (B, T) bool. Returns (len(hyps),) float on memory's device.
    Hypotheses go through the decoder in groups of similar length (``ROWS`` at a time), each
    group with only the memory rows it attends to.
    """
    device = memory.device
    out = torch.zeros(len(hyps), device=device)
    order = sorted(range(len(hyps)), key=lambda i: len(hyps[i]))
    for start in range(0, len(order), ROWS):
        rows = order[start:start + ROWS]
        used = sorted({utt[i] for i in rows})
        where = {u: j for j, u in enumerate(used)}
        pick = torch.tensor(used, dtype=torch.long, device=device)
        out[torch.tensor(rows, device=device)] = _scores(
            decoder, memory.index_select(0, pick), memory_mask.index_select(0, pick), [hyps[i] for i in rows],
            [where[utt[i]] for i in rows], prefix, eos)
    return out


def _scores(decoder: Decoder, memory: torch.Tensor, memory_mask: torch.Tensor, hyps: list[list[int]],
            utt: list[int], prefix: list[int], eos: int) -> torch.Tensor:
    """:func:`attention_scores` of one group, in one padded decoder pass."""
    device = memory.device
    n, p = len(hyps), len(prefix)
    longest = max((len(h) for h in hyps), default=0)
    tokens = torch.full((n, p + longest), eos, dtype=torch.long)  # padding: any valid id
    targets = torch.full((n, longest + 1), IGNORE_ID, dtype=torch.long)
    tokens[:, :p] = torch.tensor(prefix, dtype=torch.long)
    for i, h in enumerate(hyps):
        tokens[i, p:p + len(h)] = torch.tensor(h, dtype=torch.long)
        targets[i, :len(h) + 1] = torch.tensor(h + [eos], dtype=torch.long)
    tokens, targets = tokens.to(device), targets.to(device)
    index = torch.tensor(utt, dtype=torch.long, device=device)
    logits = decoder(tokens, memory, memory_mask, memory_index=index)
    # position p-1 (the last prefix token) predicts the first output token
    log_probs = logits[:, p - 1:].float().log_softmax(dim=-1)
    picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return picked.masked_fill(targets == IGNORE_ID, 0.0).sum(dim=1)


@torch.no_grad()
def attention_rescoring(decoder: Decoder, memory: torch.Tensor, memory_mask: torch.Tensor,
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


@torch.no_grad()
def attention_rescoring_ranked(decoder: Decoder, memory: torch.Tensor, memory_mask: torch.Tensor,
                               nbest: list[list[CTCHyp]], prefix: list[int], ctc_weight: float = 0.5,
                               eos: int = EOS) -> list[list[RescoredHyp]]:
    """:func:`attention_rescoring` keeping every hypothesis: per utterance its n-best re-ranked, best first."""
    if len(nbest) != memory.size(0):
        raise ValueError(f"got {len(nbest)} n-best lists for a batch of {memory.size(0)}")
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
