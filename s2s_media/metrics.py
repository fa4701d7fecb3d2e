"""Error rates for speech recognition: WER and CER, computed with jiwer on normalised text.

Both references and hypotheses go through :func:`s2s_media.text.normalize_text` first, by the rules
of ``language`` (so "Dr. Smith, 2nd" and "dr smith second" match in English). For a language written
without spaces (Chinese, Japanese, Thai) CER ignores spaces, and CER is its headline metric
(:func:`headline_metric`). Counts are corpus-level: the rate is
``(S + D + I) / N`` over all utterances, not a mean of per-utterance rates.

An utterance whose reference is empty (after normalisation) is allowed: every hypothesis
word (or character) counts as an insertion. If *all* references are empty, ``N`` is 0 and the
rate is 0 when there are no errors and ``inf`` otherwise.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jiwer

from s2s_media.text.language import DEFAULT_LANGUAGE, get_language
from s2s_media.text.normalize import normalize_text


@dataclass(frozen=True)
class ErrorRate:
    """An error rate with its edit counts.

    rate: (substitutions + deletions + insertions) / ref_len.
    ref_len: reference words for WER, reference characters (spaces included) for CER.
    """

    rate: float
    substitutions: int
    deletions: int
    insertions: int
    ref_len: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    def __str__(self) -> str:
        return (f"{100 * self.rate:.2f}% [{self.errors} / {self.ref_len}, "
                f"sub {self.substitutions}, del {self.deletions}, ins {self.insertions}]")


def _prepare(refs: Sequence[str] | str, hyps: Sequence[str] | str, normalize: bool,
             language: str = DEFAULT_LANGUAGE) -> tuple[list[str], list[str]]:
    refs = [refs] if isinstance(refs, str) else list(refs)
    hyps = [hyps] if isinstance(hyps, str) else list(hyps)
    if not refs:
        raise ValueError("no references to score")
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    def clean(s: str) -> str:
        return normalize_text(s, language) if normalize else " ".join(s.split())
    return [clean(r) for r in refs], [clean(h) for h in hyps]


def _error_rate(refs: list[str], hyps: list[str], chars: bool) -> ErrorRate:
    scored = [(r, h) for r, h in zip(refs, hyps) if r]
    # empty references: jiwer rejects or mis-scores them; their hypotheses are all insertions
    insertions = sum(len(h) if chars else len(h.split()) for r, h in zip(refs, hyps) if not r)
    subs = dels = ref_len = 0
    if scored:
        process = jiwer.process_characters if chars else jiwer.process_words
        out = process([r for r, _ in scored], [h for _, h in scored])
        subs, dels, insertions = out.substitutions, out.deletions, insertions + out.insertions
        ref_len = out.hits + out.substitutions + out.deletions
    errors = subs + dels + insertions
    rate = errors / ref_len if ref_len else (0.0 if errors == 0 else float("inf"))
    return ErrorRate(rate, subs, dels, insertions, ref_len)


def wer(refs: Sequence[str] | str, hyps: Sequence[str] | str, normalize: bool = True,
        language: str = DEFAULT_LANGUAGE) -> ErrorRate:
    """Word error rate of ``hyps`` against ``refs`` (equal-length lists, or two strings).

    normalize: apply :func:`~s2s_media.text.normalize_text` with ``language`` to both sides (otherwise
    only whitespace is collapsed). Raises ValueError on an empty list or mismatched lengths.
    """
    r, h = _prepare(refs, hyps, normalize, language)
    return _error_rate(r, h, chars=False)


def cer(refs: Sequence[str] | str, hyps: Sequence[str] | str, normalize: bool = True,
        language: str = DEFAULT_LANGUAGE) -> ErrorRate:
    """Character error rate; spaces between words count as characters, except in a language written
    without spaces, where they are dropped. Same arguments as :func:`wer`."""
    r, h = _prepare(refs, hyps, normalize, language)
    if not get_language(language).spaces:
        r, h = ["".join(s.split()) for s in r], ["".join(s.split()) for s in h]
    return _error_rate(r, h, chars=True)


def headline_metric(language: str = DEFAULT_LANGUAGE) -> str:
    """``"wer"``, or ``"cer"`` for a language written without spaces: the figure to report first."""
    return get_language(language).headline_metric
