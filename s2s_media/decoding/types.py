"""What a search returns: :class:`Decoded` per utterance, :class:`CTCHyp` per CTC hypothesis."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Decoded:
    """One utterance's result: unit ids, score, and (CTC methods) each token's frame and posterior.

    alternatives: when more than one hypothesis was asked for, the n best (this one first), each a
    :class:`Decoded` with its own score on the scale of the method's ranking and its ``confidence``
    (its share of the probability of all hypotheses the search ranked).
    """
    tokens: list[int]
    score: float
    frames: list[int] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)
    alternatives: list[Decoded] = field(default_factory=list)
    confidence: float | None = None


@dataclass
class CTCHyp:
    """One CTC hypothesis.

    tokens: the collapsed label sequence (no blanks).
    score: log-probability. For greedy search the score of the single best path; for the
        prefix beam searches the total over all alignments of ``tokens`` (the CTC score).
    frames: for each token, the frame of its peak (highest posterior) on the best alignment.
    probs: for each token, its posterior at that frame (a probability, not a log).
    lm_score: the fused language model's weighted score of ``tokens`` and the sentence end
        (0 without a language model).
    context_score: the hotword bonus ``tokens`` keep (:mod:`s2s_media.decoding.context`; 0 without
        hotwords). The searches rank by ``score + lm_score + context_score``.
    """

    tokens: list[int]
    score: float
    frames: list[int] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)
    lm_score: float = 0.0
    context_score: float = 0.0

    @property
    def total(self) -> float:
        """What the searches rank by."""
        return self.score + self.lm_score + self.context_score
