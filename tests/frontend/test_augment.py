"""Tests for s2s_media.frontend.augment: each op's physics, identity when off, determinism."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from s2s_media.config import from_dict
import soundfile as sf
import torch

from s2s_media.frontend.augment import (NOISE_KINDS, SPEED_OF_SOUND, AugmentConfig, NoiseConfig, ReverbConfig,
                               SpecAugment, SpecAugmentConfig, SpeedConfig, WaveAugment, add_noise,
                               generate_noise, measure_rt60, simulate_rir)
from s2s_media.errors import ConfigError

SR = 16000


def sine(freq: float = 1000.0, seconds: float = 1.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def speech_like(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """Amplitude-modulated harmonic signal with pauses, peak ~0.5."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * 140 * h * t + rng.uniform(0, 6)) / h for h in range(1, 20))
    x *= np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def only(**parts) -> AugmentConfig:
    """A config with everything off except ``parts``."""
    cfg = AugmentConfig.disabled()
    for name, part in parts.items():
        setattr(cfg, name, part)
    return cfg


def dominant_freq(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / SR)[np.argmax(spec)])


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    noise = noisy.astype(np.float64) - clean
    return 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise ** 2))


# ---- identity when off -------------------------------------------------------------------------

def test_disabled_is_identity():
    wav = speech_like()
    for cfg in (AugmentConfig.disabled(),
                AugmentConfig(speed=SpeedConfig(factors=[1.0]), noise=NoiseConfig(prob=0.0),
                              reverb=ReverbConfig(prob=0.0))):
        out = WaveAugment(cfg)(wav, np.random.default_rng(0))
        assert out is not wav and out.dtype == np.float32
        np.testing.assert_array_equal(out, wav)
    feats = torch.randn(50, 80)
    np.testing.assert_array_equal(SpecAugment(SpecAugmentConfig(enabled=False))(feats, np.random.default_rng(0)), feats)


# ---- speed ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_length_and_pitch(factor):
    wav = sine(1000.0)
    out = WaveAugment(only(speed=SpeedConfig(factors=[factor])))(wav, np.random.default_rng(0))
    assert abs(out.size - wav.size / factor) <= 2
    assert abs(dominant_freq(out) - 1000.0 * factor) <= 3.0
    assert out.dtype == np.float32 and np.isfinite(out).all()


# ---- noise ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_generated_noise_is_unit_rms_float32(kind):
    x = generate_noise(kind, 20000, np.random.default_rng(1))
    assert x.shape == (20000,) and x.dtype == np.float32 and np.isfinite(x).all()
    assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)


def test_noise_colours_have_their_spectral_slope():
    """Power per octave: white doubles, pink stays, brown halves (3 octaves: x8, x1, x1/8)."""
    def octave_ratio(x):
        p = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(x.size, 1 / SR)
        return p[(f >= 2000) & (f < 4000)].sum() / p[(f >= 250) & (f < 500)].sum()
    rng = np.random.default_rng(2)
    assert octave_ratio(generate_noise("white", 32000, rng)) == pytest.approx(8.0, rel=0.25)
    assert octave_ratio(generate_noise("pink", 32000, rng)) == pytest.approx(1.0, rel=0.25)
    assert octave_ratio(generate_noise("brown", 32000, rng)) == pytest.approx(1 / 8, rel=0.25)


@pytest.mark.parametrize("snr", [0.0, 7.5, 20.0])
def test_add_noise_hits_the_snr(snr):
    wav = speech_like()
    for kind in NOISE_KINDS:
        noisy = add_noise(wav, generate_noise(kind, wav.size, np.random.default_rng(3)), snr)
        assert noisy.dtype == np.float32
        assert abs(snr_db(wav, noisy) - snr) < 0.5


def test_wave_augment_noise_snr_within_configured_range():
    wav = 0.1 * speech_like()
    aug = WaveAugment(only(noise=NoiseConfig(prob=1.0, snr_db=[12.0, 12.0])))
    for seed in range(5):
        assert abs(snr_db(wav, aug(wav, np.random.default_rng(seed))) - 12.0) < 0.5


def test_real_noise_from_folder_and_manifest(tmp_path):
    rng = np.random.default_rng(4)
    sf.write(tmp_path / "fan.wav", 0.2 * rng.standard_normal(SR // 2).astype(np.float32), SR)  # shorter: looped
    sf.write(tmp_path / "street.flac", 0.2 * rng.standard_normal(3 * SR).astype(np.float32), SR)
    manifest = tmp_path / "noise.jsonl"
    manifest.write_text(json.dumps({"audio": "street.flac", "duration": 3.0}) + "\n")
    wav = 0.1 * speech_like()
    for noise_dir in (tmp_path, manifest):
        aug = WaveAugment(only(noise=NoiseConfig(prob=1.0, snr_db=[6.0, 6.0], noise_dir=str(noise_dir))))
        for seed in range(4):
            out = aug(wav, np.random.default_rng(seed))
            assert out.shape == wav.shape and abs(snr_db(wav, out) - 6.0) < 0.5
    with pytest.raises(ConfigError):
        WaveAugment(only(noise=NoiseConfig(noise_dir=str(tmp_path / "missing"))))


# ---- reverb --------------------------------------------------------------------------------------

def test_rir_direct_path_peak():
    room, src, mic = (6.0, 5.0, 3.0), (2.0, 2.0, 1.6), (4.0, 3.0, 1.0)
    rir = simulate_rir(np.random.default_rng(0), rt60=0.5, room_dim=room, source=src, mic=mic)
    delay = np.linalg.norm(np.subtract(src, mic)) / SPEED_OF_SOUND * SR
    assert rir.dtype == np.float32 and np.isfinite(rir).all()
    assert abs(int(np.argmax(np.abs(rir))) - delay) <= 1
    assert np.abs(rir).max() == pytest.approx(1.0, abs=0.05)     # unit gain on the direct path
    assert np.abs(rir[:int(delay) - 8]).max() == 0                 # nothing before the sound arrives


@pytest.mark.parametrize("rt60", [0.2, 0.4, 0.8])
def test_rir_decay_matches_rt60(rt60):
    for seed in range(3):  # random rooms and positions
        rir = simulate_rir(np.random.default_rng(seed), rt60=rt60)
        assert measure_rt60(rir) == pytest.approx(rt60, rel=0.3)


def test_reverb_keeps_length_and_alignment():
    wav = (0.02 * np.random.default_rng(5).standard_normal(SR)).astype(np.float32)  # quiet: no rescaling
    aug = WaveAugment(only(reverb=ReverbConfig(prob=1.0, rt60=[0.6, 0.6])))
    energy = np.dot(wav[2000:-2000], wav[2000:-2000])
    for seed in range(4):
        out = aug(wav, np.random.default_rng(seed))
        assert out.shape == wav.shape and out.dtype == np.float32 and np.isfinite(out).all()
        # For white noise in, the cross-correlation estimates the applied response at lags -50..50.
        h = np.correlate(out[2000:-2000], wav[2000 - 50:-2000 + 50], mode="valid") / energy
        assert np.abs(h[:50 - 8]).max() < 0.1     # nothing before the direct sound: it was not delayed
        assert 0.6 < h[50] < 1.15                 # unit gain, split over two taps by the fractional delay
        assert np.abs(h[51:]).max() > 0.05        # reflections follow


# ---- SpecAugment ---------------------------------------------------------------------------------

def test_spec_augment_masks_within_bounds_and_nothing_else():
    cfg = SpecAugmentConfig(freq_masks=2, freq_width=27, time_masks=3, time_width_ratio=0.05, time_width_max=100)
    aug = SpecAugment(cfg)
    frames, n_mels = 400, 80
    for seed in range(20):
        feats = torch.randn(frames, n_mels) + 5.0
        freq, time = aug.sample_masks(frames, n_mels, np.random.default_rng(seed))
        assert len(freq) == 2 and len(time) == 3
        assert all(0 <= w <= 27 and 0 <= s and s + w <= n_mels for s, w in freq)
        assert all(0 <= w <= 20 and 0 <= s and s + w <= frames for s, w in time)   # 5% of 400
        out = aug(feats, np.random.default_rng(seed))
        masked = torch.zeros(frames, n_mels, dtype=torch.bool)
        for s, w in freq:
            masked[:, s:s + w] = True
        for s, w in time:
            masked[s:s + w, :] = True
        assert torch.equal(out[~masked], feats[~masked])
        assert torch.allclose(out[masked], feats.mean().expand(int(masked.sum())))
        assert out.dtype == feats.dtype and out.shape == feats.shape


def test_spec_augment_time_width_cap_and_adaptive_count():
    aug = SpecAugment(SpecAugmentConfig(time_width_ratio=0.5, time_width_max=10, time_masks=1,
                                        time_masks_per_frame=0.05, time_masks_max=20))
    _, time = aug.sample_masks(3000, 80, np.random.default_rng(0))
    assert len(time) == 20 and all(w <= 10 for _, w in time)
    _, time = aug.sample_masks(100, 80, np.random.default_rng(0))
    assert len(time) == 5


def test_spec_augment_time_warp_keeps_shape():
    aug = SpecAugment(SpecAugmentConfig(time_warp=20, freq_masks=0, time_masks=0))
    feats = torch.randn(200, 80)
    outs = [aug(feats, np.random.default_rng(s)) for s in range(5)]
    assert all(o.shape == feats.shape and torch.isfinite(o).all() for o in outs)
    assert any(not torch.equal(o, feats) for o in outs)
    assert torch.equal(aug(feats, np.random.default_rng(1)), outs[1])


def test_spec_augment_short_input():
    feats = torch.randn(3, 80)
    out = SpecAugment(SpecAugmentConfig())(feats, np.random.default_rng(0))
    assert out.shape == (3, 80)


# ---- determinism and output contract -------------------------------------------------------------

def test_determinism_same_seed_same_output():
    cfg = AugmentConfig(noise=NoiseConfig(prob=1.0), reverb=ReverbConfig(prob=1.0))
    aug, wav = WaveAugment(cfg), speech_like(seed=6)
    a = aug(wav, np.random.default_rng(123))
    np.testing.assert_array_equal(a, aug(wav, np.random.default_rng(123)))
    np.testing.assert_array_equal(a, WaveAugment(cfg)(wav, np.random.default_rng(123)))
    b = aug(wav, np.random.default_rng(124))
    assert a.shape != b.shape or not np.array_equal(a, b)
    spec = SpecAugment(SpecAugmentConfig())
    feats = torch.randn(300, 80)
    assert torch.equal(spec(feats, np.random.default_rng(7)), spec(feats, np.random.default_rng(7)))
    assert not torch.equal(spec(feats, np.random.default_rng(7)), spec(feats, np.random.default_rng(8)))


def test_output_float32_finite_and_within_unit_range():
    loud = (0.99 * np.sign(sine(300.0))).astype(np.float32)       # a full-scale square wave
    aug = WaveAugment(AugmentConfig(noise=NoiseConfig(prob=1.0, snr_db=[0.0, 5.0]), reverb=ReverbConfig(prob=1.0)))
    for seed in range(5):
        out = aug(loud, np.random.default_rng(seed))
        assert out.dtype == np.float32 and np.isfinite(out).all() and np.abs(out).max() <= 1.0
    assert aug(np.zeros(SR, dtype=np.float32), np.random.default_rng(0)).max() == 0.0  # silence stays silent


class _AugmentedSet(torch.utils.data.Dataset):
    """Per-utterance generators seeded by (seed, epoch, index): results independent of the workers."""

    def __init__(self):
        self.wave = WaveAugment(AugmentConfig(noise=NoiseConfig(prob=1.0), reverb=ReverbConfig(prob=1.0)))
        self.spec = SpecAugment(SpecAugmentConfig())

    def __len__(self):
        return 4

    def __getitem__(self, i):
        rng = np.random.default_rng([1234, 0, i])
        wav = self.wave(speech_like(0.5, seed=i), rng)
        return torch.from_numpy(wav), self.spec(torch.randn(50, 80, generator=torch.Generator().manual_seed(i)), rng)


def test_same_results_with_any_number_of_workers(one_thread):   # workers run one thread: so does the main process
    def run(workers):
        loader = torch.utils.data.DataLoader(_AugmentedSet(), batch_size=None, num_workers=workers)
        return list(loader)
    for (w0, f0), (w2, f2) in zip(run(0), run(2)):
        assert torch.equal(w0, w2) and torch.equal(f0, f2)


# ---- config --------------------------------------------------------------------------------------

def test_config_from_yaml_mapping():
    cfg = from_dict(AugmentConfig, {"speed": {"factors": [0.95, 1.05]}, "noise": {"snr_db": [0, 10]},
                                   "spec_augment": {"enabled": False}})
    assert cfg.speed.factors == [0.95, 1.05] and cfg.noise.snr_db == [0.0, 10.0]
    assert not cfg.spec_augment.enabled and cfg.reverb.enabled
    assert from_dict(AugmentConfig, dataclasses.asdict(cfg)) == cfg           # YAML round trip
    for bad in ({"nosie": {}}, {"noise": {"snr": [0, 1]}}, {"noise": {"snr_db": [30, 5]}},
                {"reverb": {"prob": 1.5}}, {"speed": {"factors": []}}, {"noise": {"kinds": ["pinkish"]}}):
        with pytest.raises(ConfigError):
            from_dict(AugmentConfig, bad)
