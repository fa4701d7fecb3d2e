"""CTC decoding: greedy and prefix beam search, with per-token frames and posteriors.

Both searches take log-posteriors ``log_probs: (..., time, vocab)`` (log-softmax of the CTC
head) and return :class:`CTCHyp` objects that carry, next to the tokens, the frame and the
posterior of every emitted token on its best alignment. Word timestamps and confidences
are built from those later.

The prefix beam search is the standard log-space algorithm (as in WeNet/ESPnet): each prefix
keeps the probability of all alignments ending in blank (``pb``) and in its last token
(``pnb``). :class:`CTCPrefixBeamSearch` holds that state between calls to ``advance`` so a
streaming session can feed it chunk by chunk; the one-shot functions are built on it.
"""
from __future__ import annotations

import heapq
import math

import numpy as np

from s2s_media.arrays import to_numpy, topk
from s2s_media.decoding.context import Context
from s2s_media.decoding.types import CTCHyp
from s2s_media.lm.fusion import LMFusion
from s2s_media.text.tokenizer import BLANK

NEG_INF = float("-inf")


def _logaddexp(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    if b == NEG_INF:
        return a
    return a + math.log1p(math.exp(b - a))


def _as_float(x) -> np.ndarray:
    """A numpy array (from numpy or torch) in float32, unless already float64 (kept for exact tests)."""
    x = to_numpy(x)
    return x if x.dtype == np.float64 else x.astype(np.float32, copy=False)


def ctc_greedy(log_probs, lengths=None,
               blank: int = BLANK) -> list[CTCHyp]:
    """Best-path decoding: argmax per frame, collapse repeats, drop blanks.

    log_probs: (batch, time, vocab) log-posteriors; lengths: (batch,) valid frames (all when None).
    Returns one :class:`CTCHyp` per utterance; ``score`` is the log-probability of the best path,
    ``frames``/``probs`` give each token's peak frame within its run of repeated frames.
    """
    batch, time, _ = log_probs.shape
    lp = _as_float(log_probs)
    ids = lp.argmax(-1)
    best = np.take_along_axis(lp, ids[..., None], -1)[..., 0]
    lens = [time] * batch if lengths is None else [int(n) for n in to_numpy(lengths).tolist()]
    best_l, ids_l = best.tolist(), ids.tolist()
    hyps = []
    for b in range(batch):
        n = min(lens[b], time)
        tokens: list[int] = []
        frames: list[int] = []
        logps: list[float] = []
        prev = blank
        for t in range(n):
            u, lp = ids_l[b][t], best_l[b][t]
            if u != blank:
                if u != prev:
                    tokens.append(u)
                    frames.append(t)
                    logps.append(lp)
                elif lp > logps[-1]:  # same run: move to the peak
                    frames[-1], logps[-1] = t, lp
            prev = u
        hyps.append(CTCHyp(tokens, float(sum(best_l[b][:n])), frames, [math.exp(p) for p in logps]))
    return hyps


# A token path on the best alignment, newest token first: (peak frame, log-posterior, rest) or None.
_Path = tuple | None


def _unroll(path: _Path) -> tuple[list[int], list[float]]:
    frames, logps = [], []
    while path is not None:
        frames.append(path[0])
        logps.append(path[1])
        path = path[2]
    return frames[::-1], logps[::-1]


class _Node:
    """A prefix as a persistent linked list.

    Extending a prefix shares its parent, hashing is O(1) (the hash is built incrementally) and
    equality compares content, stopping at the first shared ancestor; tuples would cost O(length)
    for every extension, which made long utterances quadratic.

    With a fused language model, ``lm`` is its score of the prefix (set when the prefix enters a
    beam), ``lm_state`` its state and ``lm_next`` its scores of every next token (both computed
    the first time they are needed). With a context (hotwords, a grammar), ``ctx`` is its score
    of the prefix and ``ctx_state`` its state, set when the prefix is made (and never without one).
    """

    __slots__ = ("parent", "token", "length", "hash", "lm", "lm_state", "lm_next", "ctx", "ctx_state")

    def __init__(self, parent: _Node | None = None, token: int = -1):
        self.parent, self.token = parent, token
        self.length = 0 if parent is None else parent.length + 1
        self.hash = 0 if parent is None else hash((parent.hash, token))
        self.lm: float | None = 0.0 if parent is None else None
        self.lm_state: tuple[int, ...] | None = () if parent is None else None
        self.lm_next: list[float] | None = None

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        a, b = self, other
        while a is not b:
            if not isinstance(b, _Node) or a.hash != b.hash or a.token != b.token or a.length != b.length:
                return False
            a, b = a.parent, b.parent
        return True

    def tokens(self) -> list[int]:
        out, node = [], self
        while node.parent is not None:
            out.append(node.token)
            node = node.parent
        return out[::-1]


class _Prefix:
    """Scores of one prefix: totals and best (Viterbi) alignments ending in blank / in its last token.

    ``path_*`` is the token path of the best alignment of each kind; for the non-blank kind its
    newest entry follows the current run of the last token and moves to that run's peak.
    """

    __slots__ = ("pb", "pnb", "vb", "vnb", "path_b", "path_nb")

    def __init__(self) -> None:
        self.pb = self.pnb = self.vb = self.vnb = NEG_INF
        self.path_b: _Path = None
        self.path_nb: _Path = None

    @property
    def total(self) -> float:
        return _logaddexp(self.pb, self.pnb)

    def best_path(self) -> tuple[float, _Path]:
        if self.vb >= self.vnb:
            return self.vb, self.path_b
        return self.vnb, self.path_nb


class CTCPrefixBeamSearch:
    """Incremental CTC prefix beam search over one utterance.

    beam: prefixes kept after every frame; also the number of tokens tried per frame (top-k).
    blank_skip: frames whose blank posterior exceeds this probability only extend prefixes with
        blank (no token is tried), which makes silence nearly free. ``None`` disables it and, with a
        beam at least as large as the number of prefixes, makes the search exact.
    token_floor: tokens whose posterior in a frame is below this probability are not tried
        there (``None``: every token of the top-k is). With a wide beam most of the top-k are
        hopeless; at 3e-3 the searches of ``docs/benchmarks.md`` ran ~20 % faster for the same WER.
    blank: the blank id.
    lm: a language model fused into the search (:class:`~s2s_media.lm.LMFusion`); prefixes are
        then ranked and pruned by CTC score plus its score.
    context: hotwords (:class:`~s2s_media.decoding.context.ContextGraph`) or a phrase grammar
        (:class:`~s2s_media.decoding.context.Grammar`); its score is added to the ranking too, and a
        prefix it forbids (``-inf``) is never kept. The beam then keeps the ``beam`` best prefixes by
        the biased score and the ``beam`` best without it (at most twice as many): a hotword's partial
        match must not crowd out what the unbiased search would have kept. None costs nothing.

    >>> search = CTCPrefixBeamSearch(beam=10)
    >>> for chunk in chunks:            # each (t, vocab) log-posteriors
    ...     search.advance(chunk)
    >>> best = search.nbest()[0]         # frames are counted from the first chunk
    """

    def __init__(self, beam: int = 10, blank_skip: float | None = 0.999, blank: int = BLANK,
                 lm: LMFusion | None = None, token_floor: float | None = None, context: Context | None = None):
        if beam < 1:
            raise ValueError(f"beam must be >= 1, got {beam}")
        if blank_skip is not None and not 0.0 < blank_skip <= 1.0:
            raise ValueError(f"blank_skip must be a probability in (0, 1] or None, got {blank_skip}")
        self.beam = beam
        self.context = context
        self.blank = blank
        self.blank_skip_logp = NEG_INF if blank_skip is None else math.log(blank_skip)
        self.skip_enabled = blank_skip is not None
        if token_floor is not None and not 0.0 <= token_floor < 1.0:
            raise ValueError(f"token_floor must be a probability in [0, 1) or None, got {token_floor}")
        self.token_floor_logp = math.log(token_floor) if token_floor else NEG_INF
        self.lm = lm
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next ``advance`` starts a new utterance at frame 0."""
        empty = _Prefix()
        empty.pb = empty.vb = 0.0
        root = _Node()
        if self.context is not None:            # set only with a context: no cost without one
            root.ctx, root.ctx_state = 0.0, self.context.start
        self.hyps: dict[_Node, _Prefix] = {root: empty}
        self.frames = 0

    def advance(self, log_probs) -> None:
        """Consume the next frames. log_probs: (t, vocab) log-posteriors (numpy or torch)."""
        lp = _as_float(log_probs)
        if lp.ndim != 2:
            raise ValueError(f"expected log_probs of shape (time, vocab), got {tuple(lp.shape)}")
        if lp.shape[0] == 0:
            return
        top_lp, top_ids = topk(lp, self.beam)
        self.advance_pruned(top_lp.tolist(), top_ids.tolist(), lp[:, self.blank].tolist())

    def advance_pruned(self, top_logps: list[list[float]], top_ids: list[list[int]],
                       blank_logps: list[float]) -> None:
        """Consume frames already reduced to their top-k tokens (lists of length t, k and t).

        This is what :meth:`advance` calls; the batched search computes the top-k of a whole
        batch in one call and feeds each utterance here.
        """
        for lps, ids, lb in zip(top_logps, top_ids, blank_logps):
            if self.skip_enabled and lb > self.blank_skip_logp:
                self._blank_frame(lb)
            else:
                self._frame(self.frames, lps, ids, lb)
            self.frames += 1

    def _blank_frame(self, lb: float) -> None:
        """A frame that is (almost surely) blank: every prefix just absorbs it; order is unchanged."""
        for h in self.hyps.values():
            total = h.total
            h.vb, h.path_b = h.best_path()
            h.vb += lb
            h.pb, h.pnb, h.vnb, h.path_nb = total + lb, NEG_INF, NEG_INF, None

    def _frame(self, t: int, lps: list[float], ids: list[int], lb: float) -> None:
        blank = self.blank
        nxt: dict[_Node, _Prefix] = {}

        lm, floor, context = self.lm, self.token_floor_logp, self.context

        def get(node: _Node) -> _Prefix:
            h = nxt.get(node)
            if h is None:
                h = nxt[node] = _Prefix()
                if lm is not None and node.lm is None:     # a new prefix: score its last token
                    parent = node.parent
                    if parent.lm_next is None:
                        parent.lm_next = lm.next_scores(self._lm_state(parent))
                    node.lm = parent.lm + parent.lm_next[node.token]
            return h

        def extend(node: _Node, u: int) -> _Node | None:
            """``node + u``, scored by the context; None when the context forbids it."""
            child = _Node(node, u)
            if context is not None:
                child.ctx_state, score = context.step(node.ctx_state, u)
                if score == NEG_INF:
                    return None
                child.ctx = node.ctx + score
            return child

        for node, h in self.hyps.items():
            total = h.total
            best_v, best = h.best_path()
            # blank: the prefix stays, now ending in blank (always tried, even outside the top-k)
            if total > NEG_INF:
                n = get(node)
                n.pb = _logaddexp(n.pb, total + lb)
                if best_v + lb > n.vb:
                    n.vb, n.path_b = best_v + lb, best
            last = node.token if node.parent is not None else None
            for u, p in zip(ids, lps):
                if p < floor:
                    break                         # the top-k comes sorted: the rest are lower still
                if u == blank:
                    continue
                if u == last:
                    # "a" + a -> "a" (the same token continues its run)
                    if h.pnb > NEG_INF:
                        n = get(node)
                        n.pnb = _logaddexp(n.pnb, h.pnb + p)
                        if h.vnb + p > n.vnb:
                            n.vnb = h.vnb + p
                            path = h.path_nb
                            n.path_nb = (t, p, path[2]) if p > path[1] else path  # a new peak?
                    # "a" + blank + a -> "aa"
                    if h.pb > NEG_INF and (child := extend(node, u) if context else _Node(node, u)) is not None:
                        n = get(child)
                        n.pnb = _logaddexp(n.pnb, h.pb + p)
                        if h.vb + p > n.vnb:
                            n.vnb, n.path_nb = h.vb + p, (t, p, h.path_b)
                elif total > NEG_INF and (child := extend(node, u) if context else _Node(node, u)) is not None:
                    n = get(child)
                    n.pnb = _logaddexp(n.pnb, total + p)
                    if best_v + p > n.vnb:
                        n.vnb, n.path_nb = best_v + p, (t, p, best)
        if len(nxt) > self.beam:
            key = (lambda kv: kv[1].total) if lm is None else (lambda kv: kv[1].total + kv[0].lm)
            if context is None:
                nxt = dict(heapq.nlargest(self.beam, nxt.items(), key=key))
            else:
                # the best by the biased score, and the best without the context: a partial match's
                # bonus (given back if it fails) never pushes the unbiased search's prefixes out
                biased = heapq.nlargest(self.beam, nxt.items(), key=lambda kv: key(kv) + kv[0].ctx)
                plain = heapq.nlargest(self.beam, nxt.items(), key=key)
                nxt = dict(biased + plain)
        self.hyps = nxt

    def _lm_state(self, node: _Node) -> tuple[int, ...]:
        if node.lm_state is None:
            node.lm_state = self.lm.advance(self._lm_state(node.parent), node.token)
        return node.lm_state

    def nbest(self, n: int | None = None) -> list[CTCHyp]:
        """The current hypotheses, best first (at most ``n``, default all ``beam``).

        ``score`` is the prefix's total log-probability; frames count from the first frame
        fed since the last :meth:`reset`. With a context, a hypothesis it does not accept here (in
        the middle of a grammar's phrase) is left out.
        """
        lm, context = self.lm, self.context
        ends = {node: (node.lm + lm.end(self._lm_state(node))) if lm is not None else 0.0 for node in self.hyps}
        ctx = {node: node.ctx + context.final(node.ctx_state) for node in self.hyps} if context is not None \
            else dict.fromkeys(self.hyps, 0.0)
        ranked = sorted(((node, h) for node, h in self.hyps.items() if ctx[node] > NEG_INF),
                        key=lambda kv: kv[1].total + ends[kv[0]] + ctx[kv[0]], reverse=True)
        out = []
        for node, h in ranked[:n]:
            frames, logps = _unroll(h.best_path()[1])
            out.append(CTCHyp(node.tokens(), h.total, frames, [math.exp(p) for p in logps], ends[node], ctx[node]))
        return out


def ctc_prefix_beam_search(log_probs, beam: int = 10, blank_skip: float | None = 0.999,
                           blank: int = BLANK, lm: LMFusion | None = None,
                           token_floor: float | None = None, context: Context | None = None) -> list[CTCHyp]:
    """Prefix beam search over one utterance.

    log_probs: (time, vocab) log-posteriors. Returns up to ``beam`` hypotheses, best first,
    scored by their total CTC log-probability. See :class:`CTCPrefixBeamSearch` for the options.
    """
    search = CTCPrefixBeamSearch(beam, blank_skip, blank, lm, token_floor, context)
    search.advance(log_probs)
    return search.nbest()


def ctc_prefix_beam_search_batch(log_probs, lengths=None,
                                 beam: int = 10, blank_skip: float | None = 0.999,
                                 blank: int = BLANK, lm: LMFusion | None = None,
                                 token_floor: float | None = None,
                                 context: Context | None = None) -> list[list[CTCHyp]]:
    """:func:`ctc_prefix_beam_search` over a batch.

    log_probs: (batch, time, vocab); lengths: (batch,) valid frames (all when None).
    The top-k of the whole batch is taken in one call; the search itself runs per utterance.
    Returns one n-best list per utterance.
    """
    batch, time, vocab = log_probs.shape
    lp = _as_float(log_probs)
    top_lp, top_ids = topk(lp, beam)
    top_lp_l, top_ids_l, blank_l = top_lp.tolist(), top_ids.tolist(), lp[..., blank].tolist()
    lens = [time] * batch if lengths is None else [min(int(n), time) for n in to_numpy(lengths).tolist()]
    out = []
    search = CTCPrefixBeamSearch(beam, blank_skip, blank, lm, token_floor, context)
    for b in range(batch):
        search.reset()
        n = lens[b]
        search.advance_pruned(top_lp_l[b][:n], top_ids_l[b][:n], blank_l[b][:n])
        out.append(search.nbest())
    return out
