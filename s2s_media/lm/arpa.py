"""Our Kneser-Ney n-gram (:class:`~s2s_media.lm.ngram.NgramLM`) written out as an ARPA back-off model.

KenLM (and so the native search, :mod:`s2s_media.decoding.native`) reads ARPA files; the file written
here scores every sentence exactly as the n-gram does (to float32 rounding and the 6 decimals of the text):

- every stored context ``c`` gives its stored words ``c w`` with their full interpolated probability
  and ``c`` its back-off weight ``gamma(c)``, which is exact because ``P(w | c) = gamma(c) P(w | c[1:])``
  for the words it has not seen;
- unigrams list every id (the uniform share of the interpolation cannot be backed off to);
- the n-gram pads a sentence start with ``order - 1`` ``bos`` ids, ARPA with one ``<s>``: each start
  history ``<s> x1..xm`` the n-gram stores is written with its whole distribution, so it never backs off;
- n-grams that ARPA needs as a prefix (a context) or a suffix are added with their exact probability.

Token ids become ARPA words through :func:`arpa_words`. ``token_bonus`` (natural log) adds a reward to
every word but ``</s>``: flashlight's lexicon-free search has no insertion reward, so the fused score
``weight * log P + bonus`` per token is ``weight * (log P + bonus / weight)`` (see :func:`fusion_arpa_bonus`).
KenLM refuses a log-probability above 0, so an entry that the bonus would lift above 0 is written as 0:
with a bonus, the file is close to the fused score but not equal to it.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from s2s_media.errors import UserError
from s2s_media.lm.ngram import NgramLM

LOG10 = math.log(10.0)
NEVER = -99.0                  # ARPA's log10 "probability" of an event that cannot happen (<s> as a word)


def arpa_words(itos: Sequence[str], bos: int, eos: int) -> list[str]:
    """ARPA words of token ids 0..V-1: the tokenizer's units, with ``bos``/``eos`` as ``<s>``/``</s>``."""
    words = ["<s>" if i == bos else "</s>" if i == eos else s for i, s in enumerate(itos)]
    bad = [w for w in words if not w or any(c.isspace() for c in w)]
    if bad or len(set(words)) != len(words):
        raise ValueError(f"token strings cannot be ARPA words (empty, spaced or repeated): {bad or words}")
    return words


def fusion_arpa_bonus(weight: float, bonus: float) -> float:
    """The ``token_bonus`` that makes ``weight * ARPA log-prob`` equal the fused ``weight * log P + bonus``."""
    return bonus / weight if weight else 0.0


def arpa_entries(lm: NgramLM) -> tuple[dict[tuple[int, ...], float], dict[tuple[int, ...], float]]:
    """The ARPA model of ``lm``: ``{n-gram ids: natural-log probability}`` and ``{context ids: natural-log
    back-off weight}`` (only contexts whose weight is not 1). ``lm.bos`` appears only first, as ``<s>``."""
    probs: dict[tuple[int, ...], float] = {}
    backoff: dict[tuple[int, ...], float] = {}
    v, bos = lm.vocab_size, lm.bos
    words = [w for w in range(v) if w != bos]

    def ours(gram: tuple[int, ...]) -> float:
        """Our log P(last | history); a history starting with bos is a sentence start (padded by the LM)."""
        history, w = gram[:-1], gram[-1]
        if history and history[0] == bos:
            return lm.log_probs(history[1:])[w]
        return float(lm.distribution(history)[w])

    reachable: list[set[tuple[int, ...]]] = [{()}]     # stored contexts whose suffixes are all stored
    starts: set[tuple[int, ...]] = set()               # start histories x1..xm the LM stores
    for k in range(1, lm.order):
        ctx = [tuple(c) for c in lm.contexts(k).tolist()]
        reachable.append({c for c in ctx if c[1:] in reachable[k - 1]})
        starts.update(c[c.count(bos):] for c in reachable[k] if c[0] == bos)
    for k in range(lm.order):
        t, log = lm.tables[k], lm._log[k]
        rows = np.repeat(np.arange(len(t["keys"])), np.diff(t["ptr"]))
        ctx = lm.contexts(k).tolist()
        lp = log[rows, t["words"]].tolist()
        for r, w, p in zip(rows.tolist(), t["words"].tolist(), lp):
            c = tuple(ctx[r])
            if bos not in c and c in reachable[k]:
                probs[c + (w,)] = p
        if k:
            for r, g in enumerate(t["gamma"].tolist()):
                c = tuple(ctx[r])
                if bos not in c and c in reachable[k]:
                    backoff[c] = math.log(max(g, 1e-30))
    unigram = lm.distribution(())
    for w in words:
        probs[(w,)] = float(unigram[w])
    for h in starts:                                  # whole distributions: never back off from <s> x1..xm
        dist = lm.log_probs(h)
        for w in words:
            probs[(bos,) + h + (w,)] = dist[w]
    # ARPA needs the prefix (the context) and the suffix of every n-gram: add missing ones, longest first
    for n in range(lm.order, 1, -1):
        for g in [g for g in probs if len(g) == n]:
            for part in (g[:-1], g[1:]):
                if part not in probs and part != (bos,):
                    probs[part] = ours(part)
    return probs, backoff


def write_arpa(lm: NgramLM, words: Sequence[str], path: str | Path, token_bonus: float = 0.0) -> Path:
    """Write ``lm`` as an ARPA file; ``words[i]`` is id ``i``'s word (:func:`arpa_words`).

    token_bonus: natural-log reward added to every word but ``</s>`` (0: the plain model).
    """
    if len(words) != lm.vocab_size:
        raise ValueError(f"{len(words)} words for a language model over {lm.vocab_size} ids")
    probs, backoff = arpa_entries(lm)
    eos = lm.eos
    by_order: list[list[str]] = [[] for _ in range(lm.order)]
    bonus10 = token_bonus / LOG10
    for g, p in probs.items():
        p10 = min(p / LOG10 + (bonus10 if g[-1] != eos else 0.0), 0.0)    # KenLM refuses log-probs > 0
        line = f"{p10:.6f}\t{' '.join(words[u] for u in g)}"
        b = backoff.get(g)
        by_order[len(g) - 1].append(line if b is None else f"{line}\t{b / LOG10:.6f}")
    by_order[0].append(f"{NEVER:.6f}\t<s>\t0.000000")
    path = Path(path)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n\\data\\\n")
        for n, lines in enumerate(by_order, 1):
            f.write(f"ngram {n}={len(lines)}\n")
        for n, lines in enumerate(by_order, 1):
            f.write(f"\n\\{n}-grams:\n")
            f.write("\n".join(lines))
            f.write("\n")
        f.write("\n\\end\\\n")
    return path


def arpa_vocabulary(path: str | Path) -> set[str]:
    """The words of an ARPA file's unigram section (UserError naming the file when it is not ARPA)."""
    path = Path(path)
    words: set[str] = set()
    section = None
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line.startswith("\\"):
                    section = line
                    if section.startswith("\\2-grams") or section == "\\end\\":
                        break
                elif section == "\\1-grams:" and line:
                    fields = line.split()
                    if len(fields) < 2:
                        raise ValueError(f"bad unigram line {line!r}")
                    words.add(fields[1])
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{path}: not a readable ARPA language model ({e})") from None
    if not words:
        raise UserError(f"{path}: not an ARPA language model (no \\1-grams: section)")
    return words


def check_arpa_covers(path: str | Path, words: Sequence[str], skip: Sequence[str] = ()) -> None:
    """UserError naming ``path`` unless its vocabulary has every word of the model's tokens (but ``skip``)."""
    have = arpa_vocabulary(path)
    missing = [w for w in words if w not in have and w not in skip]
    if missing:
        shown = ", ".join(repr(w) for w in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise UserError(f"{path}: the language model does not match the model's tokenizer ({len(missing)} of its "
                        f"tokens are not in it: {shown}); build the LM over this model's tokens (s2s-media lm)")
