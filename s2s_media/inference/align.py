"""Forced alignment: a known transcript placed on its audio with the model's CTC head.

The transcript is normalised by the model's ``tokenizer.language`` and tokenised word by word (the
character tokenizer's space unit ``▁`` goes between words, as in training; in a language written
without spaces every character is a word). Then:

- audio up to ``window_s`` long is aligned whole: ``torchaudio.functional.forced_align`` over every
  token (:func:`s2s_media.decoding.align.align_all`);
- longer audio is aligned window by window, so memory stays bounded by one window (its samples, its
  encoder pass, its trellis). In each window an *anchor search* (:func:`~s2s_media.decoding.align.align_prefix`)
  finds how much of the rest of the transcript the window holds: the path may start a few words
  late (skipping transcript that is not in the audio, at a cost per word) and end anywhere. Words
  that end before the window's last ``margin_s`` are kept; the next window starts where the last
  kept word ends (the anchor). A window where nothing is found is passed over. The last window
  is aligned with ``forced_align`` when the rest of the transcript fits in it, unless that puts
  the transcript's last word where it is not (the audio ended first): then the anchor search.

Words are never invented: a word whose tokens the model does not know, that the search skipped,
that lies past the end of the audio, or whose confidence is under
``min_confidence`` is kept in the output with ``"aligned": false`` and no times.

A word spans its first token's first frame to its last token's last frame (frame ``t`` of a window
starting at ``s`` seconds is at ``s + t * shift``). Its confidence is the geometric mean of its
tokens' peak posteriors: a transcript word that is not in the audio gets near-zero posteriors on
every token, while one badly recognised letter of a spoken word should not unseat it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from s2s_media.decoding.align import TokenSpan, align_all, align_prefix
from s2s_media.errors import UserError
from s2s_media.frontend.audio import SAMPLE_RATE, audio_duration, load_audio
from s2s_media.frontend.logmel import LogMel
from s2s_media.inference.checkpoint import LoadedModel
from s2s_media.progress import progress_bar
from s2s_media.text.language import get_language
from s2s_media.text.normalize import normalize_text
from s2s_media.text.tokenizer import UNK

MIN_WINDOW_S = 4.0


@dataclass
class AlignOptions:
    window_s: float = 30.0          # longest audio encoded at once; longer audio is aligned in windows
    margin_s: float = 2.0           # words ending this close to a window's end wait for the next window
    skip_penalty: float = 30.0      # cost (nats) of each transcript word the anchor search skips
    max_skip: int = 8               # words the anchor search may skip at the start of a window
    min_confidence: float = 0.02    # a word whose confidence (see the module docstring) is lower is not aligned:
                                    # the bundled model gives a word absent from the audio 0.014 in 5 s windows

    def check(self) -> None:
        if self.window_s < MIN_WINDOW_S:
            raise UserError(f"--window {self.window_s}: must be at least {MIN_WINDOW_S} seconds")
        if not 0 <= self.margin_s < self.window_s / 2:
            raise UserError(f"--margin {self.margin_s}: must be >= 0 and under half the window ({self.window_s} s)")
        if not 0.0 <= self.min_confidence < 1.0:
            raise UserError(f"--min-confidence {self.min_confidence}: must be within [0, 1)")


@dataclass
class _Word:
    text: str
    tokens: list[int]               # target positions of its tokens
    sep: int | None                 # target position of the separator before it, if any


class _Targets:
    """The token sequence of a transcript and which word each token belongs to."""

    def __init__(self, words: list[str], encode: Callable[[str], list[int]], sep_id: int | None,
                 sep_between: list[bool]):
        self.ids: list[int] = []
        self.words: list[_Word] = []
        self.unknown: set[int] = set()                    # words with no token the model knows
        for k, (word, sep_before) in enumerate(zip(words, sep_between)):
            known = [t for t in encode(word) if t != UNK]
            sep = None
            if known and sep_before and sep_id is not None and self.ids:
                sep = len(self.ids)
                self.ids.append(sep_id)
            positions = list(range(len(self.ids), len(self.ids) + len(known)))
            self.ids += known
            self.words.append(_Word(word, positions, sep))
            if not known:
                self.unknown.add(k)

    def first(self, k: int) -> int:
        """Target position where word ``k`` begins (its separator, else its first token)."""
        w = self.words[k]
        return w.sep if w.sep is not None else w.tokens[0]


class Aligner:
    """Align transcripts to audio with a loaded model's CTC head (see the module docstring)."""

    def __init__(self, loaded: LoadedModel, device: torch.device | str = "cpu",
                 options: AlignOptions | None = None):
        if loaded.model.ctc is None:
            raise UserError("align: this model has no CTC head (trained with model.ctc_weight 0); "
                            "alignment needs one")
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        self.device = torch.device(device)
        self.options = options or AlignOptions()
        self.options.check()
        self.language = get_language(loaded.config.tokenizer.language)
        self.shift = self.model.encoders["audio"].frame_shift
        self.logmel = LogMel(loaded.config.model.n_mels)
        self.windows = 0                    # windows encoded so far (for progress and tests)
        self.longest_window_s = 0.0

    # ---- transcript -> targets
    def targets(self, text: str) -> tuple[str, _Targets]:
        """``(normalised text, targets)``. Character tokenizers put their space unit between words."""
        norm = normalize_text(text, self.language.tag)
        sep_id = self.tokenizer.stoi.get("▁") if self.tokenizer.kind == "char" else None
        words, seps = [], []
        for word in norm.split():
            pieces = [word] if self.language.spaces else list(word)
            words += pieces
            seps += [True] + [False] * (len(pieces) - 1)
        return norm, _Targets(words, self.tokenizer.encode, sep_id, seps)

    # ---- audio -> posteriors
    @torch.inference_mode()
    def log_probs(self, wav: np.ndarray) -> torch.Tensor:
        """``wav: (samples,)`` 16 kHz -> CTC log-posteriors ``(T, V)`` on the CPU."""
        self.windows += 1
        self.longest_window_s = max(self.longest_window_s, len(wav) / SAMPLE_RATE)
        feats = self.logmel(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))[None]).to(self.device)
        memory, mask = self.model.encode(feats, torch.tensor([feats.size(1)], device=self.device))
        return self.model.ctc(memory)[0, : int(mask[0].sum())].float().cpu()

    # ---- alignment
    def align_file(self, path: str, text: str, offset: float = 0.0, duration: float | None = None) -> dict:
        """Align ``text`` to the audio file ``path`` (or its ``[offset, offset + duration)``), reading one
        window at a time. Returns the record described in :meth:`align_reader`."""
        total = duration if duration is not None else audio_duration(path) - offset
        if total <= 0:
            raise UserError(f"{path}: no audio after offset {offset} s")
        record = self.align_reader(lambda s, d: load_audio(path, offset=offset + s, duration=d), total, text)
        return {"path": str(path), **record}

    def align_array(self, wav: np.ndarray, text: str) -> dict:
        """Align ``text`` to ``wav: (samples,)`` at 16 kHz."""
        return self.align_reader(lambda s, d: wav[int(round(s * SAMPLE_RATE)):int(round((s + d) * SAMPLE_RATE))],
                                 len(wav) / SAMPLE_RATE, text)

    def align_reader(self, read: Callable[[float, float], np.ndarray], total_s: float, text: str) -> dict:
        """Align ``text`` to ``total_s`` seconds of audio that ``read(start_s, seconds)`` returns piece by piece.

        Returns ``{"text", "duration", "language", "words": [{"word", "start", "end", "confidence",
        "aligned"}], "tokens": [{"token", "start", "end", "prob", "word"}], "unaligned"}``: times in
        seconds, ``None`` for words that are not aligned (``"reason"`` says why); ``tokens`` lists the
        tokens of aligned words (``word`` is the index into ``words``).
        """
        norm, tg = self.targets(text)
        if not tg.words:
            raise UserError(f"the transcript {text[:60]!r} is empty after normalisation "
                            f"(language {self.language.tag})")
        spans: dict[int, tuple[float, float, float]] = {}      # target position -> (start s, end s, prob)
        reasons: dict[int, str] = {k: "no token of this word is known to the model" for k in tg.unknown}
        o, w, pos = self.options, 0, 0.0
        bar = progress_bar(total=round(total_s, 1), desc="aligning", unit="s")
        while w < len(tg.words) and pos < total_s - self.shift:
            if w in reasons:
                w += 1
                continue
            win = min(o.window_s, total_s - pos)
            last = pos + win >= total_s - 1e-6
            w_next, end_frame = self._window(self.log_probs(read(pos, win)), tg, w, last, pos, spans, reasons)
            if w_next > w:                       # the next window starts where the last kept word ends
                step = end_frame * self.shift
            elif last:                           # the rest of the transcript is not in the rest of the audio
                break
            else:                                # nothing found here: pass the window over
                step = win - o.margin_s
            bar.update(round(min(step, total_s - pos), 1))
            pos, w = pos + step, w_next
        bar.close()
        for k in range(len(tg.words)):
            if k not in reasons and not all(i in spans for i in tg.words[k].tokens):
                reasons[k] = "not found in the audio"
        return self._record(norm, total_s, tg, spans, reasons)

    def _window(self, lp: torch.Tensor, tg: _Targets, w: int, last: bool, pos: float,
                spans: dict[int, tuple[float, float, float]], reasons: dict[int, str]) -> tuple[int, int]:
        """Align one window ``lp: (T, V)`` starting at ``pos`` seconds from word ``w``; store the spans of
        the words it keeps. Returns ``(next word, frame where the last kept word ends)``."""
        o = self.options
        n_frames = lp.size(0)
        lo = tg.first(w)
        ids = tg.ids[lo:]
        if len(ids) > n_frames:                              # more tokens than frames can't fit: cut
            ids = ids[:n_frames]
        found = align_all(lp, ids) if last and len(ids) == len(tg.ids) - lo else None
        if found is not None and self._confidence([found[i - lo].prob for i in tg.words[-1].tokens]) \
                < o.min_confidence:
            found = None        # forced to the end, the last word is not there: the audio may end first
        if found is None:
            starts = []
            for k in range(w, min(len(tg.words), w + o.max_skip + 1)):
                if k in reasons:
                    continue
                for p in {tg.first(k), tg.words[k].tokens[0]}:
                    if p - lo < len(ids):
                        starts.append((p - lo, (k - w) * o.skip_penalty))
            found = align_prefix(lp, ids, starts)
        by_pos = {lo + s.index: s for s in found}
        limit = n_frames if last else n_frames - int(o.margin_s / self.shift)
        kept_any, k_next, end_frame = False, w, 0
        for k in range(w, len(tg.words)):
            if k in reasons:
                continue
            word = tg.words[k]
            got = [by_pos.get(i) for i in word.tokens]
            if all(g is not None for g in got) and got[-1].end <= limit:
                for i, g in zip(word.tokens, got):
                    spans[i] = (pos + g.start * self.shift, pos + g.end * self.shift, g.prob)
                kept_any, k_next, end_frame = True, k + 1, got[-1].end
            elif any(g is not None for g in got) or kept_any:
                break
        if kept_any:
            for k in range(w, k_next):                       # skipped by the anchor search
                if k not in reasons and not all(i in spans for i in tg.words[k].tokens):
                    reasons[k] = "skipped: not found where the transcript places it"
        return k_next, end_frame

    @staticmethod
    def _confidence(probs: list[float]) -> float:
        """A word's confidence: the geometric mean of its tokens' peak posteriors."""
        return float(np.exp(np.mean(np.log(np.maximum(probs, 1e-12)))))

    def _record(self, norm: str, total_s: float, tg: _Targets, spans: dict[int, tuple[float, float, float]],
                reasons: dict[int, str]) -> dict:
        words, tokens = [], []
        for k, word in enumerate(tg.words):
            if k in reasons:
                words.append({"word": word.text, "start": None, "end": None, "confidence": None,
                              "aligned": False, "reason": reasons[k]})
                continue
            got = [spans[i] for i in word.tokens]
            conf = self._confidence([g[2] for g in got])
            if conf < self.options.min_confidence:
                words.append({"word": word.text, "start": None, "end": None, "confidence": round(conf, 4),
                              "aligned": False, "reason": f"confidence {conf:.4f} under {self.options.min_confidence}"})
                continue
            words.append({"word": word.text, "start": round(got[0][0], 3), "end": round(min(got[-1][1], total_s), 3),
                          "confidence": round(conf, 4), "aligned": True})
            for i, g in zip(word.tokens, got):
                tokens.append({"token": self.tokenizer.itos[tg.ids[i]], "start": round(g[0], 3),
                               "end": round(min(g[1], total_s), 3), "prob": round(g[2], 4), "word": k})
        unaligned = sum(not x["aligned"] for x in words)
        return {"text": norm, "duration": round(total_s, 3), "language": self.language.tag, "words": words,
                "tokens": tokens, "unaligned": unaligned}


__all__ = ["AlignOptions", "Aligner", "TokenSpan"]
