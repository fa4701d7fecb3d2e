"""A token n-gram language model with interpolated Kneser-Ney smoothing.

It models sequences of tokenizer ids (characters for a character tokenizer, pieces for BPE), so
it plugs into the CTC prefix beam search token by token with no lexicon and no OOV words. Trained
on text only: more text than the acoustic training transcripts, from the same domain.

    P(w | h) = a(h, w) + gamma(h) * P(w | h[1:])
    a(h, w)  = max(c(h, w) - D_k, 0) / c(h)          gamma(h) = 1 - sum_w a(h, w)

``c`` is the raw count at the highest order and the continuation count (distinct left
neighbours) below it; ``D_k = n1 / (n1 + 2 n2)`` per order; the empty context interpolates with
the uniform distribution. Sequences are padded on the left with ``order - 1`` ``bos`` ids and end
with ``eos``. Pruning drops rare n-grams of order 3 and up; their mass moves to ``gamma``, so
every distribution still sums to one.

The model serialises to a plain dict of tensors (:meth:`to_dict`), stored in checkpoints and
loadable with ``weights_only=True``.
"""
from __future__ import annotations

import collections
import functools
import math
from typing import Iterable

import numpy as np

from s2s_media.arrays import to_numpy

FORMAT = 1
CACHE_SIZE = 50_000    # contexts whose distributions are kept (~1 kB each for 32 units)


class NgramLM:
    """Interpolated Kneser-Ney n-gram over ids ``0 .. vocab_size - 1``.

    ``tables[k]`` holds the contexts of length ``k`` (``k = 0 .. order - 1``): ``keys`` (N,) int64
    packed contexts, sorted; ``gamma`` (N,); ``ptr`` (N + 1,) into ``words``/``a`` (E,), the ids
    seen after each context and their discounted probabilities.
    """

    def __init__(self, order: int, vocab_size: int, bos: int, eos: int, tables: list[dict[str, np.ndarray]]):
        if len(tables) != order:
            raise ValueError(f"an order-{order} model needs {order} context tables, got {len(tables)}")
        self.order, self.vocab_size, self.bos, self.eos = order, vocab_size, bos, eos
        self.tables = tables
        # context key -> row, per order: a dict lookup is ~50x cheaper than a search of the sorted keys
        self._rows = [dict(zip(t["keys"].tolist(), range(len(t["keys"])))) for t in tables]
        self._cache: dict[tuple[int, ...], list[float]] = {}
        self._row_probs: dict[tuple[int, int], np.ndarray] = {}   # (order, row) -> P(. | context), float64

    @functools.cached_property
    def _log(self) -> list[np.ndarray]:
        """``log P(. | context)`` of every stored context: per order a ``(contexts, vocab)`` float32 table
        (what the ARPA writer reads). Built order by order from the recursion in the module docstring: a
        context's distribution is its discounted counts plus ``gamma`` times the distribution of its suffix one
        id shorter. Decoding reads single rows (:meth:`_probs`), so loading a model does not build this.
        """
        v = self.vocab_size
        below = np.full((1, v), 1.0 / v)                 # "order -1": the uniform distribution
        out = []
        for k, t in enumerate(self.tables):
            n = len(t["keys"])
            if k == 0:
                parent = np.zeros(n, dtype=np.int64)
            else:                                        # the suffix: the key without its oldest id
                parent = np.searchsorted(self.tables[k - 1]["keys"], t["keys"] % v ** (k - 1))
                parent = np.minimum(parent, len(self.tables[k - 1]["keys"]) - 1)   # a pruned suffix: unreachable
            p = t["gamma"].astype(np.float64)[:, None] * below[parent]
            rows = np.repeat(np.arange(n), np.diff(t["ptr"]))
            p[rows, t["words"]] += t["a"]
            out.append(np.log(np.maximum(p, 1e-30)).astype(np.float32))
            below = p
        return out

    # ------------------------------------------------------------------ training
    @classmethod
    def train(cls, sequences: Iterable[list[int]], order: int, vocab_size: int, bos: int, eos: int,
              prune: int = 1) -> NgramLM:
        """Count and smooth.

        sequences: token-id lists (one sentence each, no bos/eos). prune: n-grams of order >= 3
        seen fewer than ``prune`` times (raw or continuation count) are dropped.
        """
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        _check_packable(order - 1, vocab_size)
        top: collections.Counter[tuple[int, ...]] = collections.Counter()
        pad = [bos] * (order - 1)
        for seq in sequences:
            s = pad + list(seq) + [eos]
            for i in range(order - 1, len(s)):
                top[tuple(s[i - order + 1:i + 1])] += 1
        counts: list[collections.Counter] = [collections.Counter() for _ in range(order)]
        counts[order - 1] = top
        for k in range(order - 1, 0, -1):            # continuation counts, from the order above
            lower = counts[k - 1]
            for gram in counts[k]:
                lower[gram[1:]] += 1
        tables = []
        for k in range(order):
            grams = counts[k]
            discount = _discount(grams.values())
            if prune > 1 and k >= 2:
                grams = {g: c for g, c in grams.items() if c >= prune}
            tables.append(_table(grams, k, discount, vocab_size))
        return cls(order, vocab_size, bos, eos, tables)

    # ------------------------------------------------------------------ queries
    def log_probs(self, context: tuple[int, ...]) -> list[float]:
        """Natural-log ``P(w | context)`` for every id ``w``; only the last ``order - 1`` ids count.

        Contexts shorter than that are treated as sentence starts (padded with ``bos``). Results
        are cached per context.
        """
        k = self.order - 1
        context = tuple(context[-k:]) if k else ()
        if len(context) < k:
            context = (self.bos,) * (k - len(context)) + context
        hit = self._cache.get(context)
        if hit is not None:
            return hit
        out = self.distribution(context).tolist()
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[context] = out
        return out

    def distribution(self, context: tuple[int, ...]) -> np.ndarray:
        """``log P(. | context)`` as stored, ``(vocab,)`` float32, for a context taken literally (no padding;
        at most its last ``order - 1`` ids count): the distribution of its longest stored suffix whose own
        suffixes are all stored (the back-off a query takes). Callers must not modify it."""
        key, scale, found = 0, 1, None
        for n in range(min(self.order, len(context) + 1)):    # the longest stored suffix of the context
            if n:                                       # the packed key of the last n ids, grown leftwards
                key += context[-n] * scale
                scale *= self.vocab_size
            i = self._rows[n].get(key)
            if i is None:
                break                                   # longer contexts were never seen either
            found = (n, i)
        if found is None:
            return np.full(self.vocab_size, -math.log(self.vocab_size), dtype=np.float32)
        return np.log(np.maximum(self._probs(*found), 1e-30)).astype(np.float32)

    def _probs(self, k: int, i: int) -> np.ndarray:
        """``P(. | context)`` of row ``i`` of ``tables[k]`` (float64, kept): the recursion of :attr:`_log` for
        one context, with the same float operations."""
        hit = self._row_probs.get((k, i))
        if hit is not None:
            return hit
        t, v = self.tables[k], self.vocab_size
        below = np.full(v, 1.0 / v)
        if k > 0:
            parent = self._rows[k - 1].get(int(t["keys"][i]) % v ** (k - 1))
            if parent is not None:                      # else a pruned suffix: unreachable
                below = self._probs(k - 1, parent)
        p = np.float64(t["gamma"][i]) * below
        s, e = t["ptr"][i], t["ptr"][i + 1]
        p[t["words"][s:e]] += t["a"][s:e]
        self._row_probs[(k, i)] = p
        return p

    def contexts(self, k: int) -> np.ndarray:
        """The stored contexts of length ``k``, ``(N, k)`` int64 ids (oldest first), in the order of ``tables[k]``."""
        keys = self.tables[k]["keys"]
        out = np.empty((len(keys), k), dtype=np.int64)
        rest = keys.copy()
        for j in range(k - 1, -1, -1):
            rest, out[:, j] = np.divmod(rest, self.vocab_size)
        return out

    def score(self, tokens: list[int]) -> float:
        """Log-probability of a whole sentence, ``eos`` included."""
        ctx: tuple[int, ...] = ()
        total = 0.0
        for u in list(tokens) + [self.eos]:
            total += self.log_probs(ctx)[u]
            ctx = (ctx + (u,))[-(self.order - 1):] if self.order > 1 else ()
        return total

    def perplexity(self, sequences: Iterable[list[int]]) -> float:
        """Per-token perplexity (``eos`` counted as a token)."""
        total, n = 0.0, 0
        for s in sequences:
            total += self.score(s)
            n += len(s) + 1
        return math.exp(-total / max(n, 1))

    @property
    def num_ngrams(self) -> int:
        return sum(len(t["words"]) for t in self.tables)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        """Plain dict of numpy tables; probabilities in float16 and ids in the smallest integer type (~6 bytes an
        n-gram). A checkpoint file stores the tables as tensors (:func:`s2s_media.checkpoint_io.save_checkpoint`)."""
        ids = np.int16 if self.vocab_size <= np.iinfo(np.int16).max else np.int32
        storage = {"keys": np.int64, "gamma": np.float16, "ptr": np.int64, "words": ids, "a": np.float16}
        return {"format": FORMAT, "order": self.order, "vocab_size": self.vocab_size, "bos": self.bos,
                "eos": self.eos, "tables": [{name: np.ascontiguousarray(v.astype(storage[name]))
                                             for name, v in t.items()} for t in self.tables]}

    @classmethod
    def from_dict(cls, d: dict) -> NgramLM:
        if d.get("format") != FORMAT:
            raise ValueError(f"n-gram LM format {d.get('format')!r} is not supported (expected {FORMAT})")
        memory = {"keys": np.int64, "gamma": np.float32, "ptr": np.int64, "words": np.int64, "a": np.float32}
        tables = [{name: to_numpy(v).astype(memory[name]) for name, v in t.items()} for t in d["tables"]]
        return cls(d["order"], d["vocab_size"], d["bos"], d["eos"], tables)


def _check_packable(length: int, vocab_size: int) -> None:
    if length and length * math.log2(vocab_size) >= 63:
        raise ValueError(f"an order-{length + 1} model over {vocab_size} ids does not fit 64-bit context keys; "
                         f"use order <= {int(63 / math.log2(vocab_size))}")


def _pack(context: tuple[int, ...], vocab_size: int) -> int:
    key = 0
    for u in context:
        key = key * vocab_size + u
    return key


def _discount(counts: Iterable[int]) -> float:
    """Ney's absolute discount ``n1 / (n1 + 2 n2)`` from the counts of counts (0.5 when undefined)."""
    n = collections.Counter(c for c in counts if c <= 2)
    n1, n2 = n[1], n[2]
    return n1 / (n1 + 2 * n2) if n1 and n2 else 0.5


def _table(grams: dict[tuple[int, ...], int], k: int, discount: float, vocab_size: int) -> dict[str, np.ndarray]:
    """The context table of length-``k`` contexts from ``(k + 1)``-gram counts."""
    by_context: dict[int, list[tuple[int, int]]] = collections.defaultdict(list)
    for gram, c in grams.items():
        by_context[_pack(gram[:-1], vocab_size)].append((gram[-1], c))
    keys = np.array(sorted(by_context), dtype=np.int64)
    gamma = np.empty(len(keys), dtype=np.float32)
    ptr = np.zeros(len(keys) + 1, dtype=np.int64)
    words, a = [], []
    for i, key in enumerate(keys.tolist()):
        entries = sorted(by_context[key])
        total = sum(c for _, c in entries)
        probs = [max(c - discount, 0.0) / total for _, c in entries]
        gamma[i] = 1.0 - sum(probs)
        words.extend(w for w, _ in entries)
        a.extend(probs)
        ptr[i + 1] = len(words)
    return {"keys": keys, "gamma": gamma, "ptr": ptr,
            "words": np.array(words, dtype=np.int64), "a": np.array(a, dtype=np.float32)}
