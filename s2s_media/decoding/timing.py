"""Word timing: tokens -> words with start/end times and confidences (whisper keeps this in ``timing.py`` too).

CTC methods (``ctc_greedy``, ``ctc_prefix_beam``, ``rescoring``) give every token its peak frame on
the best alignment and its posterior there. ``attention`` hypotheses have no frames; when the model
has a CTC head, :func:`ctc_align` force-aligns the hypothesis to the CTC posteriors (Viterbi, numpy, so the
ONNX runtime has it too) and each token takes the peak of its aligned span.

Encoder frame ``t`` of a segment starting at ``s`` seconds is at ``s + t * shift``, where ``shift`` is
the encoder frame shift (:attr:`s2s_media.models.seq2seq.AudioEncoder.frame_shift`). A word starts at
its first token's frame and ends one frame shift after its last token's frame (CTC emits a token as
a spike, so this is the end of the spike, not of the sound). Its confidence is the **minimum**
posterior of its tokens: a word is as sure as its least sure piece. Without frames the tokens are
spread evenly over the segment and confidences are ``None``. A model may come with a
:class:`ConfidenceCalibration` (fitted by ``scripts/calibrate_confidence.py``, stored beside the
checkpoint): the minimum posterior is then mapped to the probability that the word is right.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from s2s_media.arrays import to_numpy
from s2s_media.decoding.types import Decoded
from s2s_media.errors import UserError
from s2s_media.text.tokenizer import BLANK, Tokenizer


def word_spans(tokenizer: Tokenizer, tokens: list[int]) -> list[tuple[str, list[int]]]:
    """Group tokens into words: ``[(word, [token positions])]``.

    Word tokenizers: one word per token. SentencePiece: a piece starting with ``▁`` starts a word.
    Characters: the space unit ``▁`` separates words. Special and task tokens (and ``<unk>``,
    which :meth:`Tokenizer.decode` drops too) belong to no word.
    """
    itos, reserved = tokenizer.itos, tokenizer.num_reserved
    words: list[tuple[str, list[int]]] = []
    current: list | None = None
    for k, tok in enumerate(tokens):
        if not reserved <= tok < len(itos):
            continue
        unit = itos[tok]
        if tokenizer.kind == "word" or unit.startswith("▁"):
            current = None
            unit = unit if tokenizer.kind == "word" else unit.lstrip("▁")
        if not unit:
            continue
        if current is None:
            current = [unit, [k]]
            words.append(current)
        else:
            current[0] += unit
            current[1].append(k)
    return [(w, ks) for w, ks in words]


@dataclass(frozen=True)
class ConfidenceCalibration:
    """Platt scaling of word confidences: ``p = sigmoid(a * logit(c) + b)`` for a raw confidence ``c``
    (the minimum token posterior), fitted on a dev set's words labelled right or wrong."""
    a: float
    b: float
    fitted_on: str = ""                 # what it was fitted on, for the record

    EPS = 1e-6

    def __call__(self, c: float) -> float:
        c = min(max(c, self.EPS), 1.0 - self.EPS)
        z = self.a * math.log(c / (1.0 - c)) + self.b
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))

    @staticmethod
    def path_for(model_path: str | Path) -> Path:
        """Where a checkpoint's calibration is stored: ``MODEL.calibration.json`` beside ``MODEL.pt``,
        ``DIR/calibration.json`` in an ONNX model directory."""
        p = Path(model_path)
        return p / "calibration.json" if p.is_dir() else p.with_suffix(".calibration.json")

    @classmethod
    def read(cls, model_path: str | Path) -> ConfidenceCalibration | None:
        """The calibration stored beside ``model_path``, or None when there is none."""
        p = cls.path_for(model_path)
        if not p.is_file():
            return None
        try:
            d = json.loads(p.read_text())["word_confidence"]
            return cls(float(d["a"]), float(d["b"]), str(d.get("fitted_on", "")))
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"{p}: not a word-confidence calibration ({type(e).__name__}: {e}); delete it or "
                            "write it again with scripts/calibrate_confidence.py") from None

    def write(self, model_path: str | Path, report: dict | None = None) -> Path:
        p = self.path_for(model_path)
        p.write_text(json.dumps({"word_confidence": {"method": "platt", **asdict(self)}, **(report or {})},
                                indent=1) + "\n")
        return p


def tokens_to_words(tokenizer: Tokenizer, d: Decoded, shift: float, start_s: float, end_s: float,
                    calibration: ConfidenceCalibration | None = None) -> list[dict]:
    """A segment's tokens as words ``{"word", "start", "end", "confidence"}`` with absolute times.

    Words are :func:`word_spans`. Token ``k`` is at ``start_s + d.frames[k] * shift``; a word spans
    its first token's time to its last token's time plus ``shift``, clipped to ``end_s``; its
    confidence is the minimum of its tokens' posteriors, through ``calibration`` when given.
    Without frames the tokens are spread evenly over the segment (confidence None).
    """
    tokens, frames, probs = d.tokens, d.frames, d.probs
    if len(frames) != len(tokens):
        n_frames = max(1, int((end_s - start_s) / shift))
        frames = [int(k * n_frames / max(1, len(tokens))) for k in range(len(tokens))]
        probs = [None] * len(tokens)
    out = []
    for word, ks in word_spans(tokenizer, tokens):
        ps = [probs[k] for k in ks]
        conf = None if None in ps else min(ps)
        if conf is not None and calibration is not None:
            conf = calibration(conf)
        start = min(start_s + frames[ks[0]] * shift, end_s)
        end = start_s + frames[ks[-1]] * shift + shift
        out.append({"word": word, "start": round(start, 3), "end": round(max(start, min(end, end_s)), 3),
                    "confidence": None if conf is None else round(conf, 4)})
    return out


def hypothesis_confidences(scores: list[float]) -> list[float]:
    """The confidence of each of a search's hypotheses: its share of their summed probability
    (softmax of the log scores the search ranked them by), so an n-best list's confidences add up
    to at most 1. ``-inf`` scores get 0."""
    finite = [s for s in scores if s > float("-inf")]
    if not finite:
        return [0.0] * len(scores)
    top = max(finite)
    weights = [math.exp(s - top) if s > float("-inf") else 0.0 for s in scores]
    total = sum(weights)
    return [w / total for w in weights]


def ctc_align(log_probs, tokens: list[int]) -> tuple[list[int], list[float]] | None:
    """Force-align ``tokens`` to CTC log-posteriors ``(T, V)`` (numpy or a tensor): the best path through every
    token (the usual trellis: a blank between and around them, a repeated token needs a blank between); per
    token the frame of its run with the highest posterior, and that posterior. None when they do not fit in
    ``T`` frames."""
    if not tokens:
        return [], []
    lp_all = to_numpy(log_probs).astype(np.float32)
    ext = np.full(2 * len(tokens) + 1, BLANK)
    ext[1::2] = tokens
    lp = lp_all[:, ext]                                          # (T, S)
    n_frames, n_states = lp.shape
    skip = np.zeros(n_states, bool)
    skip[3::2] = ext[3::2] != ext[1:-2:2]
    delta = np.full(n_states, -np.inf, np.float32)
    delta[:2] = lp[0, :2]
    back = np.zeros((n_frames, n_states), np.int8)
    cand = np.full((3, n_states), -np.inf, np.float32)
    for t in range(1, n_frames):
        cand[0] = delta
        cand[1, 1:] = delta[:-1]
        cand[2, 2:] = np.where(skip[2:], delta[:-2], -np.inf)
        back[t] = cand.argmax(0)
        delta = cand[back[t], np.arange(n_states)] + lp[t]
    s = n_states - 1 if delta[-1] >= delta[-2] else n_states - 2
    if not np.isfinite(delta[s]):
        return None
    states = np.zeros(n_frames, np.int64)
    for t in range(n_frames - 1, -1, -1):
        states[t] = s
        s -= int(back[t, s])
    frames, probs = [], []
    t = 0
    while t < n_frames:
        u = t
        while u < n_frames and states[u] == states[t]:
            u += 1
        if states[t] % 2:
            k = t + int(lp[t:u, states[t]].argmax())
            frames.append(k)
            probs.append(float(np.exp(lp[k, states[t]])))
        t = u
    return (frames, probs) if len(frames) == len(tokens) else None
