"""Contextual biasing (hotwords) and phrase grammars for the CTC prefix searches.

A *context* scores token sequences as a search extends them: ``start`` is its state before the
first token, ``step(state, token) -> (state, score)`` the state and the score to add when a
hypothesis emits ``token``, and ``final(state)`` the score to add when the hypothesis ends there.
The prefix searches (:mod:`s2s_media.decoding.ctc`, :mod:`s2s_media.decoding.native`) add these
scores to the ranking of every prefix, beside a fused language model's.

Two contexts:

* :class:`ContextGraph` (hotwords). An Aho-Corasick automaton over the phrases' tokens, as WeNet's
  and icefall's context graphs: every token on the way into a phrase earns its boost; a partial
  match that fails gives its bonus back (the state falls back along the failure links to the
  longest suffix that still starts a phrase, and the score is the difference of the two states'
  bonuses); a completed phrase keeps it. With a character vocabulary the phrases are bounded by
  the word separator on both sides, at no score, so "ann" does not boost "annual"; the start
  and the end of a hypothesis count as boundaries.
* :class:`Grammar` (Vosk's ``phrase_list``). Only sequences of the listed phrases (and, when
  ``[unk]`` is listed, of any other words) are allowed: ``step`` returns ``-inf`` for a token
  that leaves the grammar, so the search never keeps such a prefix, and ``final`` is ``-inf``
  in the middle of a phrase.

:func:`compile_hotwords` and :func:`compile_grammar` build them from text with a model's
tokenizer, reporting phrases that cannot be spelled with its vocabulary (by character name).
"""
from __future__ import annotations

import math
import unicodedata
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from s2s_media.errors import UserError
from s2s_media.text.normalize import normalize_text
from s2s_media.text.tokenizer import UNK, Tokenizer

NEG_INF = float("-inf")
DEFAULT_BOOST = 4.0          # bonus per token of a hotword when none is given (chosen on a dev set, docs/benchmarks.md)
MAX_HOTWORDS = 1000          # default limit on the number of hotwords (--max-hotwords)
UNK_PHRASE = "[unk]"         # in a phrase list: any word outside the list


class Context(Protocol):
    """What a search asks of a context (see the module docstring)."""

    start: object

    def step(self, state, token: int) -> tuple[object, float]: ...
    def final(self, state) -> float: ...


# --------------------------------------------------------------------------- hotwords
@dataclass(frozen=True)
class Hotword:
    """A word or phrase to favour, with its bonus per token (``None``: :data:`DEFAULT_BOOST`)."""
    phrase: str
    boost: float | None = None

    @classmethod
    def parse(cls, spec: str, where: str = "--hotword") -> "Hotword":
        """``"Kubernetes"`` or ``"Kubernetes:3.0"`` (a trailing ``:number`` is the boost)."""
        phrase, sep, tail = spec.rpartition(":")
        boost = None
        if sep:
            try:
                boost = float(tail)
            except ValueError:
                phrase, boost = spec, None        # a colon inside the phrase itself
        if boost is not None and not math.isfinite(boost):
            raise UserError(f"{where} {spec!r}: the boost must be a finite number")
        phrase = phrase.strip() if boost is not None else spec.strip()
        if not phrase:
            raise UserError(f"{where} {spec!r}: the phrase is empty; write PHRASE or PHRASE:BOOST")
        return cls(phrase, boost)


def read_hotwords(path: str | Path) -> list[Hotword]:
    """A hotword file: one ``PHRASE`` or ``PHRASE:BOOST`` a line; blank lines and ``#`` comments skipped."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UserError(f"--hotwords {path}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise UserError(f"--hotwords {path}: not UTF-8 text; write one PHRASE[:BOOST] a line") from None
    return [Hotword.parse(line, f"{path}:{n}") for n, line in enumerate(lines, 1)
            if line.strip() and not line.lstrip().startswith("#")]


def as_hotwords(items: Iterable) -> list[Hotword]:
    """Hotwords from what an API caller may pass: :class:`Hotword`, ``"phrase"``, ``"phrase:boost"``
    or ``(phrase, boost)``."""
    out = []
    for it in items:
        if isinstance(it, Hotword):
            out.append(it)
        elif isinstance(it, str):
            out.append(Hotword.parse(it, "hotword"))
        elif isinstance(it, (tuple, list)) and len(it) == 2 and isinstance(it[0], str):
            out.append(Hotword(it[0], None if it[1] is None else float(it[1])))
        else:
            raise UserError(f"hotword {it!r}: expected a phrase, 'phrase:boost' or (phrase, boost)")
    return out


class _Node:
    """A state of :class:`ContextGraph`: the longest suffix of the output that starts a phrase."""

    __slots__ = ("next", "fail", "score", "output", "end", "cache")

    def __init__(self, score: float):
        self.next: dict[int, _Node] = {}
        self.fail: _Node | None = None
        self.score = score            # bonus earned on the way here, still to give back on a failure
        self.output = 0.0             # bonus kept for good on arriving: the phrases ending here
        self.end = False
        self.cache: dict[int, tuple[_Node, float]] = {}


class ContextGraph:
    """Hotwords as an Aho-Corasick automaton over token ids.

    phrases: ``(tokens, boost per token)``; boundary: the word-separator id of a character
    vocabulary (phrases then start and end at word boundaries), None for subword and word
    vocabularies. A hypothesis that has emitted a phrase keeps ``boost * len(tokens)``; one that
    stops half-way keeps nothing.
    """

    def __init__(self, phrases: Sequence[tuple[Sequence[int], float]], boundary: int | None = None):
        if not phrases:
            raise ValueError("a context graph needs at least one phrase")
        self.boundary = boundary
        self.root = _Node(0.0)
        self.phrases = len(phrases)
        for tokens, boost in phrases:
            seq = [(u, boost) for u in tokens]
            if boundary is not None:
                seq = [(boundary, 0.0), *seq, (boundary, 0.0)]
            node = self.root
            for u, bonus in seq:
                child = node.next.get(u)
                if child is None:
                    child = node.next[u] = _Node(node.score + bonus)
                elif node.score + bonus > child.score:     # a shared prefix earns the larger boost
                    child.score = node.score + bonus
                node = child
            node.end = True
        self._link()
        self.start = self.root if boundary is None else self.step(self.root, boundary)[0]

    def _link(self) -> None:
        """Failure links (breadth first) and the bonus each state keeps on arrival."""
        queue = deque()
        for child in self.root.next.values():
            child.fail = self.root
            queue.append(child)
        while queue:
            node = queue.popleft()
            node.output = (node.score if node.end else 0.0) + node.fail.output
            for u, child in node.next.items():
                f = node.fail
                while f is not self.root and u not in f.next:
                    f = f.fail
                child.fail = f.next[u] if u in f.next and f.next[u] is not child else self.root
                queue.append(child)

    def step(self, state: _Node, token: int) -> tuple[_Node, float]:
        """The state after ``token`` and the score to add (cached per state and token)."""
        hit = state.cache.get(token)
        if hit is None:
            node = state
            while node is not self.root and token not in node.next:
                node = node.fail
            nxt = node.next.get(token, self.root)
            hit = state.cache[token] = (nxt, nxt.score - state.score + nxt.output)
        return hit

    def final(self, state: _Node) -> float:
        """The score to add when a hypothesis ends in ``state``: the end is a word boundary, and
        whatever is still uncommitted is given back."""
        if self.boundary is None:
            return -state.score
        nxt, score = self.step(state, self.boundary)
        return score - nxt.score


# --------------------------------------------------------------------------- phrase grammar
_UNK_STATE = -1     # inside a word matched by [unk]


class Grammar:
    """Only sequences of the listed phrases (Vosk's ``phrase_list``), separated by word boundaries.

    phrases: token sequences; boundary: the word separator (a character vocabulary), None when
    every token is a word of its own; unk: ``[unk]`` was listed, so any other word is allowed too.
    A state is a frozenset of positions (trie nodes, or "inside an [unk] word"); ``step`` gives
    ``-inf`` for a token no position accepts.
    """

    def __init__(self, phrases: Sequence[Sequence[int]], boundary: int | None, unk: bool):
        self.boundary, self.unk = boundary, unk
        self._next: list[dict[int, int]] = [{}]      # trie: node -> {token: child}
        self._end: list[bool] = [False]
        for tokens in phrases:
            node = 0
            for u in tokens:
                child = self._next[node].get(u)
                if child is None:
                    child = self._next[node][u] = len(self._next)
                    self._next.append({})
                    self._end.append(False)
                node = child
            self._end[node] = True
        self.start = frozenset({0})
        self._cache: dict[tuple[frozenset, int], frozenset] = {}

    def step(self, state: frozenset, token: int) -> tuple[frozenset, float]:
        key = (state, token)
        nxt = self._cache.get(key)
        if nxt is None:
            out = set()
            word_end = token == self.boundary or self.boundary is None
            for p in state:
                if p == _UNK_STATE:
                    out.add(0 if token == self.boundary else _UNK_STATE)
                    continue
                if token == self.boundary and (p == 0 or self._end[p]):
                    out.add(0)                       # between phrases (or a repeated separator)
                child = self._next[p].get(token)
                if child is not None:
                    out.add(child)
                    if self.boundary is None and self._end[child]:
                        out.add(0)                   # word vocabulary: a phrase can follow at once
                if p == 0 and self.unk and token != self.boundary:
                    out.add(0 if word_end else _UNK_STATE)
            nxt = self._cache[key] = frozenset(out)
        return nxt, (0.0 if nxt else NEG_INF)

    def final(self, state: frozenset) -> float:
        ok = any(p == 0 or p == _UNK_STATE or self._end[p] for p in state)
        return 0.0 if ok else NEG_INF


def render_grammar_words(words: list[str], phrases: Iterable[str]) -> list[str]:
    """The words of a grammar-constrained result with every word outside the phrases as ``[unk]``:
    the segmentation covering the most words by whole phrases wins."""
    known = [tuple(p.split()) for p in phrases]
    n = len(words)
    best: list[tuple[int, list[str]]] = [(0, [])] + [(-1, [])] * n
    for i in range(n):
        covered, out = best[i]
        if covered < 0:
            continue
        if best[i + 1][0] < covered:
            best[i + 1] = (covered, out + [UNK_PHRASE])
        for p in known:
            j = i + len(p)
            if p and j <= n and tuple(words[i:j]) == p and best[j][0] < covered + len(p):
                best[j] = (covered + len(p), out + list(p))
    return best[n][1]


# --------------------------------------------------------------------------- compiling text
@dataclass
class Compiled:
    """What :func:`compile_hotwords` and :func:`compile_grammar` return."""
    context: ContextGraph | Grammar | None
    phrases: list[str] = field(default_factory=list)      # the normalised phrases that made it in
    skipped: list[str] = field(default_factory=list)      # one line per phrase left out, and why


def _char_name(c: str) -> str:
    return f"'{c}' ({unicodedata.name(c, f'U+{ord(c):04X}')})"


def spell(tokenizer: Tokenizer, phrase: str, language: str) -> tuple[str, list[int] | None, str | None]:
    """``phrase`` normalised as transcripts are, its token ids, or None and the reason it cannot be spelled
    (the characters outside the model's vocabulary, by name)."""
    text = normalize_text(phrase, language)
    if tokenizer.kind == "word":
        ids = tokenizer.encode(text)
        missing = [w for w, u in zip(text.split(), ids) if u == UNK]
        if missing:
            return text, None, f"words not in the model's vocabulary: {', '.join(missing)}"
    else:
        bad = []
        for c in dict.fromkeys(phrase):
            if unicodedata.category(c)[0] not in "LN":
                continue                 # punctuation and spaces: normalisation removes them, as in transcripts
            norm = normalize_text(c, language)
            if not norm or UNK in tokenizer.encode(norm):
                bad.append(_char_name(c))
        ids = tokenizer.encode(text)
        if bad:
            return text, None, f"characters not in the model's vocabulary: {', '.join(bad)}"
        if UNK in ids:
            unknown = sorted({c for c in text if UNK in tokenizer.encode(c)})
            return text, None, f"characters not in the model's vocabulary: {', '.join(map(_char_name, unknown))}"
    if not ids:
        return text, None, "nothing left to recognise after normalisation"
    return text, ids, None


def _boundary(tokenizer: Tokenizer) -> int | None:
    return tokenizer.stoi.get("▁") if tokenizer.kind == "char" else None


def check_count(n: int, limit: int, what: str = "hotwords") -> None:
    """UserError for an empty list or one longer than ``limit``."""
    if n == 0:
        raise UserError(f"{what}: the list is empty; give at least one phrase or leave it out")
    if limit and n > limit:
        raise UserError(f"{what}: {n} phrases, over the limit of {limit}; give fewer or raise --max-hotwords")


def compile_hotwords(tokenizer: Tokenizer, hotwords: Sequence[Hotword], language: str = "en",
                     default_boost: float = DEFAULT_BOOST, max_hotwords: int = MAX_HOTWORDS) -> Compiled:
    """A :class:`ContextGraph` of ``hotwords`` spelled with ``tokenizer`` (normalised by ``language``).

    An empty list, or one over ``max_hotwords`` (0: no limit), is a :class:`UserError`; a phrase that
    cannot be spelled is left out with its reason in ``skipped`` (``context`` is None if none is left).
    """
    check_count(len(hotwords), max_hotwords)
    phrases, kept, skipped = [], [], []
    for hw in hotwords:
        text, ids, why = spell(tokenizer, hw.phrase, language)
        if ids is None:
            skipped.append(f"hotword {hw.phrase!r} skipped: {why}")
            continue
        phrases.append((ids, default_boost if hw.boost is None else hw.boost))
        kept.append(text)
    graph = ContextGraph(phrases, _boundary(tokenizer)) if phrases else None
    return Compiled(graph, kept, skipped)


def compile_grammar(tokenizer: Tokenizer, phrases: Sequence[str], language: str = "en",
                    max_phrases: int = MAX_HOTWORDS) -> Compiled:
    """A :class:`Grammar` of ``phrases`` (``[unk]`` among them allows any other word)."""
    check_count(len(phrases), max_phrases, "phrase_list")
    unk = any(p.strip().lower() == UNK_PHRASE for p in phrases)
    seqs, kept, skipped = [], [], []
    for p in phrases:
        if p.strip().lower() == UNK_PHRASE:
            continue
        text, ids, why = spell(tokenizer, p, language)
        if ids is None:
            skipped.append(f"phrase {p!r} skipped: {why}")
            continue
        seqs.append(ids)
        kept.append(text)
    if not seqs and not unk:
        return Compiled(None, kept, skipped)
    return Compiled(Grammar(seqs, _boundary(tokenizer), unk), kept, skipped)
