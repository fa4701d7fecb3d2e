"""Recording channels baked into the synthetic corpus: room, microphone, noise, telephone, codec.

A channel is a short string drawn once per utterance in the corpus plan, e.g.
``reverb0.42,mic-2.1@1800:+4.0,babble12.0,mp3q0.70``, or ``clean``; :func:`apply_channel` turns it
into audio with a generator seeded from the utterance, so a corpus is the same on every run and
features can be cached. In the order they are applied:

* ``reverb<rt60>`` -- a simulated room (``augment.simulate_rir``; no package here ships measured
  impulse responses), talker 0.3..3 m from the microphone.
* ``mic<tilt>@<hz>:<gain>`` -- microphone colouring: a spectral tilt in dB per octave around 1 kHz,
  one peak/dip of ``gain`` dB at ``hz`` (one octave wide), and a 60..150 Hz high-pass.
* ``<kind><snr>`` -- background noise (white, pink, brown, babble, hum from ``augment``) at an SNR in dB.
* ``tel`` -- telephone: 300..3400 Hz band, 8 kHz sampling, 8-bit mu-law, back to 16 kHz.
* ``mp3q<level>`` / ``opusq<level>`` -- a lossy codec round trip through libsndfile (soundfile),
  ``level`` 0 (best) .. 0.95 (smallest; libsndfile refuses 1.0 for MP3) as libsndfile's compression level.

Every function maps ``(samples,)`` float32 at 16 kHz to ``(samples,)`` float32 (same length).
"""
from __future__ import annotations

import io
import random
import zlib

import numpy as np
import scipy.fft
import scipy.signal
import soundfile as sf

from s2s_media.frontend.audio import SAMPLE_RATE, resample
from s2s_media.frontend.augment import NOISE_KINDS, add_noise, generate_noise, simulate_rir

CLEAN = "clean"
CLEAN_SHARE = 0.3          # utterances recorded on a clean channel
REVERB_PROB, MIC_PROB, NOISE_PROB = 0.35, 0.6, 0.45
TELEPHONE_PROB, CODEC_PROB = 0.12, 0.15   # exclusive: one or the other or neither
OPUS_SHARE = 0.3          # of the codec round trips (Opus encodes at ~30x real time, MP3 ~100x)
RT60_RANGE = (0.15, 0.8)
SNR_RANGE = (3.0, 25.0)
NOISE_WEIGHTS = {"white": 1, "pink": 2, "brown": 1, "babble": 4, "hum": 1}


def draw_channel(rng: random.Random) -> str:
    """One channel description, drawn from ``rng`` (see the module docstring)."""
    if rng.random() < CLEAN_SHARE:
        return CLEAN
    parts: list[str] = []
    if rng.random() < REVERB_PROB:
        parts.append(f"reverb{rng.uniform(*RT60_RANGE):.2f}")
    if rng.random() < MIC_PROB:
        hz = round(2 ** rng.uniform(np.log2(300), np.log2(5000)))
        parts.append(f"mic{rng.uniform(-3.0, 2.0):+.1f}@{hz}:{rng.uniform(-9.0, 9.0):+.1f}")
    if rng.random() < NOISE_PROB:
        kind = rng.choices(list(NOISE_WEIGHTS), weights=list(NOISE_WEIGHTS.values()))[0]
        parts.append(f"{kind}{rng.uniform(*SNR_RANGE):.1f}")
    u = rng.random()
    if u < TELEPHONE_PROB:
        parts.append("tel")
    elif u < TELEPHONE_PROB + CODEC_PROB:
        codec = "opus" if rng.random() < OPUS_SHARE else "mp3"
        parts.append(f"{codec}q{rng.uniform(0.3, 0.95):.2f}")
    return ",".join(parts) or CLEAN


def _shape(wav: np.ndarray, gain: np.ndarray) -> np.ndarray:
    spec = scipy.fft.rfft(wav.astype(np.float32))
    spec *= gain.astype(np.float32)
    return scipy.fft.irfft(spec, len(wav)).astype(np.float32)


def microphone(wav: np.ndarray, tilt_db_per_octave: float, peak_hz: float, peak_db: float,
               highpass_hz: float = 100.0, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Colour ``wav`` like a cheap microphone: tilt around 1 kHz, one peak or dip, a high-pass."""
    f = np.fft.rfftfreq(len(wav), 1.0 / sr)
    octaves = np.log2(np.maximum(f, 20.0) / 1000.0)
    gain_db = tilt_db_per_octave * octaves + peak_db * np.exp(-0.5 * (np.log2(np.maximum(f, 20.0) / peak_hz) / 0.5) ** 2)
    highpass = 1.0 / np.sqrt(1.0 + (highpass_hz / np.maximum(f, 1e-3)) ** 8)   # 4th-order-like roll-off
    return _shape(wav, 10 ** (gain_db / 20) * highpass)


def mu_law(wav: np.ndarray, mu: int = 255) -> np.ndarray:
    """8-bit mu-law encode then decode (G.711-style quantisation)."""
    x = np.clip(wav, -1.0, 1.0)
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    q = np.round((y + 1) / 2 * mu) / mu * 2 - 1
    return (np.sign(q) * ((1 + mu) ** np.abs(q) - 1) / mu).astype(np.float32)


def telephone(wav: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """300..3400 Hz band, 8 kHz, mu-law, back to ``sr``: nothing is left above 4 kHz."""
    sos = scipy.signal.butter(6, (300, 3400), btype="bandpass", fs=sr, output="sos")
    band = scipy.signal.sosfilt(sos, wav).astype(np.float32)
    peak = float(np.abs(band).max()) or 1.0
    narrow = mu_law(resample(band / peak, sr, 8000)) * peak
    out = resample(narrow.astype(np.float32), 8000, sr)
    return _fit(out, len(wav))


def codec(wav: np.ndarray, name: str, level: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A lossy round trip: ``name`` ``mp3`` or ``opus`` at libsndfile compression ``level`` 0..1."""
    fmt, subtype = {"mp3": ("MP3", "MPEG_LAYER_III"), "opus": ("OGG", "OPUS")}[name]
    peak = float(np.abs(wav).max()) or 1.0
    buf = io.BytesIO()
    sf.write(buf, wav / peak * 0.9, sr, format=fmt, subtype=subtype, compression_level=level)
    buf.seek(0)
    out, out_sr = sf.read(buf, dtype="float32", always_2d=False)
    if out.ndim == 2:
        out = out.mean(axis=1)
    out = resample(out, out_sr, sr) if out_sr != sr else out
    return _fit(_align(out, len(wav)) * (peak / 0.9), len(wav))


def _align(out: np.ndarray, n: int) -> np.ndarray:
    """Drop an encoder's leading delay (MP3 pads the start) so the result lines up with the input."""
    extra = len(out) - n
    return out[extra:] if 0 < extra < 4096 else out


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    return np.pad(x, (0, max(0, n - len(x))))[:n].astype(np.float32)


def reverb(wav: np.ndarray, rt60: float, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Convolve with a simulated room of ``rt60`` s; the direct path's delay is removed, length kept."""
    rir = simulate_rir(rng, sr, rt60=rt60)
    start = int(np.argmax(np.abs(rir)))
    out = scipy.signal.fftconvolve(wav, rir[start:])[: len(wav)]
    return out.astype(np.float32)


def channel_seed(utt_id: str) -> int:
    """A stable per-utterance seed (not Python's salted ``hash``)."""
    return zlib.crc32(utt_id.encode("utf-8"))


def apply_channel(wav: np.ndarray, channel: str, seed: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Apply the channel description ``channel`` to ``wav: (samples,)`` float32; same shape and dtype."""
    if channel == CLEAN:
        return wav
    rng = np.random.default_rng(seed)
    out = wav.astype(np.float32)
    for part in channel.split(","):
        if part.startswith("reverb"):
            out = reverb(out, float(part[6:]), rng, sr)
        elif part.startswith("mic"):
            tilt, _, rest = part[3:].partition("@")
            hz, _, gain = rest.partition(":")
            out = microphone(out, float(tilt), float(hz), float(gain), highpass_hz=rng.uniform(60, 150), sr=sr)
        elif part == "tel":
            out = telephone(out, sr)
        elif part.startswith(("mp3q", "opusq")):
            name, _, level = part.partition("q")
            out = codec(out, name, float(level), sr)
        else:
            kind = next((k for k in NOISE_KINDS if part.startswith(k)), None)
            if kind is None:
                raise ValueError(f"unknown channel part {part!r} in {channel!r}")
            out = add_noise(out, generate_noise(kind, len(out), rng, sr), float(part[len(kind):]))
    return out.astype(np.float32)
