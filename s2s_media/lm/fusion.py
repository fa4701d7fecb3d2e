"""Shallow fusion: a language model's score added to a search, token by token."""
from __future__ import annotations

from dataclasses import dataclass

from s2s_media.lm.ngram import CACHE_SIZE, NgramLM


@dataclass
class LMFusion:
    """``weight * log P_lm(token | state) + bonus`` for every token a hypothesis emits.

    The bonus (a per-token insertion reward) offsets the LM's preference for short outputs.
    A state is the tuple of the last ``order - 1`` ids; ``()`` is a sentence start.
    """

    lm: NgramLM
    weight: float
    bonus: float = 0.0

    def __post_init__(self) -> None:
        self._keep = self.lm.order - 1
        self._cache: dict[tuple[int, ...], list[float]] = {}

    def next_scores(self, state: tuple[int, ...]) -> list[float]:
        """The fused score of every id after ``state`` (a list indexed by id; cached, do not modify)."""
        scores = self._cache.get(state)
        if scores is None:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            w, b = self.weight, self.bonus
            scores = self._cache[state] = [w * lp + b for lp in self.lm.log_probs(state)]
        return scores

    def advance(self, state: tuple[int, ...], token: int) -> tuple[int, ...]:
        """The state after ``token``."""
        return (state + (token,))[-self._keep:] if self._keep else ()

    def state(self, tokens) -> tuple[int, ...]:
        """The state after the sentence ``tokens`` (ids)."""
        return tuple(tokens[-self._keep:]) if self._keep else ()

    def end(self, state: tuple[int, ...]) -> float:
        """Score of ending the sentence after ``state``."""
        return self.weight * self.lm.log_probs(state)[self.lm.eos]
