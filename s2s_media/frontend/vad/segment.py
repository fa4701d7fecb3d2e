"""Segmentation of long audio into pieces the model decodes comfortably.

Long recordings are cut into pieces of at most ``max_segment_s`` (20 s by default; the recipes
train on utterances up to 15 s). The cut points fall in pauses: speech regions (the detector's
decision, :mod:`s2s_media.frontend.vad.base`) are padded by ``pad_s``, neighbours closer than
``merge_gap_s`` are merged while the merged span stays within ``max_segment_s``, and a region still
longer than that is split at its least speech-like moment in the second half of each window: a
pause if there is one, a hard cut at the quietest frame only as the last resort.

Silence longer than ``merge_gap_s`` between segments is not decoded.
"""
from __future__ import annotations

import numpy as np

from s2s_media.frontend.audio import HOP_LENGTH
from s2s_media.frontend.vad.base import FRAME_S, Segment, Vad, VadConfig, runs
from s2s_media.frontend.vad.registry import make_vad


def _split_long(start: int, end: int, scores: np.ndarray, max_frames: int) -> list[tuple[int, int]]:
    """Cut the frame range ``[start, end)`` into pieces of at most ``max_frames``, each cut at the
    lowest score (smoothed over 50 ms) of the second half of its window."""
    smooth = np.convolve(scores, np.ones(5) / 5, mode="same") if scores.size >= 5 else scores
    out = []
    while end - start > max_frames:
        lo, hi = start + max_frames // 2, start + max_frames
        cut = lo + int(np.argmin(smooth[lo:hi]))
        out.append((start, cut))
        start = cut
    out.append((start, end))
    return out


def segments_from_mask(mask: np.ndarray, scores: np.ndarray, samples: int, cfg: VadConfig) -> list[Segment]:
    """Segments of a recording of ``samples`` samples from its frame decision and scores ``(frames,)``."""
    pad = int(round(cfg.pad_s / FRAME_S))
    gap = int(round(cfg.merge_gap_s / FRAME_S))
    max_frames = int(cfg.max_segment_s / FRAME_S)
    n = scores.size
    # speech runs longer than the limit are split first, so merging below only has to respect it
    spans: list[tuple[int, int]] = []
    for s, e in runs(mask):
        spans.extend(_split_long(s, e, scores, max_frames - 2 * pad))
    merged: list[list[int]] = []
    for s, e in spans:
        s, e = max(0, s - pad), min(n, e + pad)
        if merged and s - merged[-1][1] <= gap and e - merged[-1][0] <= max_frames:
            merged[-1][1] = e
        elif merged and s < merged[-1][1]:  # padding overlaps a neighbour it cannot merge with
            mid = (merged[-1][1] + s) // 2
            merged[-1][1], s = mid, mid
            merged.append([s, e])
        else:
            merged.append([s, e])
    return [Segment(min(s * HOP_LENGTH, samples), min(e * HOP_LENGTH, samples))
            for s, e in merged if min(e * HOP_LENGTH, samples) > min(s * HOP_LENGTH, samples)]


def segment(wav: np.ndarray, cfg: VadConfig = VadConfig(), vad: Vad | None = None) -> list[Segment]:
    """Speech segments of ``wav: (samples,)`` at 16 kHz, in order, each at most ``cfg.max_segment_s``.

    ``vad``: the detector (default: the one ``cfg.method`` names). Segments never overlap. An empty
    list means no speech was found.
    """
    vad = vad or make_vad(cfg)
    scores = vad.scores(wav)
    return segments_from_mask(vad.speech_mask(scores), scores, len(wav), cfg)
