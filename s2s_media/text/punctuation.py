"""Punctuation and casing as per-word labels: written text <-> normalised words + labels.

A punctuation model sees the words of :func:`~s2s_media.text.normalize.normalize_text` (lower-case
``a-z'``, no marks) and predicts, for each word, the mark that follows it (:data:`MARKS`) and how it
is cased (:data:`CASES`). :func:`labels_from_text` makes training targets from written text;
:func:`apply_labels` writes the labels back onto the words, changing nothing but the case of ASCII
letters and one mark added at the end, so :func:`strip_word` always gives the input word back.

Marks of written text map onto the four the model restores: ``...`` ends a sentence (``.``),
``; : -- -`` between words become ``,``; quotes and brackets are dropped.
"""
from __future__ import annotations

import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Iterable

from s2s_media.text.normalize import normalize_text

MARKS = ("", ",", ".", "?", "!")          # label -> the mark written after the word
CASES = ("lower", "title", "upper")       # label -> the word as is, First letter up, ALL UP
NORMALISED_WORD = re.compile(r"[a-z']+")  # the only words casing touches: normalize_text's output

_MARK_OF = {",": 1, ":": 1, ";": 1, "-": 1, ".": 2, "?": 3, "!": 4}
_PRIORITY = (3, 4, 2, 1)                  # several marks after one word: ? beats ! beats . beats ,
_SIMPLE_TOKEN = re.compile(r"[\"'(\[]*([A-Za-z]+(?:'[A-Za-z]+)*)[.,;:!?\"')\]-]*")   # most tokens: no normalising
_PIECE = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")


def case_of(word: str) -> int:
    """The :data:`CASES` label of a written word: ``"Paris" -> 1``, ``"NASA's" -> 2``, ``"I" -> 1``;
    a word cased its own way (``"iPhone"``, ``"McDonald"``) is 1: :func:`cased` writes it from ``forms``."""
    if word.islower() or not any(c.isupper() for c in word):
        return 0
    stem = word.split("'")[0]
    letters = [c for c in (stem if len(stem) > 1 else word) if c.isalpha()]
    if len(letters) > 1 and all(c.isupper() for c in letters):
        return 2
    return 1


def mark_of(tail: str) -> int:
    """The :data:`MARKS` label of the marks written after a word (``'?"'`` -> 3, ``'--'`` -> 1)."""
    found = {_MARK_OF[c] for c in tail if c in _MARK_OF}
    return next((m for m in _PRIORITY if m in found), 0)


def labels_from_text(text: str) -> tuple[list[str], list[int], list[int], list[str]]:
    """Written text -> ``(words, marks, cases, written)``.

    ``words`` are exactly ``normalize_text(text).split()``; ``marks[i]``/``cases[i]`` label
    ``words[i]``; ``written[i]`` is its written letters (``"McDonald"``; ``""`` for a word spelled
    out from digits or symbols). A written token that normalises to several words (``1984``,
    ``well-known``) puts its mark on its last word; digits spelled out are lower-case. Text whose
    words cannot be lined up with its normalised words gives four empty lists.
    """
    words: list[str] = []
    marks: list[int] = []
    cases: list[int] = []
    written: list[str] = []
    all_simple = True
    plain = text
    if not plain.isascii():
        plain = unicodedata.normalize("NFKD", plain)
        plain = "".join(c for c in plain if not unicodedata.combining(c)).replace("\u2019", "'").replace("`", "'")
    for token in re.split(r"(\s+|--+|[-:;]\s)", plain):
        if not token or token.isspace():
            continue
        simple = _SIMPLE_TOKEN.fullmatch(token)
        norm = [simple.group(1).lower()] if simple else normalize_text(token).split()
        all_simple = all_simple and simple is not None
        if not norm:                                   # a mark on its own: it follows the previous word
            if marks and marks[-1] == 0:
                marks[-1] = mark_of(token)
            continue
        pieces = _PIECE.findall(token)
        if len(pieces) == len(norm) and all(p.lower() == w for p, w in zip(pieces, norm)):
            token_cases = [case_of(p) for p in pieces]
        else:                                          # numbers, symbols: only the first letter counts
            token_cases = [case_of(token[:1])] + [0] * (len(norm) - 1)
            pieces = [""] * len(norm)
        tail = token[len(token.rstrip(".,;:!?-\"')]}")):]
        words += norm
        cases += token_cases
        written += pieces
        marks += [0] * (len(norm) - 1) + [mark_of(tail)]
    if not all_simple and words != normalize_text(text).split():   # tokenising changed a word: never mislabel
        return [], [], [], []
    return words, marks, cases, written


def cased(word: str, case: int, forms: dict[str, str] | None = None) -> str:
    """``word`` with case label ``case``; only normalised words (``[a-z']+``) change."""
    if case == 0 or not NORMALISED_WORD.fullmatch(word):
        return word
    if forms and word in forms:
        return forms[word]
    if case == 2:                                  # NASA's: the stem up, the clitic as it was
        stem, sep, rest = word.partition("'")
        return stem.upper() + sep + rest if len(stem) > 1 else word.upper()
    return word[:1].upper() + word[1:]


def apply_labels(words: list[str], marks: list[int], cases: list[int],
                 forms: dict[str, str] | None = None) -> list[str]:
    """Written words: each input word cased and followed by its mark, one output word per input word."""
    return [cased(w, c, forms) + MARKS[m] for w, m, c in zip(words, marks, cases)]


def strip_word(word: str) -> str:
    """Undo :func:`apply_labels` on one word: drop one trailing mark, lower-case ASCII letters."""
    if word[-1:] in ".,?!" and len(word) > 1:
        word = word[:-1]
    return word.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def mixed_forms(sightings: Iterable[tuple[str, str]], min_count: int = 2) -> dict[str, str]:
    """Words written in a case of their own (``McDonald``, ``iPhone``): from ``(word, written)``
    sightings of words with a capital, each word's most common written form when that is neither
    First-letter-up nor ALL UP and was seen at least ``min_count`` times."""
    seen: Counter = Counter((w, f) for w, f in sightings if f)
    best: dict[str, tuple[int, str]] = {}
    for (word, form), n in seen.items():
        if n > best.get(word, (0, ""))[0]:
            best[word] = (n, form)
    return {w: f for w, (n, f) in best.items()
            if n >= min_count and f.lower() == w and f not in (w[:1].upper() + w[1:], w.upper())}


class WordVocab:
    """Word ids and hashed-suffix ids of normalised words, the punctuation model's inputs.

    Id 0 pads and 1 is an unknown word; a word's suffix id (its last ``suffix_len`` letters, hashed
    into ``suffix_buckets``) still tells an unknown word's kind (``-ly``, ``-ing``, ``-tion``).
    """

    PAD, UNK = 0, 1

    def __init__(self, itos: list[str], suffix_buckets: int = 1024, suffix_len: int = 3):
        self.itos = list(itos)
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.suffix_buckets, self.suffix_len = suffix_buckets, suffix_len

    @classmethod
    def build(cls, words: Iterable[str], size: int, min_count: int = 2, **kw) -> WordVocab:
        """The ``size - 2`` most frequent words seen at least ``min_count`` times, after pad and unk."""
        counts = Counter(words)
        top = [w for w, n in counts.most_common(max(0, size - 2)) if n >= min_count]
        return cls(["<pad>", "<unk>"] + top, **kw)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, words: list[str]) -> tuple[list[int], list[int]]:
        """``(word ids, suffix ids)``, one each per word."""
        ids = [self.stoi.get(w, self.UNK) for w in words]
        # surrogatepass: a lone surrogate ('\ud800', from a mis-decoded file) is a word like any other
        sufs = [1 + zlib.crc32(w[-self.suffix_len:].encode("utf-8", "surrogatepass")) % (self.suffix_buckets - 1)
                for w in words]
        return ids, sufs

    def to_dict(self) -> dict:
        return {"itos": self.itos, "suffix_buckets": self.suffix_buckets, "suffix_len": self.suffix_len}

    @classmethod
    def from_dict(cls, d: dict) -> WordVocab:
        return cls(d["itos"], d["suffix_buckets"], d["suffix_len"])


class LabelScores:
    """Per-mark precision, recall and F1 and casing accuracy of predicted labels, summed over texts.

    A mark is right when the predicted mark after a word is the reference's; casing is right when
    the predicted case label is the reference's. ``lowercase_baseline`` is the casing accuracy of
    leaving every word lower-case, to read the accuracy against.
    """

    def __init__(self):
        self.tp, self.fp, self.fn = [0] * len(MARKS), [0] * len(MARKS), [0] * len(MARKS)
        self.words = self.case_right = self.lower_refs = 0

    def add(self, ref_marks: list[int], ref_cases: list[int], hyp_marks: list[int], hyp_cases: list[int]) -> None:
        for r, h in zip(ref_marks, hyp_marks, strict=True):
            if r == h:
                self.tp[r] += 1
            else:
                self.fp[h] += 1
                self.fn[r] += 1
        for r, h in zip(ref_cases, hyp_cases, strict=True):
            self.case_right += r == h
            self.lower_refs += r == 0
        self.words += len(ref_cases)

    def f1(self, mark: str) -> float:
        return self.summary()[mark]["f1"]

    def summary(self) -> dict:
        """``{"words", "case_accuracy", "lowercase_baseline", MARK: {"precision", "recall", "f1", "support"}}``."""
        out: dict = {"words": self.words, "case_accuracy": self.case_right / max(1, self.words),
                     "lowercase_baseline": self.lower_refs / max(1, self.words)}
        for m in range(1, len(MARKS)):
            p = self.tp[m] / max(1, self.tp[m] + self.fp[m])
            r = self.tp[m] / max(1, self.tp[m] + self.fn[m])
            out[MARKS[m]] = {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
                             "support": self.tp[m] + self.fn[m]}
        return out

    def table(self) -> str:
        """A Markdown table of :meth:`summary`."""
        s = self.summary()
        rows = ["| mark | precision | recall | F1 | support |", "| --- | ---: | ---: | ---: | ---: |"]
        rows += [f"| `{m}` | {s[m]['precision']:.3f} | {s[m]['recall']:.3f} | {s[m]['f1']:.3f} | {s[m]['support']} |"
                 for m in MARKS[1:]]
        rows.append(f"\ncasing accuracy {100 * s['case_accuracy']:.2f} % over {s['words']} words "
                    f"(all lower-case would score {100 * s['lowercase_baseline']:.2f} %)")
        return "\n".join(rows)
