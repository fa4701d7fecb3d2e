"""Restoring punctuation and casing: the bundled model, the never-change-a-word property, and
``transcribe`` applying it to final results (word times kept) unless --no-punctuation."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import example, given, settings, strategies as st

import s2s_media
from s2s_media.cli.main import main
from s2s_media.decoding.search import SEARCHES
from s2s_media.errors import UserError
from s2s_media.frontend.vad import VadConfig
from s2s_media.inference.punctuation import Punctuator, bundled_punctuation_path, writes_normalised_english
from s2s_media.text.normalize import normalize_text
from s2s_media.text.punctuation import strip_word
from s2s_media.text.tokenizer import CharTokenizer

from asr_fixtures import fake_search, long_recording

BUNDLED = Path(s2s_media.__file__).parent / "assets" / "punct_default.pt"


@pytest.fixture(scope="module")
def punctuator() -> Punctuator:
    torch.set_num_threads(1)
    return Punctuator.load()


def test_the_bundled_model_is_a_small_plain_checkpoint():
    assert bundled_punctuation_path() == BUNDLED and BUNDLED.stat().st_size < 5 * 2**20
    ckpt = torch.load(BUNDLED, map_location="cpu", weights_only=True)
    assert {"version", "kind", "model", "config", "vocab", "forms", "meta"} <= set(ckpt)
    assert ckpt["kind"] == "punctuation"


def test_a_file_that_is_not_a_punctuation_model_is_refused(tmp_path):
    asr = Path(s2s_media.__file__).parent / "assets" / "asr_default.pt"
    with pytest.raises(UserError, match="not a punctuation model"):
        Punctuator.load(asr)
    with pytest.raises(UserError, match="not found"):
        Punctuator.load(tmp_path / "missing.pt")


def _restored_words_are_the_input(punctuator: Punctuator, words: list[str]) -> None:
    out = punctuator.restore(words)
    assert len(out) == len(words)
    for w, o in zip(words, out):
        if w == normalize_text(w):                         # a normalised word: only case and one mark change
            assert strip_word(o) == w, (w, o)
        else:                                              # anything else is left as it is, at most marked
            assert o == w or (o[:-1] == w and o[-1] in ".,?!"), (w, o)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.from_regex(r"[a-z]+('[a-z]+)?", fullmatch=True), max_size=60))
def test_punctuation_never_changes_normalised_words(punctuator, words):
    _restored_words_are_the_input(punctuator, words)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_punctuation_never_changes_the_words_of_any_text(punctuator, text):
    words = normalize_text(text).split()
    _restored_words_are_the_input(punctuator, words)
    assert normalize_text(punctuator.restore_text(" ".join(words))) == " ".join(words)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_categories=["Zs", "Cc", "Zl", "Zp"]), min_size=1), max_size=20))
@example(["\ud800"])      # a lone surrogate: its suffix once failed to encode as UTF-8
def test_punctuation_leaves_words_it_does_not_know_alone(punctuator, words):
    _restored_words_are_the_input(punctuator, words)


def test_only_models_writing_normalised_english_get_it_by_default():
    assert writes_normalised_english(CharTokenizer(list("abcdefghijklmnopqrstuvwxyz'")))
    assert not writes_normalised_english(CharTokenizer(list("abcdeéü")))


# --------------------------------------------------------------------------- transcribe
@pytest.fixture(scope="module")
def asr(tiny_asr_ckpt):
    return s2s_media.load_model(tiny_asr_ckpt, device="cpu")


def test_transcribe_applies_it_to_text_segments_and_words_keeping_their_times(asr, punctuator, tiny_corpus,
                                                                              monkeypatch):
    monkeypatch.setitem(SEARCHES, "ctc_greedy", fake_search("hello how are you i am fine", asr.tokenizer))
    path = tiny_corpus / "wav/u00.wav"
    raw = asr.transcribe(path, decoding="ctc_greedy", punctuation=False)
    done = asr.transcribe(path, decoding="ctc_greedy")
    assert raw["text"] == "hello how are you i am fine"
    expected = punctuator.restore(raw["text"].split())
    assert done["text"] == " ".join(expected) != raw["text"]
    assert [w["word"] for w in done["words"]] == expected
    assert [s["text"] for s in done["segments"]] == [" ".join(expected)]
    for a, b in zip(raw["words"], done["words"]):                       # each word keeps its own times
        assert (a["start"], a["end"], a["confidence"]) == (b["start"], b["end"], b["confidence"])
        assert strip_word(b["word"]) == a["word"]


def test_a_long_recording_is_restored_as_one_text_across_its_segments(asr, punctuator, tiny_corpus, monkeypatch,
                                                                       tmp_path):
    monkeypatch.setitem(SEARCHES, "ctc_greedy", fake_search("so what is it", asr.tokenizer))
    wav = tmp_path / "long.wav"
    long_recording(tiny_corpus, wav)
    raw = asr.transcribe(wav, decoding="ctc_greedy", punctuation=False, vad=VadConfig(max_segment_s=3.0))
    done = asr.transcribe(wav, decoding="ctc_greedy", vad=VadConfig(max_segment_s=3.0))
    assert len(done["segments"]) > 1
    expected = punctuator.restore([w["word"] for w in raw["words"]])
    assert [w["word"] for w in done["words"]] == expected
    assert " ".join(s["text"] for s in done["segments"]) == " ".join(expected) == done["text"]
    assert [w["start"] for w in done["words"]] == [w["start"] for w in raw["words"]]


def test_the_cli_applies_it_and_no_punctuation_turns_it_off(tiny_asr_ckpt, tiny_corpus, monkeypatch, capsys,
                                                             punctuator, tmp_path):
    monkeypatch.setitem(SEARCHES, "ctc_greedy", fake_search("where are you going", asr_tokenizer(tiny_asr_ckpt)))
    args = ["transcribe", str(tiny_corpus / "wav/u00.wav"), "--model", str(tiny_asr_ckpt), "--device", "cpu",
            "--decoding", "ctc_greedy", "--workers", "0"]
    assert main(args) == 0
    on = json.loads(capsys.readouterr().out)
    assert main(args + ["--no-punctuation"]) == 0
    off = json.loads(capsys.readouterr().out)
    assert off["text"] == "where are you going"
    assert on["text"] == punctuator.restore_text("where are you going")
    assert [w["start"] for w in on["words"]] == [w["start"] for w in off["words"]]
    assert main(args + ["--punctuation-model", str(tmp_path / "none.pt")]) == 2
    assert "none.pt" in capsys.readouterr().err


def asr_tokenizer(ckpt):
    return s2s_media.load_model(ckpt, device="cpu").tokenizer
