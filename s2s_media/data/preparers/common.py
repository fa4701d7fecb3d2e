"""What every preparer shares: counting and logging bad entries, writing split manifests, checking SRC."""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from tqdm import tqdm

from s2s_media.data.manifest import AudioRecord, write_manifest
from s2s_media.errors import AudioError, UserError
from s2s_media.frontend.audio import audio_duration
from s2s_media.text.language import DEFAULT_LANGUAGE, get_language
from s2s_media.text.normalize import keeps_digits, normalize_text

log = logging.getLogger("s2s_media.data.preparers")

Preparer = Callable[..., dict[str, Path]]


@dataclass
class Issues:
    """Entries skipped during one preparation run, counted by reason.

    The first ``show`` entries of each reason are logged as one warning line each; :meth:`report`
    logs the totals at the end.
    """
    name: str
    show: int = 10
    counts: Counter = field(default_factory=Counter)
    kept: int = 0
    digits: int = 0         # kept transcripts that still hold digits (no number verbaliser for the language)

    def skip(self, reason: str, detail: str) -> None:
        """Count one skipped entry under ``reason``; ``detail`` is the one-line explanation."""
        self.counts[reason] += 1
        if self.counts[reason] <= self.show:
            log.warning("%s: %s", self.name, detail)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def report(self) -> None:
        """Log a one-line summary of everything skipped (nothing if nothing was)."""
        if not self.counts:
            return
        parts = ", ".join(f"{n} {reason}" for reason, n in self.counts.most_common())
        hidden = any(n > self.show for n in self.counts.values())
        log.warning("%s: kept %d utterances, skipped %d: %s%s", self.name, self.kept, self.total, parts,
                    f" (first {self.show} of each kind shown above)" if hidden else "")
        if self.counts["empty transcripts"] > self.kept:
            log.warning("%s: most transcripts are empty after normalisation; the English normaliser keeps only "
                        "a-z and apostrophes: give the corpus's language (commonvoice --language)", self.name)

    def report_digits(self, language: str) -> None:
        """Log how many kept transcripts hold digits that no verbaliser for ``language`` spelled out."""
        if self.digits:
            log.warning("%s: %d of %d transcripts keep digits (no number verbaliser for '%s'); they are marked "
                        "\"digits\": true in the manifests", self.name, self.digits, self.kept, language)


def make_record(issues: Issues, utt_id: str, audio: str | Path, text: str, duration: float,
                speaker: str | None = None, offset: float | None = None,
                language: str | None = None) -> AudioRecord | None:
    """Build a manifest record with a normalised transcript, or count why there is none.

    ``language``: normalise by that language's rules and mark the record with it (and with
    ``digits`` when the transcript keeps digits); ``None``: English rules, record unmarked.
    Returns ``None`` (and records the reason in ``issues``) for transcripts that are empty after
    normalisation and for non-positive durations.
    """
    norm = normalize_text(text, language or DEFAULT_LANGUAGE)
    if not norm:
        issues.skip("empty transcripts", f"{utt_id}: transcript {text.strip()!r} is empty after normalisation; skipped")
        return None
    if duration <= 0:
        issues.skip("zero-length audio", f"{utt_id}: {audio} has no audio (duration {duration:.3f} s); skipped")
        return None
    issues.kept += 1
    digits = language is not None and not get_language(language).verbalises_numbers and keeps_digits(norm)
    issues.digits += digits
    return AudioRecord(id=utt_id, audio=str(audio), text=norm, duration=round(float(duration), 4),
                       speaker=speaker or None, offset=None if offset is None else round(float(offset), 4),
                       language=language, digits=True if digits else None)


def write_splits(out: Path, splits: dict[str, list], issues: Issues, expected: str,
                 writer: Callable[[Path, list], object] = write_manifest, items: str = "utterances") -> dict[str, Path]:
    """Write each non-empty split to ``out/<split>.jsonl`` with ``writer(path, records)``; returns
    ``{split: path}``.

    Empty splits are skipped with a warning. If every split is empty, raises :class:`UserError`
    with ``expected`` (a description of the expected input) in the message. ``items`` names what
    the records are in those messages (``utterances``; the caption preparers say ``images``).
    """
    issues.report()
    written: dict[str, Path] = {}
    for split, records in splits.items():
        if not records:
            log.warning("%s: split '%s' has no usable %s; %s.jsonl not written", issues.name, split, items, split)
            continue
        path = out / f"{split}.jsonl"
        writer(path, records)
        written[split] = path
    if not written:
        why = f" ({issues.total} entries skipped, see the warnings above)" if issues.total else ""
        raise UserError(f"{issues.name}: no usable {items} found{why}; expected {expected}")
    return written


def require_dir(src: Path, name: str, expected: str) -> Path:
    """Return ``src`` if it is an existing directory, else raise a one-line :class:`UserError`."""
    if not src.exists():
        raise UserError(f"{name}: SRC {src} does not exist; expected {expected}")
    if not src.is_dir():
        raise UserError(f"{name}: SRC {src} is a file, not a directory; expected {expected}")
    return src


def progress(items: Iterable, desc: str, total: int | None = None) -> Iterable:
    """A tqdm bar over ``items`` (shown only on a terminal)."""
    return tqdm(items, desc=desc, total=total, unit="file", disable=None, leave=False, dynamic_ncols=True)


def header_duration(path: Path, utt_id: str, issues: Issues) -> float | None:
    """Duration of ``path`` from its header, or ``None`` (counted) if the file is unreadable."""
    try:
        return audio_duration(path)
    except AudioError as e:
        issues.skip("unreadable audio", f"{utt_id}: {e}; skipped")
        return None
