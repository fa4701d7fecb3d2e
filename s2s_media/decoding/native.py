"""Native CTC prefix beam search: flashlight-text's lexicon-free decoder (C++) over our tokens.

The decoder (``flashlight.lib.text.decoder.LexiconFreeDecoder``) runs online: ``decode_begin``, then
``decode_step`` frame by frame as chunks arrive, so one :class:`NativeCTCSearch` serves a whole
utterance or a streaming segment. Its hypotheses are (prefix, ends in blank?) states merged by
log-add, which is the prefix beam search of :mod:`s2s_media.decoding.ctc` with each prefix split in
two; the beam therefore holds ``2 * beam`` states, and :meth:`NativeCTCSearch.nbest` merges the
two halves of every prefix again and adds the language model's sentence end.

Pruning is done on the posteriors before they reach the decoder, so it is the same as the Python
search's: a frame is reduced to its ``beam`` most likely ids whose posterior is at least
``token_floor`` (blank always stays), and a run of frames whose blank posterior exceeds
``blank_skip`` becomes one blank frame (its log-probabilities summed: every hypothesis just absorbs
it, so its order is unchanged). Pruned ids get ``-inf``, which the decoder's threshold rejects.

The language model is either
- our n-gram through flashlight's custom-LM interface (:class:`FusionLM`: ``weight * log P + bonus``
  per token, exactly as the Python search fuses it; each score is a call back into Python), or
- an ARPA file in flashlight's KenLM (:class:`KenLMFusion`, all native). Our n-gram written as ARPA
  (:mod:`s2s_media.lm.arpa`) scores exactly as the n-gram does, but the decoder has no per-token
  bonus and KenLM refuses positive log-probabilities, so a bonus baked into the file is capped
  where it would make one: close to the fused score, not equal (figures in ``docs/benchmarks.md``).

Hotwords and phrase grammars (:mod:`s2s_media.decoding.context`) go through the same custom-LM
interface (:class:`FusionLM` with a context, with or without our n-gram): every token the decoder
considers is scored by a call back into Python, as for the exact fusion. Without a context
nothing changes. The searches of :mod:`s2s_media.decoding.search` do not use it: with hotwords the
partial matches crowd unbiased prefixes out of flashlight's beam (distractor WER +5.4 points,
``docs/benchmarks.md``), so a context always runs in the Python search
(:func:`~s2s_media.decoding.search.ctc_search_for`); it stays for direct use and that comparison.
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager
from itertools import groupby
from pathlib import Path

import numpy as np
from flashlight.lib.text.decoder.kenlm import KenLM
from flashlight.lib.text.dictionary import Dictionary
from flashlight.lib.text.decoder import (LM, CriterionType, LexiconFreeDecoder, LexiconFreeDecoderOptions, LMState,
                                         ZeroLM)

from s2s_media.arrays import to_numpy
from s2s_media.decoding.context import Context
from s2s_media.decoding.types import CTCHyp
from s2s_media.lm.arpa import LOG10, check_arpa_covers
from s2s_media.lm.fusion import LMFusion
from s2s_media.text.tokenizer import BLANK

THRESHOLD = 1e30        # the decoder's score window: only -inf (a pruned id) falls outside it


class FusionLM(LM):
    """flashlight's LM interface over :class:`~s2s_media.lm.LMFusion` and/or a context (hotwords, a
    grammar), decoder ``lm_weight`` 1: a token's score is the fused n-gram's plus the context's.

    A flashlight state is a node of a tree of prefixes (``LMState.child``); this maps each node to
    our n-gram state and context state. ``allowed`` holds the ids the current frame may emit: the
    decoder asks for the score of every id it considers, and for the others no state is made.
    """

    def __init__(self, fusion: LMFusion | None, context: Context | None = None):
        LM.__init__(self)
        self.fusion, self.context = fusion, context
        self.allowed: frozenset[int] = frozenset()
        self._states: dict[LMState, tuple[tuple[int, ...], object]] = {}

    def start(self, start_with_nothing: bool) -> LMState:
        state = LMState()
        self._states = {state: ((), self.context.start if self.context is not None else None)}
        return state

    def score(self, state: LMState, token: int) -> tuple[LMState, float]:
        if token not in self.allowed:
            return state, 0.0                       # its emission is -inf: the candidate is dropped
        ngram, ctx = self._states[state]
        child = state.child(token)
        fusion, context = self.fusion, self.context
        score = fusion.next_scores(ngram)[token] if fusion is not None else 0.0
        if context is not None:
            ctx_next, bonus = context.step(ctx, token)
            score += bonus
        if child not in self._states:
            self._states[child] = (fusion.advance(ngram, token) if fusion is not None else (),
                                   ctx_next if context is not None else None)
        return child, score

    def finish(self, state: LMState) -> tuple[LMState, float]:
        ngram, ctx = self._states[state]
        score = self.fusion.end(ngram) if self.fusion is not None else 0.0
        if self.context is not None:
            score += self.context.final(ctx)
        return state.child(-1), score

    def end(self, tokens) -> float:
        """The score of ending after the sentence ``tokens``: the n-gram's sentence end and what the
        context adds or gives back there."""
        score = self.fusion.end(self.fusion.state(tokens)) if self.fusion is not None else 0.0
        if self.context is not None:
            ctx = self.context.start
            for u in tokens:
                ctx, _ = self.context.step(ctx, u)
            score += self.context.final(ctx)
        return score


@contextmanager
def _stderr_to_null():
    """Silence what native code writes to file descriptor 2."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class KenLMFusion:
    """A KenLM model fused as ``weight * ln P`` per token: an ARPA file read by flashlight's ``KenLM``.

    path: the ARPA file; words: the ARPA word of every token id (:func:`~s2s_media.lm.arpa.arpa_words`).
    KenLM scores in log10, so the decoder's weight is ``weight * ln 10``. An insertion bonus must be in
    the file already (``write_arpa(token_bonus=...)``).
    """

    def __init__(self, path: str | Path, words: list[str], weight: float):
        check_arpa_covers(path, words, skip=[w for w in words if w.startswith("<")])
        with _stderr_to_null():                     # KenLM reports its loading on stderr
            self.kenlm = KenLM(str(path), Dictionary(words))
        self.weight = weight * LOG10

    def end(self, tokens) -> float:
        """The weighted score of the sentence end after ``tokens``."""
        state = self.kenlm.start(False)
        for u in tokens:
            state, _ = self.kenlm.score(state, u)
        return self.weight * self.kenlm.finish(state)[1]


class NativeCTCSearch:
    """Incremental CTC prefix beam search over one utterance, in flashlight-text.

    vocab: number of ids of the CTC head. beam, blank_skip, token_floor, blank, lm, context: as for
    :class:`s2s_media.decoding.ctc.CTCPrefixBeamSearch` (``None`` disables a pruning). A context goes
    with our n-gram or no LM, not with :class:`KenLMFusion`.

    >>> search = NativeCTCSearch(vocab=32, beam=10)
    >>> for chunk in chunks:            # each (t, vocab) log-posteriors
    ...     search.advance(chunk)
    >>> best = search.nbest()[0]         # frames are counted from the first chunk
    """

    def __init__(self, vocab: int, beam: int = 10, blank_skip: float | None = 0.999, blank: int = BLANK,
                 lm: LMFusion | KenLMFusion | None = None, token_floor: float | None = None,
                 context: Context | None = None):
        if beam < 1:
            raise ValueError(f"beam must be >= 1, got {beam}")
        if blank_skip is not None and not 0.0 < blank_skip <= 1.0:
            raise ValueError(f"blank_skip must be a probability in (0, 1] or None, got {blank_skip}")
        if token_floor is not None and not 0.0 <= token_floor < 1.0:
            raise ValueError(f"token_floor must be a probability in [0, 1) or None, got {token_floor}")
        self.vocab, self.beam, self.blank, self.lm = vocab, beam, blank, lm
        self.skip_logp = math.log(blank_skip) if blank_skip is not None else math.inf
        self.floor_logp = math.log(token_floor) if token_floor else -math.inf
        self.top = min(beam, vocab)
        if isinstance(lm, KenLMFusion):
            if context is not None:
                raise ValueError("hotwords and phrase lists go with our n-gram or no LM, not with a KenLM file")
            self._lm, self._weight, self._end = lm.kenlm, lm.weight, lm.end
        elif lm is not None or context is not None:
            fused = FusionLM(lm, context)
            self._lm, self._weight, self._end = fused, 1.0, fused.end
        else:
            self._lm, self._weight, self._end = ZeroLM(), 0.0, lambda tokens: 0.0
        opts = LexiconFreeDecoderOptions(beam_size=2 * beam, beam_size_token=min(self.top + 1, vocab),
                                         beam_threshold=THRESHOLD, lm_weight=self._weight, sil_score=0.0, log_add=True,
                                         criterion_type=CriterionType.CTC)
        self._decoder = LexiconFreeDecoder(opts, self._lm, blank, blank, [])
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next ``advance`` starts a new utterance at frame 0."""
        self._decoder.decode_begin()
        self.frames = 0                                   # frames fed since the reset
        self._where = np.zeros(64, dtype=np.int64)        # per decoder frame: the frame it is
        self._rows = np.zeros((64, self.vocab), dtype=np.float32)   # per decoder frame: pruned log-posteriors
        self._fed = 0                                     # decoder frames
        self._offset = 0.0                   # blank log-probability of skipped frames not fed to the decoder
        self._skipping = False               # the last decoder frame was a skipped (blank) frame

    def advance(self, log_probs) -> None:
        """Consume the next frames. log_probs: (t, vocab) log-posteriors (a tensor or an array)."""
        lp = to_numpy(log_probs).astype(np.float32, copy=False)
        if lp.ndim != 2 or lp.shape[1] != self.vocab:
            raise ValueError(f"expected log_probs of shape (time, {self.vocab}), got {tuple(lp.shape)}")
        rows = self._prune(lp)
        skip = lp[:, self.blank] > self.skip_logp
        # a skipped frame right after another is not fed: every hypothesis would absorb its blank alike
        follows = np.concatenate([[self._skipping], skip[:-1]]) if len(lp) else skip
        fed = ~(skip & follows)
        self._offset += float(lp[skip & follows, self.blank].sum())
        rows[skip] = -np.inf
        rows[skip, self.blank] = lp[skip, self.blank]
        rows, where = rows[fed], np.flatnonzero(fed) + self.frames
        self.frames += len(lp)
        if len(skip):
            self._skipping = bool(skip[-1])
        start = self._grow(len(rows))
        self._rows[start:start + len(rows)] = rows
        self._where[start:start + len(rows)] = where
        fusion = self._lm if isinstance(self._lm, FusionLM) else None
        if fusion is None:                                # all native: the whole chunk in one call
            self._decoder.decode_step(self._rows[start:].ctypes.data, len(rows), self.vocab)
            return
        allowed = rows > -np.inf
        allowed[:, self.blank] = False
        for t in range(len(rows)):
            fusion.allowed = frozenset(np.flatnonzero(allowed[t]).tolist())
            self._decoder.decode_step(self._rows[start + t:].ctypes.data, 1, self.vocab)

    def _grow(self, n: int) -> int:
        """Room for ``n`` more decoder frames; returns where they start."""
        start, need = self._fed, self._fed + n
        if need > len(self._rows):
            size = max(need, 2 * len(self._rows))
            self._rows = np.concatenate([self._rows[:start], np.zeros((size - start, self.vocab), np.float32)])
            self._where = np.concatenate([self._where[:start], np.zeros(size - start, np.int64)])
        self._fed = need
        return start

    def nbest(self, n: int | None = None) -> list[CTCHyp]:
        """The current hypotheses, best first (at most ``n``, default all ``beam``).

        ``score`` is the prefix's total CTC log-probability, ``lm_score`` its fused LM score with the
        sentence end; frames count from the first frame fed since the last :meth:`reset`.
        """
        merged: dict[tuple[int, ...], list] = {}      # prefix -> [log-add score, LM score, best path, its score]
        for r in self._decoder.get_all_final_hypothesis():
            path = r.tokens[1:]                      # [0] is the start state
            tokens = tuple(u for u, _ in groupby(path) if u != self.blank)
            m = merged.get(tokens)
            if m is None:
                merged[tokens] = [r.score, r.lmScore, path, r.score]
            else:
                hi, lo = max(m[0], r.score), min(m[0], r.score)
                m[0] = hi + math.log1p(math.exp(lo - hi)) if lo > -math.inf else hi
                if r.score > m[3]:
                    m[2], m[3] = path, r.score
        ranked = sorted(((m[0] + self._end(tokens), tokens, m) for tokens, m in merged.items()),
                        key=lambda x: x[0], reverse=True)
        out = []
        for total, tokens, (score, lm_raw, path, _) in ranked[:self.beam if n is None else n]:
            if total == -math.inf:
                continue                             # a grammar does not accept it here
            frames, probs = self._peaks(path)
            lm_score = self._weight * lm_raw
            out.append(CTCHyp(list(tokens), score - lm_score + self._offset, frames, probs,
                              total - score + lm_score))
        return out

    def _peaks(self, path: list[int]) -> tuple[list[int], list[float]]:
        """Per token of a frame path: the frame of its peak posterior within its run, and that posterior."""
        p = np.asarray(path, dtype=np.int64)
        if not len(p):
            return [], []
        onset = np.concatenate([[True], p[1:] != p[:-1]])
        runs = np.cumsum(onset) - 1                  # run index of every frame
        lp = self._rows[np.arange(len(p)), p]
        order = np.lexsort((-lp, runs))              # by run, best posterior first
        first = np.concatenate([[True], runs[order][1:] != runs[order][:-1]])
        peak = order[first]                          # per run, the frame of its peak
        peak = peak[p[peak] != self.blank]
        frames, probs = self._where[peak].tolist(), np.exp(lp[peak].astype(np.float64)).tolist()
        return frames, probs

    def _prune(self, lp: np.ndarray) -> np.ndarray:
        """-inf for the ids a frame does not try: outside its top ``beam`` or below the floor (blank stays)."""
        out = np.full_like(lp, -np.inf)
        if self.top < self.vocab:
            top = np.argpartition(-lp, self.top - 1, axis=1)[:, :self.top]
        else:
            top = np.broadcast_to(np.arange(self.vocab), lp.shape)
        rows = np.arange(len(lp))[:, None]
        kept = lp[rows, top]
        out[rows, top] = np.where(kept >= self.floor_logp, kept, -np.inf)
        out[:, self.blank] = lp[:, self.blank]
        return out


def native_nbest_batch(log_probs, lengths=None, beam: int = 10, blank_skip: float | None = 0.999,
                       blank: int = BLANK, lm: LMFusion | None = None,
                       token_floor: float | None = None, context: Context | None = None) -> list[list[CTCHyp]]:
    """:class:`NativeCTCSearch` over a batch: one n-best list per utterance.

    log_probs: (batch, time, vocab) log-posteriors (a tensor or an array); lengths: (batch,) valid
    frames (all when None).
    """
    lp = to_numpy(log_probs).astype(np.float32, copy=False)
    batch, time, vocab = lp.shape
    lens = [time] * batch if lengths is None else [min(int(n), time) for n in to_numpy(lengths).tolist()]
    search = NativeCTCSearch(vocab, beam, blank_skip, blank, lm, token_floor, context)
    out = []
    for b in range(batch):
        search.reset()
        search.advance(lp[b, :lens[b]])
        out.append(search.nbest())
    return out
