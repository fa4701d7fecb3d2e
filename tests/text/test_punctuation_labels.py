"""Punctuation and casing labels: written text -> normalised words + labels, and back."""
from __future__ import annotations

import pytest

from s2s_media.text.normalize import normalize_text
from s2s_media.text.punctuation import (LabelScores, WordVocab, apply_labels, case_of, cased, labels_from_text,
                                        mixed_forms, strip_word)


def test_labels_line_up_with_the_normalised_words():
    text = 'Hello, world! Is it 1984? Yes -- it is; McDonald said: "well-known" facts...'
    words, marks, cases, written = labels_from_text(text)
    assert words == normalize_text(text).split()
    assert apply_labels(words, marks, cases, {"mcdonald": "McDonald"}) == [
        "Hello,", "world!", "Is", "it", "nineteen", "eighty", "four?", "Yes,", "it", "is,", "McDonald", "said,",
        "well", "known", "facts."]
    assert written[words.index("mcdonald")] == "McDonald" and written[words.index("nineteen")] == ""


@pytest.mark.parametrize("word,label", [("paris", 0), ("Paris", 1), ("I", 1), ("I'm", 1), ("NASA", 2),
                                        ("NASA's", 2), ("iPhone", 1), ("McDonald", 1), ("'", 0)])
def test_case_of(word, label):
    assert case_of(word) == label


def test_cased_touches_only_normalised_words():
    assert cased("nasa's", 2) == "NASA's" and cased("paris", 1) == "Paris" and cased("x", 2) == "X"
    assert cased("mcdonald", 1, {"mcdonald": "McDonald"}) == "McDonald"
    assert cased("über", 1) == "über" and cased("Hello", 2) == "Hello"      # not normalised: left alone


def test_strip_word_undoes_apply_labels():
    words = ["is", "it", "nasa's", "o'clock", "x"]
    for marks in ([0] * 5, [1, 2, 3, 4, 0]):
        for cases in ([0] * 5, [1, 2, 2, 1, 2]):
            out = apply_labels(words, marks, cases)
            assert len(out) == len(words) and [strip_word(w) for w in out] == words


def test_mixed_forms_keep_a_word_s_own_case():
    sightings = [("mcdonald", "McDonald")] * 3 + [("mcdonald", "Mcdonald"), ("iphone", "iPhone"),
                                                  ("iphone", "iPhone"), ("paris", "Paris"), ("paris", "Paris")]
    assert mixed_forms(sightings) == {"mcdonald": "McDonald", "iphone": "iPhone"}


def test_vocab_encodes_unknown_words_by_their_suffix():
    vocab = WordVocab.build("the cat the dog the walking".split(), size=10, min_count=2, suffix_buckets=64)
    assert vocab.itos == ["<pad>", "<unk>", "the"]
    ids, sufs = vocab.encode(["the", "talking", "walking", "zzz"])
    assert ids == [2, 1, 1, 1] and sufs[1] == sufs[2] != sufs[3] and all(0 < s < 64 for s in sufs)
    assert WordVocab.from_dict(vocab.to_dict()).encode(["talking"]) == vocab.encode(["talking"])


def test_scores_count_each_mark_and_the_casing():
    s = LabelScores()
    s.add(ref_marks=[0, 1, 0, 2], ref_cases=[1, 0, 0, 0], hyp_marks=[0, 1, 1, 3], hyp_cases=[1, 0, 1, 0])
    out = s.summary()
    assert out[","] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert out["."]["recall"] == 0.0 and out["?"]["precision"] == 0.0 and out["!"]["support"] == 0
    assert out["case_accuracy"] == 0.75 and out["lowercase_baseline"] == 0.75
    assert "| `,` | 0.500 | 1.000 | 0.667 | 1 |" in s.table()
