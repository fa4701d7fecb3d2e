"""VADs and segmentation: real espeak speech separated by silences, in noise, long speech without pauses;
the streaming form; a missing Silero model."""
from __future__ import annotations

import numpy as np
import pytest

from s2s_media.frontend.audio import SAMPLE_RATE, load_audio
from s2s_media.errors import UserError
from s2s_media.frontend.vad import (EnergyVad, SileroVad, StreamVad, VadConfig, frame_energy_db, make_vad, segment,
                                    speech_mask)
from s2s_media.frontend.vad import silero

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


@pytest.mark.parametrize("method", ["silero", "energy"])
def test_segments_start_at_each_utterance(tiny_corpus, method):
    wav, spans = _speech_with_gaps(tiny_corpus, 4, gap_s=1.5)
    cfg = VadConfig(method, max_segment_s=5)
    segs = segment(wav, cfg)
    assert len(segs) == len(spans)
    for seg, (start, end) in zip(segs, spans):
        assert start - cfg.pad_s - 0.05 <= seg.start / SR <= start + 0.25
        assert seg.end / SR >= end - 0.1 and seg.seconds <= cfg.max_segment_s
    # close neighbours are merged while they fit
    merged = segment(wav, VadConfig(method, max_segment_s=20, merge_gap_s=2.0))
    assert len(merged) == 1 and merged[0].start / SR < spans[0][0]


@pytest.mark.parametrize("method", ["silero", "energy"])
def test_silence_and_empty_give_no_segments(rng, method):
    cfg = VadConfig(method)
    assert segment(np.zeros(3 * SR, np.float32), cfg) == []
    assert segment(np.zeros(0, np.float32), cfg) == []
    assert segment((1e-5 * rng.standard_normal(3 * SR)).astype(np.float32), cfg) == []   # -100 dBFS hiss


def test_long_speech_without_pauses_is_hard_cut_within_the_limit(rng):
    wav = (0.1 * rng.standard_normal(45 * SR)).astype(np.float32)
    segs = segment(wav, VadConfig("energy", max_segment_s=20))   # noise stands for speech here
    assert 3 <= len(segs) <= 4
    assert segs[0].start == 0 and segs[-1].end == len(wav)
    assert all(a.end == b.start for a, b in zip(segs, segs[1:]))      # nothing lost between hard cuts
    assert all(s.seconds <= 20 for s in segs)


def test_long_speech_is_cut_in_its_pause(rng):
    loud = lambda s: (0.1 * rng.standard_normal(int(s * SR))).astype(np.float32)  # noqa: E731
    dip = np.zeros(int(0.15 * SR), np.float32)  # shorter than min_silence_s: still inside speech
    wav = np.concatenate([loud(14), dip, loud(14)])
    segs = segment(wav, VadConfig("energy", max_segment_s=20))
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
    with pytest.raises(ValueError, match="off_probability"):
        VadConfig(on_probability=0.3, off_probability=0.4)
    with pytest.raises(ValueError, match="unknown; choose from auto, silero, energy"):
        VadConfig("webrtc")


def _frame_truth(spans, frames: int) -> np.ndarray:
    truth = np.zeros(frames, bool)
    for a, b in spans:
        truth[int(a / 0.01):int(b / 0.01)] = True
    return truth


def _f1(pred: np.ndarray, truth: np.ndarray) -> float:
    tp = float((pred & truth).sum())
    return 2 * tp / max(float(pred.sum() + truth.sum()), 1.0)


def test_silero_finds_speech_in_loud_noise_where_energy_fails(tiny_corpus, rng):
    clean, spans = _speech_with_gaps(tiny_corpus, 4, gap_s=1.5)
    # brown-ish noise at 0 dB SNR: as loud as the speech, so energy has no floor to stand out from
    noise = np.cumsum(rng.standard_normal(clean.size)).astype(np.float32)
    noise -= np.convolve(noise, np.ones(400) / 400, mode="same")
    noise *= np.sqrt(np.mean(clean[clean != 0] ** 2) / np.mean(noise ** 2))
    wav = clean + noise
    truth = _frame_truth(spans, wav.size // 160 + 1)
    f1 = {m: _f1(v.speech_mask(v.scores(wav)), truth) for m, v in
          (("silero", SileroVad()), ("energy", EnergyVad()))}
    assert f1["silero"] > 0.8 and f1["silero"] > f1["energy"] + 0.1, f1


def test_silero_does_not_take_white_noise_for_speech(rng):
    wav = (0.1 * rng.standard_normal(5 * SR)).astype(np.float32)
    assert segment(wav, VadConfig("silero")) == []


@pytest.mark.parametrize("method", ["silero", "energy"])
def test_streaming_scores_equal_the_whole_recordings(tiny_corpus, rng, method):
    wav, _ = _speech_with_gaps(tiny_corpus, 2, gap_s=0.7)
    wav = wav[:wav.size - 77]                       # not a whole number of windows
    vad = make_vad(VadConfig(method))
    scorer, pieces, pos = vad.scorer(), [], 0
    while pos < wav.size:
        n = int(rng.integers(1, 3000))
        pieces.append(scorer.accept(wav[pos:pos + n]))
        pos += n
    pieces.append(scorer.finish())
    np.testing.assert_allclose(np.concatenate(pieces), vad.scores(wav), atol=1e-5)


def test_stream_vad_reports_trailing_silence(tiny_corpus):
    speech = load_audio(tiny_corpus / "wav/u00.wav")
    wav = np.concatenate([speech, np.zeros(2 * SR, np.float32)])
    sv = StreamVad(make_vad(VadConfig("silero")))
    for i in range(0, wav.size, 1600):
        sv.accept(wav[i:i + 1600])
    sv.finish()
    end = speech.size / SR
    shift = 0.04
    silent = sv.silent(0.0, int(wav.size / SR / shift), shift)
    speech_frames = [j for j, s in enumerate(silent) if not s]
    assert speech_frames and speech_frames[0] * shift < 0.5
    assert abs((speech_frames[-1] + 1) * shift - end) < 0.4          # speech ends where the utterance does
    assert all(silent[int((end + 0.4) / shift):])                    # then silence to the end
    assert sv.silent(100.0, 2, shift) == [True, True]                # not decided yet: the last decision
    assert StreamVad(make_vad(VadConfig("silero"))).silent(0.0, 2, shift) == [False, False]   # none: speech


def test_missing_silero_is_one_line_naming_the_package(monkeypatch):
    monkeypatch.setattr(silero, "available", lambda: False)
    silero._session.cache_clear()
    try:
        with pytest.raises(UserError, match="pip install 'silero-vad>=6.2.2' onnxruntime") as err:
            make_vad(VadConfig("silero"))
        assert "\n" not in str(err.value)
        assert isinstance(make_vad(VadConfig("auto")), EnergyVad)   # auto falls back to energy
    finally:
        silero._session.cache_clear()
