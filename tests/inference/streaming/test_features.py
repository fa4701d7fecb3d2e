"""Incremental front-end: log-mels and resampling in pieces equal the offline ones."""
import numpy as np
import pytest

from s2s_media.frontend.audio import resample
from s2s_media.frontend.logmel_np import log_mel
from s2s_media.inference.streaming import StreamingLogMel, StreamResampler


def in_pieces(x: np.ndarray, rng, sizes=(1, 7, 100, 160, 399, 1600, 16000)):
    i = 0
    while i < x.size:
        n = int(rng.choice(sizes))
        yield x[i:i + n]
        i += n


@pytest.mark.parametrize("n", [1, 200, 201, 361, 1000, 16000, 33333])
def test_streaming_logmel_equals_offline(n, rng, corpus_wavs):
    x = np.tile(corpus_wavs[0], 3)[:n]
    offline = log_mel(x)
    for _ in range(3):
        s = StreamingLogMel()
        frames = [s.accept(piece) for piece in in_pieces(x, rng)] + [s.finish()]
        np.testing.assert_allclose(np.concatenate(frames), offline, atol=1e-5, rtol=0)
        assert s.buffered_samples <= 561                 # two hops + a window + the last hop


def test_logmel_frames_come_out_as_soon_as_their_windows_are_complete():
    s = StreamingLogMel()
    assert s.accept(np.zeros(200, np.float32)).shape[0] == 0    # frame 0 reflects sample 200
    assert s.accept(np.zeros(1, np.float32)).shape[0] == 1
    assert s.accept(np.zeros(159, np.float32)).shape[0] == 0
    assert s.accept(np.zeros(1, np.float32)).shape[0] == 1
    assert s.finish().shape[0] == 361 // 160 + 1 - 2              # the rest, reflected at the real end


@pytest.mark.parametrize("rate", [8000, 44100])
def test_streaming_resampler_equals_whole_file_resampling(rate, rng, corpus_wavs):
    x = resample(corpus_wavs[1], 16000, rate)
    r = StreamResampler(rate)
    y = np.concatenate([r(piece) for piece in in_pieces(x, rng)] + [r.flush()])
    whole = resample(x, rate)
    assert abs(y.size - whole.size) <= 1        # librosa rounds the length up, soxr to nearest
    n = min(y.size, whole.size)
    np.testing.assert_allclose(y[:n], whole[:n], atol=1e-6)
