"""Tests for the synthetic speech corpus: text filters, voice hold-out, and tiny real corpora.

The corpus tests synthesise a handful of utterances with the real espeak-ng and flite.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import soundfile as sf

from s2s_media.data import synthetic_speech as syn
from s2s_media.data.manifest import read_manifest
from s2s_media.errors import UserError

pytestmark = pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("flite")),
                                reason="needs espeak-ng and flite (apt-get install espeak-ng flite)")

GOOD = [
    "Teach a man to fish, and he will eat for a lifetime.",
    "The early bird gets the worm, but the second mouse gets the cheese.",
    "A watched pot never boils.",
    "You will meet a tall dark stranger on a rainy day.",
    "Never put off until tomorrow what you can avoid altogether.",
    "Every cloud has a silver lining somewhere.",
    "The best way to predict the future is to invent it.",
    "She sells sea shells by the sea shore.",
    "Don't count your chickens before they hatch.",
    "Beauty is in the eye of the beholder.",
    "\"Go away,\" she said; \"I am busy.\"",
    "Time flies like an arrow: fruit flies like a banana.",
    "Where there is smoke, there is usually fire.",
    "Good things come to those who wait patiently.",
    "A penny saved is a penny earned.",
    "Actions speak louder than words!",
    "Is this the real life, or is this just fantasy?",
    "Practice makes perfect, or so they say.",
]
BAD = [
    "It costs $5 at 5pm, or 3.50 in the 1990s.",   # digits that are not plain numbers
    "The NASA team launched a rocket.",        # acronym, spelled out by TTS
    "The IBM's screens were designed for text.",
    "It is a.out, the old binary format.",     # dotted word
    "Mr. Smith went to the market.",           # abbreviation
    "Bring bread, cheese, etc. to the party.",
    "Use a fork, e.g. for the salad.",
    "Hmm, that is a strange idea.",            # vowel-less word
    "Bread, cheese, etc., were served.",
    "That is ok with me, really.",             # read as "okay"
    "It was a supercalifragilisticexpialidocious day.",  # very long word
    "Costs are (almost) nothing today.",       # brackets
    "Caf\u00e9 au lait is my favourite drink.",  # non-ASCII
    "Too short.",
]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "sentences.txt"
    # two sentences per line on some lines, bad ones mixed in
    lines = [GOOD[i] + (" " + GOOD[i + 1] if i % 4 == 0 else "") for i in range(0, len(GOOD)) if i % 4 != 1]
    path.write_text("\n".join(lines + BAD) + "\n", encoding="utf-8")
    return path


OPTIONS = dict(hours=0.003, dev_utts=3, test_utts=3, seed=7)


@pytest.fixture(scope="module")
def corpus(text_file, tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    out = tmp_path_factory.mktemp("corpus")
    return out, syn.generate_corpus(str(text_file), out, workers=2, **OPTIONS)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --------------------------------------------------------------------------- text

@pytest.mark.parametrize("sentence", BAD)
def test_filters_reject(sentence):
    assert syn.clean_sentence(sentence) is None


@pytest.mark.parametrize("sentence", GOOD)
def test_filters_accept(sentence):
    assert syn.clean_sentence(sentence) == sentence


def test_clean_sentence_tidies_quotes_and_word_limits():
    assert syn.clean_sentence("``Hello   there,'' he said.") == '"Hello there," he said.'
    assert syn.clean_sentence('He said "go home now.') == "He said go home now."
    assert syn.clean_sentence("I think, therefore I am.") is not None        # "I" is not an acronym
    assert syn.clean_sentence("one two three four five", max_words=4) is None
    assert syn.clean_sentence("one two three four five", min_words=6) is None


def test_split_sentences_keeps_abbreviations_inside():
    text = "Mr. Smith came home.  He left!\nDid he? \"Yes.\" See e.g. this, J. Doe"
    assert syn.split_sentences(text) == ["Mr. Smith came home.", "He left!", "Did he?", '"Yes."',
                                         "See e.g. this, J. Doe"]


def test_read_fortunes_joins_lines_and_drops_attributions(tmp_path):
    (tmp_path / "wisdom").write_text(
        "A stitch in time\nsaves nine.\n%\nThe only thing we have to fear\nis fear itself.\n"
        "\t\t-- Franklin D. Roosevelt\n\t\tFirst inaugural address\n%\n", encoding="utf-8")
    (tmp_path / "wisdom.dat").write_bytes(b"\x00\x01binary index")
    (tmp_path / "wisdom.u8").write_text("Duplicate link.\n", encoding="utf-8")
    (tmp_path / "off").mkdir()
    (tmp_path / "off" / "rude").write_text("Something offensive.\n", encoding="utf-8")
    assert syn.read_fortunes(tmp_path) == ["A stitch in time saves nine.",
                                           "The only thing we have to fear is fear itself."]


def test_load_sentences_dedups_by_normalised_text(tmp_path):
    src = tmp_path / "t.txt"
    src.write_text("A watched pot never boils. a watched pot, never boils!\nA watched pot never boils.\n")
    assert syn.load_sentences(str(src)) == ["A watched pot never boils."]


def test_fortunes_sentences_pass_the_filters():
    if not syn.FORTUNES_DIR.is_dir():
        pytest.skip("fortunes not installed")
    sentences = syn.load_sentences("fortunes")
    assert len(sentences) > 5000
    for s in sentences:
        assert not re.search(r"\d|\b[A-Z]{2,}\b|\bMrs?\.|\betc\b|\b[a-z]\.[a-z]", s), s


def test_missing_or_empty_source_raises(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="not found"):
        syn.generate_corpus(str(tmp_path / "missing.txt"), tmp_path / "out")
    empty = tmp_path / "bad.txt"
    empty.write_text("\n".join(BAD) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match="no usable sentences"):
        syn.generate_corpus(str(empty), tmp_path / "out")
    monkeypatch.setattr(syn, "FORTUNES_DIR", tmp_path / "no-fortunes")
    with pytest.raises(UserError, match="apt-get install fortunes"):
        syn.generate_corpus("fortunes", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_too_few_sentences_for_dev_and_test(text_file, tmp_path):
    with pytest.raises(UserError, match="not enough"):
        syn.generate_corpus(str(text_file), tmp_path / "out", dev_utts=10, test_utts=10)


# --------------------------------------------------------------------------- plan

def _family_of(variant: str) -> tuple[str, ...]:
    for family in syn.ESPEAK_MALE_FAMILIES + syn.ESPEAK_FEMALE_FAMILIES:
        if variant in family:
            return family
    return (variant,)


@pytest.mark.parametrize("seed", range(5))
def test_plan_holds_out_voices_and_sentences(seed):
    plan, pools = syn.make_plan(GOOD, hours=0.02, dev_utts=4, test_utts=4, seed=seed)
    train_voices = set(pools["train"].voices)
    train_families = {_family_of(v.partition("+")[2]) for v in train_voices if v.startswith("espeak:")}
    for split in ("dev", "test"):
        held_out = set(pools[split].voices) - set(pools[split].others)     # piper, hibari, festival read everywhere
        assert held_out and not held_out & train_voices
        assert {u.voice for u in plan[split]} <= set(pools[split].voices)
        held = {_family_of(v.partition("+")[2]) for v in pools[split].voices if v.startswith("espeak:")}
        assert not held & train_families
    assert not (set(pools["dev"].voices) - set(pools["dev"].flite) - set(pools["dev"].others)) & set(pools["test"].voices)
    assert {u.voice for u in plan["train"]} <= train_voices
    texts = {split: {u.text for u in plan[split]} for split in syn.SPLITS}
    assert not texts["train"] & texts["dev"] and not texts["train"] & texts["test"] and not texts["dev"] & texts["test"]


def test_plan_reuses_sentences_with_other_voices_when_text_runs_out():
    plan, _ = syn.make_plan(GOOD, hours=0.05, dev_utts=3, test_utts=3, seed=1)
    train = plan["train"]
    assert len(train) > len(GOOD) - 6
    pairs = [(u.text, u.voice) for u in train]
    assert len(set(pairs)) == len(pairs)
    assert sum(u.estimated_seconds() for u in train) >= 0.05 * 3600


def test_plan_grows_by_appending():
    small, _ = syn.make_plan(GOOD, hours=0.003, dev_utts=3, test_utts=3, seed=3)
    large, _ = syn.make_plan(GOOD, hours=0.01, dev_utts=3, test_utts=3, seed=3)
    assert large["train"][: len(small["train"])] == small["train"]
    assert large["dev"] == small["dev"] and large["test"] == small["test"]


# --------------------------------------------------------------------------- synthesis

def test_tiny_corpus_manifests_and_audio(corpus):
    out, manifests = corpus
    assert set(manifests) == {"train", "dev", "test"}
    records = {split: read_manifest(path) for split, path in manifests.items()}
    assert len(records["dev"]) == 3 and len(records["test"]) == 3
    assert sum(r.duration for r in records["train"]) >= 0.003 * 3600 * 0.8
    for split, recs in records.items():
        for r in recs:
            assert Path(r.audio).is_relative_to(out.resolve() / "audio" / split)
            info = sf.info(r.audio)
            assert (info.samplerate, info.channels, info.format, info.subtype) == (16000, 1, "FLAC", "PCM_16")
            assert abs(info.duration - r.duration) < 1e-3
            wav, _ = sf.read(r.audio)
            assert 0.2 < abs(wav).max() < 0.95
            assert re.fullmatch(r"(espeak:en[-a-z0-9]*(\+\w+)?|flite:\w+|piper:joe|hibari:heart|festival:ked_diphone)"
                                r"(\+vtl[01]\.\d\d)?", r.speaker)
    for row in _rows(manifests["train"]):
        assert row["audio"].startswith("audio/train/")


def test_tiny_corpus_holds_out_test_voices(corpus):
    out, manifests = corpus
    voices = json.loads((out / "voices.json").read_text())
    speakers = {split: {r.speaker for r in read_manifest(p) if r.speaker.split(":")[0] in ("espeak", "flite")
                        and "+vtl" not in r.speaker} for split, p in manifests.items()}
    texts = {split: {r.text for r in read_manifest(p)} for split, p in manifests.items()}
    assert not speakers["test"] & speakers["train"] and not speakers["dev"] & speakers["train"]
    assert speakers["test"] <= set(voices["voices"]["test"])
    shared = {"piper:joe", "hibari:heart", "festival:ked_diphone"}
    assert set(voices["voices"]["test"]) & set(voices["voices"]["train"]) == shared
    held = voices["held_out"]["test"]
    assert not {f"+{v}" for v in held["espeak_male_variants"] + held["espeak_female_variants"]} & \
        {"+" + s.partition("+")[2] for s in voices["voices"]["train"]}
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["dev"] and not texts["dev"] & texts["test"]


def test_same_seed_same_corpus_for_any_worker_count(corpus, text_file, tmp_path):
    _, first = corpus
    second = syn.generate_corpus(str(text_file), tmp_path / "again", workers=1, **OPTIONS)
    for split in syn.SPLITS:
        a, b = _rows(first[split]), _rows(second[split])
        # Piper draws its noise inside the ONNX graph, unseeded: its durations may differ by a few ms
        for row in a + b:
            if row["speaker"].startswith("piper:"):
                row["duration"] = round(row["duration"], 1)
        assert [{**r, "duration": None} for r in a] == [{**r, "duration": None} for r in b]
        assert all(abs(x["duration"] - y["duration"]) < 0.15 for x, y in zip(a, b))
        assert [r for r in a if not r["speaker"].startswith("piper:")] == \
            [r for r in b if not r["speaker"].startswith("piper:")]


def test_resume_skips_existing_files_and_refuses_other_settings(text_file, tmp_path):
    out = tmp_path / "c"
    manifests = syn.generate_corpus(str(text_file), out, workers=1, **OPTIONS)
    files = sorted((out / "audio").rglob("*.flac"))
    stamps = {f: f.stat().st_mtime_ns for f in files}
    files[0].unlink()
    again = syn.generate_corpus(str(text_file), out, workers=1, **OPTIONS)
    assert all(f.stat().st_mtime_ns == stamps[f] for f in files[1:])
    assert files[0].is_file()
    for split in syn.SPLITS:
        assert _rows(manifests[split]) == _rows(again[split])
    with pytest.raises(UserError, match="other text or settings"):
        syn.generate_corpus(str(text_file), out, workers=1, **{**OPTIONS, "seed": 8})


def test_failing_utterance_is_skipped(text_file, tmp_path, monkeypatch, caplog):
    real_render = syn.render

    def flaky_render(utt):
        if utt.id == "syn-test-0000001":
            raise RuntimeError("engine crashed")
        return real_render(utt)

    monkeypatch.setattr(syn, "render", flaky_render)
    manifests = syn.generate_corpus(str(text_file), tmp_path / "c", workers=1, **OPTIONS)
    ids = [r["id"] for r in _rows(manifests["test"])]
    assert ids == ["syn-test-0000000", "syn-test-0000002"]
    assert "engine crashed" in caplog.text


def test_every_engine_and_voice_kind_synthesises():
    text = "Practice makes perfect, or so they say."
    for voice in ("espeak:en-gb-scotland+f3", "espeak:en-029+klatt4", "flite:awb", "flite:rms"):
        utt = syn.Utterance("x", "train", text, voice, rate=0.9, semitones=-2.0, level_db=-6.0, lead=0.1, trail=0.2)
        wav = syn.render(utt)
        assert wav.dtype.name == "float32" and wav.ndim == 1
        assert abs(abs(wav).max() - 10 ** (-6 / 20)) < 1e-3
        assert 1.0 < len(wav) / syn.SAMPLE_RATE < 6.0


def test_configured_voices_exist():
    """espeak-ng silently falls back for an unknown variant or language, so check the names here."""
    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout
    variants_dir = Path(version.split("Data at:")[1].strip()) / "voices" / "!v"
    configured = [v for family in syn.ESPEAK_MALE_FAMILIES + syn.ESPEAK_FEMALE_FAMILIES for v in family]
    configured += [v for v in syn.ESPEAK_TRAIN_ONLY_VARIANTS if v]
    assert len(configured) == len(set(configured))
    assert [v for v in configured if not (variants_dir / v).is_file()] == []
    listed = subprocess.run(["espeak-ng", "--voices=en"], capture_output=True, text=True).stdout
    languages = {line.split()[1] for line in listed.splitlines()[1:] if "mb/" not in line}
    assert set(syn.ESPEAK_LANGUAGES) <= languages
    flite = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout
    assert set(syn.FLITE_VOICES) <= set(flite.split(":")[1].split())
