"""StreamingRecognizer end to end with a tiny random model on espeak-ng speech."""
from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import torch

from s2s_media.frontend.audio import resample
from s2s_media.frontend.logmel_np import log_mel
from s2s_media.config import DecodeConfig
from s2s_media.decoding.native import NativeCTCSearch
from s2s_media.errors import UserError
from s2s_media.inference.evaluate import offline_decode
from s2s_media.inference.pipeline import Searcher
from s2s_media.inference.streaming import EndpointConfig, StreamingConfig, StreamingRecognizer

NO_ENDPOINT = EndpointConfig(enabled=False)


def recognizer(loaded, **over) -> StreamingRecognizer:
    return StreamingRecognizer(loaded, StreamingConfig(**{"endpoint": NO_ENDPOINT, **over}))


def feed_all(rec, stream, pieces, sample_rate=16000) -> list[dict]:
    """Feed pieces, decoding whenever ready, then finish; every event in order."""
    events = []
    for piece in pieces:
        stream.accept_waveform(piece, sample_rate)
        while rec.is_ready(stream):
            rec.decode_streams([stream])
        events += stream.pop_events()
    stream.input_finished()
    while not stream.done:
        rec.decode_streams([stream])
    return events + stream.pop_events()


def split(x: np.ndarray, size: int) -> list[np.ndarray]:
    return [x[i:i + size] for i in range(0, x.size, size)]


def assert_same_events(a: list[dict], b: list[dict]) -> None:
    """Equal events; word confidences (4 decimals) may differ by rounding."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        wx, wy = x.get("words", []), y.get("words", [])
        assert {k: v for k, v in x.items() if k != "words"} == {k: v for k, v in y.items() if k != "words"}
        assert [(w["word"], w["start"], w["end"]) for w in wx] == [(w["word"], w["start"], w["end"]) for w in wy]
        assert [w["confidence"] for w in wx] == pytest.approx([w["confidence"] for w in wy], abs=2e-4)


@pytest.mark.parametrize("chunk, left, rescore", [(16, -1, True), (4, -1, True), (8, 2, False)])
def test_streaming_final_equals_offline_decoding(loaded, corpus_wavs, chunk, left, rescore):
    rec = recognizer(loaded, chunk_size=chunk, num_left_chunks=left, rescore=rescore)
    for wav in corpus_wavs if chunk == 16 else corpus_wavs[::3]:
        finals = rec.transcribe_stream(wav, chunk_samples=1600)
        offline = loaded.tokenizer.decode(offline_decode(rec, wav).tokens)
        assert len(finals) == 1
        assert finals[0]["text"] == offline and offline
        assert (finals[0]["segment"], finals[0]["start"], finals[0]["end"]) == (0, 0.0, round(wav.size / 16000, 3))


def test_events_partials_then_a_final_with_words(loaded, corpus_wavs):
    rec = recognizer(loaded)
    events = feed_all(rec, rec.create_stream(), split(corpus_wavs[2], 1600))
    partials, final = events[:-1], events[-1]
    assert partials and all(e["type"] == "partial" and e["segment"] == 0 and e["start"] == 0.0 for e in partials)
    texts = [e["text"] for e in partials]
    assert all(a != b for a, b in zip(texts, texts[1:]))                  # only when the text changes
    assert [e["end"] for e in partials] == sorted(e["end"] for e in partials)
    assert final["type"] == "final" and final["text"]
    words = final["words"]
    assert " ".join(w["word"] for w in words) == final["text"]
    assert all(final["start"] <= w["start"] <= w["end"] <= final["end"] for w in words)
    assert all(0.0 < w["confidence"] <= 1.0 for w in words)


def test_any_piece_size_gives_identical_events(loaded, corpus_wavs, rng):
    rec = recognizer(loaded, chunk_size=4)
    wav = corpus_wavs[3][:12000]
    reference = feed_all(rec, rec.create_stream(), [wav])
    sizes = list(rng.integers(1, 5000, 60))
    random_pieces, i = [], 0
    while i < wav.size:
        random_pieces.append(wav[i:i + sizes[len(random_pieces) % 60]])
        i += random_pieces[-1].size
    for pieces in (split(wav, 1), split(wav, 100), split(wav, 16000), random_pieces):
        assert_same_events(feed_all(rec, rec.create_stream(), pieces), reference)


def test_batched_streams_decode_like_each_alone(loaded, corpus_wavs):
    rec = recognizer(loaded, chunk_size=8)
    wavs = [corpus_wavs[4], corpus_wavs[5][:9000], np.concatenate(corpus_wavs[6:8])]
    alone = [feed_all(rec, rec.create_stream(), split(w, 1600)) for w in wavs]
    streams = [rec.create_stream() for _ in wavs]
    pieces = [split(w, 1600) for w in wavs]
    events = [[] for _ in wavs]
    batch_sizes = []
    for step in range(max(map(len, pieces)) + 1):
        for s, p in zip(streams, pieces):
            if step < len(p):
                s.accept_waveform(p[step])
            elif step == len(p):
                s.input_finished()
        while True:
            ready = [s for s in streams if rec.is_ready(s)]
            if not ready:
                break
            batch_sizes.append(len(ready))
            rec.decode_streams(streams)                 # not-ready streams in the list are left alone
        for e, s in zip(events, streams):
            e += s.pop_events()
    assert all(s.done for s in streams) and max(batch_sizes) == 3
    for got, want in zip(events, alone):
        assert_same_events(got, want)


@pytest.mark.parametrize("rate", [8000, 44100])
def test_other_sample_rates_are_resampled_incrementally(loaded, corpus_wavs, rate, rng):
    rec = recognizer(loaded)
    wav = resample(corpus_wavs[8], 16000, rate)
    at_16k = rec.transcribe_stream(resample(wav, rate), chunk_samples=16000)
    pieces = split(wav, int(rng.integers(50, 3000)))
    finals = [e for e in feed_all(rec, rec.create_stream(), pieces, rate) if e["type"] == "final"]
    assert [f["text"] for f in finals] == [f["text"] for f in at_16k] and finals[0]["text"]
    assert finals[-1]["end"] == pytest.approx(wav.size / rate, abs=2e-3)


def test_endpoints_cut_segments_that_decode_like_offline_slices(loaded, corpus_wavs):
    """Rule 3 every 1 s: each segment restarts the encoder, so it equals offline decoding of its features."""
    chunk = 16
    ep = EndpointConfig(rule1_min_trailing_silence=100.0, rule2_min_trailing_silence=100.0, rule3_max_utterance=1.0)
    rec = recognizer(loaded, chunk_size=chunk, endpoint=ep)
    wav = np.concatenate(corpus_wavs[9:12])
    finals = rec.transcribe_stream(wav, chunk_samples=3200)
    feats = torch.from_numpy(log_mel(wav))[None]             # the streaming front-end's features
    seg_frames = 2 * chunk                                          # 1.28 s: the first chunk end past 1 s
    assert [f["segment"] for f in finals] == list(range(len(finals))) and len(finals) >= 3
    dcfg = DecodeConfig(method="rescoring", beam=10, ctc_weight=rec.ctc_weight, chunk_size=chunk)
    for k, f in enumerate(finals):
        assert f["start"] == round(k * seg_frames * 0.04, 3)
        last = k == len(finals) - 1
        assert f["end"] == (round(wav.size / 16000, 3) if last else round((k + 1) * seg_frames * 0.04, 3))
        piece = feats[:, 4 * k * seg_frames:] if last else feats[:, 4 * k * seg_frames:4 * (k + 1) * seg_frames + 3]
        want = Searcher(loaded, dcfg).decode_batch(piece, torch.tensor([piece.size(1)]))
        assert f["text"] == loaded.tokenizer.decode(want["rescoring"][0].tokens)
        assert all(f["start"] <= w["start"] <= w["end"] <= f["end"] for w in f["words"])


def test_memory_stays_bounded_on_a_long_stream(loaded, corpus_wavs):
    """24 s of audio: the left-context cache stops at its cap, rule 3 bounds the rescoring memory."""
    ep = EndpointConfig(rule3_max_utterance=2.0)
    rec = StreamingRecognizer(loaded, StreamingConfig(chunk_size=4, max_left_chunks=3, endpoint=ep))
    wav = np.tile(np.concatenate(corpus_wavs), 2)[:24 * 16000]
    stream = rec.create_stream()
    frames, sizes = [], []
    for piece in split(wav, 1600):
        stream.accept_waveform(piece)
        while rec.is_ready(stream):
            rec.decode_streams([stream])
            frames.append(stream.cache_frames)
            sizes.append(stream.cache_bytes)
    assert max(frames) == 12                                        # 3 chunks of 4 frames
    half = len(sizes) // 2
    assert max(sizes[half:]) <= max(sizes[:half])                   # no growth over time
    finals = [e for e in stream.pop_events() if e["type"] == "final"]
    assert len(finals) >= 9 and all(f["end"] - f["start"] <= 2.0 + 0.16 + 1e-9 for f in finals)


def test_feeding_from_another_thread_while_decoding(loaded, corpus_wavs):
    rec = recognizer(loaded, chunk_size=4)
    wav = corpus_wavs[1]
    want = rec.transcribe_stream(wav)
    stream = rec.create_stream()

    def feed():
        for piece in split(wav, 320):
            stream.accept_waveform(piece)
        stream.input_finished()
    feeder = threading.Thread(target=feed)
    feeder.start()
    while not stream.done:
        if rec.is_ready(stream):
            rec.decode_streams([stream])
    feeder.join()
    got = [e for e in stream.pop_events() if e["type"] == "final"]
    assert_same_events(got, want)


def test_empty_and_tiny_streams(loaded):
    rec = recognizer(loaded)
    s = rec.create_stream()
    s.input_finished()
    assert rec.is_ready(s)
    rec.decode_streams([s])
    assert s.done and not rec.is_ready(s) and s.pop_events() == []
    finals = rec.transcribe_stream(np.zeros(500, np.float32))      # too short for one encoder frame
    assert finals == [{"type": "final", "segment": 0, "text": "", "start": 0.0, "end": 0.031, "words": []}]


def test_bad_input_raises_user_errors(loaded):
    rec = recognizer(loaded)
    s = rec.create_stream()
    for bad, match in [(np.zeros((10, 2), np.float32), "mono"), (np.zeros(10, np.int16), "float"),
                       (np.array([0.0, np.nan], np.float32), "NaN")]:
        with pytest.raises(UserError, match=match):
            s.accept_waveform(bad)
    with pytest.raises(UserError, match="sample_rate"):
        s.accept_waveform(np.zeros(10, np.float32), 0)
    s.accept_waveform(np.zeros(40, np.float64)[::2], 8000)         # float64 and strided are fine
    assert s.seconds_received == pytest.approx(20 / 8000)
    with pytest.raises(UserError, match="sample_rate 16000 differs"):
        s.accept_waveform(np.zeros(10, np.float32), 16000)
    s.input_finished()
    with pytest.raises(UserError, match="input_finished"):
        s.accept_waveform(np.zeros(10, np.float32), 8000)
    with pytest.raises(UserError, match="chunk_samples"):
        rec.transcribe_stream(np.zeros(10, np.float32), chunk_samples=0)
    with pytest.raises(UserError, match="chunk_size"):
        StreamingRecognizer(loaded, StreamingConfig(chunk_size=0))


def test_models_that_cannot_stream_are_refused(make_model):
    with pytest.raises(UserError, match="causal"):
        StreamingRecognizer(make_model(causal=False))
    with pytest.raises(UserError, match="pyramidal_lstm"):
        StreamingRecognizer(make_model(encoder="pyramidal_lstm"))
    no_ctc = make_model()
    no_ctc.model.ctc = None
    with pytest.raises(UserError, match="CTC"):
        StreamingRecognizer(no_ctc)
    rec = StreamingRecognizer(make_model(encoder="transformer"), StreamingConfig(endpoint=NO_ENDPOINT))
    assert rec.transcribe_stream(np.zeros(8000, np.float32))[0]["segment"] == 0


def test_search_settings_default_to_the_models_decoding_defaults(loaded):
    import dataclasses
    model_beam = loaded.config.decode.beam
    rec = recognizer(loaded)
    assert rec.beam == model_beam and rec.ctc_weight == loaded.config.decode.ctc_weight
    assert rec.create_stream()._search.beam == model_beam
    other = dataclasses.replace(loaded, config=dataclasses.replace(
        loaded.config, decode=dataclasses.replace(loaded.config.decode, beam=model_beam + 2)))
    assert recognizer(other).beam == model_beam + 2                  # e.g. set by export --set decode.beam
    assert recognizer(other, beam=1).beam == 1                       # the streaming config wins when given


@pytest.mark.parametrize("rescore", [True, False])
def test_the_native_search_streams_like_it_decodes_offline(loaded, corpus_wavs, rescore):
    """decode.ctc_search native: the streaming search is flashlight's online decoder, fed chunk by chunk."""
    config = dataclasses.replace(loaded.config, decode=loaded.config.decode.override(ctc_search="native"))
    rec = recognizer(dataclasses.replace(loaded, config=config), chunk_size=8, rescore=rescore)
    assert isinstance(rec.create_stream()._search, NativeCTCSearch)
    for wav in corpus_wavs[::2]:
        finals = rec.transcribe_stream(wav, chunk_samples=1600)
        offline = loaded.tokenizer.decode(offline_decode(rec, wav).tokens)
        assert len(finals) == 1 and finals[0]["text"] == offline and offline
