"""Energy VAD and segmentation: real espeak speech separated by silences, long speech without pauses."""
from __future__ import annotations

import numpy as np
import pytest

from s2s_media.frontend.audio import SAMPLE_RATE, load_audio
from s2s_media.frontend.vad import VadConfig, frame_energy_db, segment, speech_mask

SR = SAMPLE_RATE


def _speech_with_gaps(tiny_corpus, n: int, gap_s: float) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """``n`` corpus utterances separated (and surrounded) by ``gap_s`` of silence; their true spans."""
    parts, spans, pos = [], [], 0
    gap = np.zeros(int(gap_s * SR), np.float32)
    for i in range(n):
        wav = load_audio(tiny_corpus / f"wav/u{i:02d}.wav")
        parts += [gap, wav]
        pos += len(gap)
        spans.append((pos / SR, (pos + len(wav)) / SR))
        pos += len(wav)
    return np.concatenate(parts + [gap]), spans


def test_frame_energy_matches_the_logmel_grid():
    t = np.arange(SR) / SR
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    e = frame_energy_db(tone)
    assert e.shape == (SR // 160 + 1,)
    assert abs(float(np.median(e)) - (-3.01)) < 0.1          # RMS of a full-scale sine
    assert frame_energy_db(np.zeros(800, np.float32)).max() < -100


def test_segments_start_at_each_utterance(tiny_corpus):
    wav, spans = _speech_with_gaps(tiny_corpus, 4, gap_s=1.5)
    cfg = VadConfig(max_segment_s=5)
    segs = segment(wav, cfg)
    assert len(segs) == len(spans)
    for seg, (start, end) in zip(segs, spans):
        assert start - cfg.pad_s - 0.05 <= seg.start / SR <= start + 0.25
        assert seg.end / SR >= end - 0.1 and seg.seconds <= cfg.max_segment_s
    # close neighbours are merged while they fit
    merged = segment(wav, VadConfig(max_segment_s=20, merge_gap_s=2.0))
    assert len(merged) == 1 and merged[0].start / SR < spans[0][0]


def test_silence_and_empty_give_no_segments(rng):
    assert segment(np.zeros(3 * SR, np.float32)) == []
    assert segment(np.zeros(0, np.float32)) == []
    assert segment((1e-5 * rng.standard_normal(3 * SR)).astype(np.float32)) == []   # -100 dBFS hiss


def test_long_speech_without_pauses_is_hard_cut_within_the_limit(rng):
    wav = (0.1 * rng.standard_normal(45 * SR)).astype(np.float32)
    segs = segment(wav, VadConfig(max_segment_s=20))
    assert 3 <= len(segs) <= 4
    assert segs[0].start == 0 and segs[-1].end == len(wav)
    assert all(a.end == b.start for a, b in zip(segs, segs[1:]))      # nothing lost between hard cuts
    assert all(s.seconds <= 20 for s in segs)


def test_long_speech_is_cut_in_its_pause(rng):
    loud = lambda s: (0.1 * rng.standard_normal(int(s * SR))).astype(np.float32)  # noqa: E731
    dip = np.zeros(int(0.15 * SR), np.float32)  # shorter than min_silence_s: still inside speech
    wav = np.concatenate([loud(14), dip, loud(14)])
    segs = segment(wav, VadConfig(max_segment_s=20))
    assert len(segs) == 2
    assert 14.0 <= segs[0].end / SR <= 14.15 and segs[0].end == segs[1].start


def test_hysteresis_keeps_a_dip_inside_a_word(rng):
    noise = lambda s, a: (a * rng.standard_normal(int(s * SR))).astype(np.float32)  # noqa: E731
    cfg = VadConfig(min_silence_s=0.1)
    # -80 dB silence, -10 dB speech, and a stretch at -64 dB: between the off (-70) and on (-59) thresholds
    wav = np.concatenate([noise(1, 1e-4), noise(1, 0.3), noise(0.6, 6e-4), noise(1, 0.3), noise(1, 1e-4)])
    edges = np.flatnonzero(np.diff(speech_mask(frame_energy_db(wav), cfg).astype(int)))
    assert len(edges) == 2                     # one speech run, the quieter middle included
    assert abs(edges[0] * 0.01 - 1.0) < 0.05 and abs(edges[1] * 0.01 - 3.6) < 0.05
    # the same quiet stretch on its own never reaches the on threshold: not speech
    wav = np.concatenate([noise(1, 1e-4), noise(1, 0.3), noise(1, 1e-4), noise(0.6, 6e-4), noise(1, 1e-4),
                          noise(1, 0.3), noise(1, 1e-4)])
    mask = speech_mask(frame_energy_db(wav), cfg)
    assert not mask[int(3.1 / 0.01):int(3.5 / 0.01)].any()


def test_config_is_checked():
    with pytest.raises(ValueError, match="max_segment_s"):
        VadConfig(max_segment_s=0.5)
    with pytest.raises(ValueError, match="off_fraction"):
        VadConfig(on_fraction=0.1, off_fraction=0.2)
