"""load_audio (formats, resampling, downmix, segments, bad files), LogMel and CMVN."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from s2s_media.frontend.audio import HOP_LENGTH, N_MELS, SAMPLE_RATE, audio_duration, load_audio, num_frames
from s2s_media.frontend.logmel import LogMel, compute_cmvn
from s2s_media.errors import AudioError, UserError


def _sine(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(wav: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    spec = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.fft.rfftfreq(len(wav), 1 / sr)[np.argmax(spec)])


def _assert_one_line_naming(err: pytest.ExceptionInfo, path) -> None:
    msg = str(err.value)
    assert str(path) in msg
    assert "\n" not in msg and msg.strip() == msg


@pytest.mark.parametrize("ext,subtype", [("wav", "FLOAT"), ("flac", "PCM_16"), ("ogg", "VORBIS")])
def test_formats_read_as_mono_float32(tmp_path, ext, subtype):
    wav = _sine(440, 0.5, SAMPLE_RATE)
    path = tmp_path / f"a.{ext}"
    sf.write(path, wav, SAMPLE_RATE, subtype=subtype)
    out = load_audio(path)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - len(wav)) <= 0.01 * SAMPLE_RATE  # vorbis may pad a little
    assert abs(_peak_hz(out) - 440) < 5
    if ext != "ogg":  # lossless
        np.testing.assert_allclose(out, wav, atol=1e-4)


@pytest.mark.parametrize("sr", [8000, 44100])
def test_other_rates_are_resampled_to_16k(tmp_path, sr):
    path = tmp_path / f"s{sr}.wav"
    sf.write(path, _sine(1000, 1.0, sr), sr)
    out = load_audio(path)
    assert out.dtype == np.float32
    assert abs(len(out) - SAMPLE_RATE) <= 2
    assert abs(_peak_hz(out) - 1000) < 3
    assert 0.45 < np.abs(out[1000:-1000]).max() < 0.55  # amplitude kept


def test_stereo_is_downmixed_by_mean(tmp_path):
    left, right = _sine(300, 0.25, SAMPLE_RATE), _sine(700, 0.25, SAMPLE_RATE, amp=0.2)
    path = tmp_path / "st.wav"
    sf.write(path, np.stack([left, right], axis=1), SAMPLE_RATE, subtype="FLOAT")
    out = load_audio(path)
    assert out.shape == left.shape
    np.testing.assert_allclose(out, (left + right) / 2, atol=1e-6)


def test_int16_pcm_matches_float(tmp_path):
    wav = _sine(440, 0.25, SAMPLE_RATE, amp=0.8)
    sf.write(tmp_path / "f.wav", wav, SAMPLE_RATE, subtype="FLOAT")
    sf.write(tmp_path / "i.wav", (wav * 32767).astype(np.int16), SAMPLE_RATE, subtype="PCM_16")
    f, i = load_audio(tmp_path / "f.wav"), load_audio(tmp_path / "i.wav")
    assert f.dtype == i.dtype == np.float32
    assert np.abs(i).max() <= 1.0
    np.testing.assert_allclose(i, f, atol=2 / 32768)


def test_offset_and_duration_read_a_segment(tmp_path):
    ramp = (np.arange(SAMPLE_RATE, dtype=np.float32) / SAMPLE_RATE)  # 1 s, value = time
    path = tmp_path / "ramp.wav"
    sf.write(path, ramp, SAMPLE_RATE, subtype="FLOAT")
    seg = load_audio(path, offset=0.5, duration=0.25)
    np.testing.assert_array_equal(seg, ramp[8000:12000])
    np.testing.assert_array_equal(load_audio(path, offset=0.75), ramp[12000:])
    np.testing.assert_array_equal(load_audio(path, duration=0.1), ramp[:1600])


def test_offset_past_the_end_is_a_user_error(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, np.zeros(1600, np.float32), SAMPLE_RATE)
    with pytest.raises(AudioError) as e:
        load_audio(path, offset=5.0, duration=1.0)
    _assert_one_line_naming(e, path)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioError) as e:
        load_audio(path)
    _assert_one_line_naming(e, path)
    assert "not found" in str(e.value)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError) as e:
        load_audio(path)
    _assert_one_line_naming(e, path)
    assert "empty" in str(e.value)


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError) as e:
        load_audio(path)
    _assert_one_line_naming(e, path)
    assert isinstance(e.value, UserError)


def test_header_only_wav(tmp_path):
    path = tmp_path / "header.wav"
    sf.write(path, np.zeros(0, np.float32), SAMPLE_RATE)
    assert 0 < path.stat().st_size <= 100
    with pytest.raises(AudioError) as e:
        load_audio(path)
    _assert_one_line_naming(e, path)


def test_wav_cut_off_after_its_header_is_rejected(tmp_path):
    """A copy cut off mid-file: libsndfile reads what is there, so the header is checked first."""
    full, cut = tmp_path / "full.wav", tmp_path / "cut.wav"
    sf.write(full, np.zeros(int(SAMPLE_RATE * 5.1), np.float32), SAMPLE_RATE, subtype="PCM_16")
    cut.write_bytes(full.read_bytes()[:2000])
    with pytest.raises(AudioError) as e:
        load_audio(cut)
    _assert_one_line_naming(e, cut)
    assert "truncated WAV: the header declares 5.100 s of audio but the file holds 0.061 s" in str(e.value)
    assert len(load_audio(full)) == int(SAMPLE_RATE * 5.1)
    unknown = bytearray(cut.read_bytes())                # a streaming writer's "length unknown" header
    unknown[40:44] = b"\xff\xff\xff\xff"
    cut.write_bytes(bytes(unknown))
    assert len(load_audio(cut)) > 0


def test_nan_samples_are_rejected(tmp_path):
    wav = _sine(440, 0.1, SAMPLE_RATE)
    wav[100] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, wav, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(AudioError) as e:
        load_audio(path)
    _assert_one_line_naming(e, path)
    assert "NaN" in str(e.value)


def test_audio_duration(tmp_path):
    path = tmp_path / "d.flac"
    sf.write(path, np.zeros(22050 * 3 // 2, np.float32), 22050)
    assert audio_duration(path) == pytest.approx(1.5)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all" * 20)
    with pytest.raises(AudioError):
        audio_duration(bad)


@pytest.mark.parametrize("samples", [16000, 12345, 201, 200, 160, 159, 1])
def test_logmel_shape(samples):
    feats = LogMel()(torch.randn(2, samples) * 0.1)
    assert feats.shape == (2, samples // HOP_LENGTH + 1, N_MELS) == (2, num_frames(samples), N_MELS)
    assert feats.dtype == torch.float32


def test_logmel_of_silence_is_finite():
    feats = LogMel()(torch.zeros(1, 8000))
    assert torch.isfinite(feats).all()


def test_compute_cmvn_matches_numpy():
    rng = np.random.default_rng(0)
    wavs = [(rng.standard_normal(n) * s).astype(np.float32) for n, s in [(4000, 0.1), (7000, 0.5), (1600, 0.02)]]
    mean, std = compute_cmvn(wavs)
    logmel = LogMel()
    feats = np.concatenate([logmel(torch.from_numpy(w).unsqueeze(0))[0].numpy().astype(np.float64) for w in wavs])
    assert mean.shape == std.shape == (N_MELS,)
    np.testing.assert_allclose(mean.numpy(), feats.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(std.numpy(), feats.std(0), rtol=1e-4, atol=1e-5)


def test_compute_cmvn_with_no_audio_is_a_user_error():
    with pytest.raises(AudioError):
        compute_cmvn([])
