import math

import pytest

from s2s_media.metrics import cer, wer


def test_wer_counts_on_a_known_example():
    refs = ["the cat sat on the mat", "hello big world", "fine"]
    hyps = ["the cat sit on the mat today", "hello world", "fine"]
    r = wer(refs, hyps)
    assert (r.substitutions, r.deletions, r.insertions, r.ref_len) == (1, 1, 1, 10)
    assert r.rate == pytest.approx(3 / 10)
    assert r.errors == 3 and str(r).startswith("30.00%")


def test_wer_normalises_both_sides():
    assert wer("Dr. Who's 2nd TARDIS, in 1984!", "dr who's second tardis in nineteen eighty four").rate == 0.0
    assert wer("Hello,  World", "hello world", normalize=False).rate == 1.0


def test_cer_counts_characters_and_spaces():
    r = cer(["abc de"], ["abd de"])
    assert (r.substitutions, r.deletions, r.insertions, r.ref_len) == (1, 0, 0, 6)
    r = cer(["ab cd"], ["abcd"])  # the missing space is one deletion
    assert (r.deletions, r.ref_len, r.rate) == (1, 5, pytest.approx(1 / 5))


def test_empty_references_count_insertions():
    r = wer(["a b c", "", "?!"], ["a b c", "um uh", ""])  # "?!" normalises to nothing
    assert (r.substitutions, r.deletions, r.insertions, r.ref_len) == (0, 0, 2, 3)
    assert r.rate == pytest.approx(2 / 3)
    assert cer(["ab", ""], ["ab", "xy"]).insertions == 2
    assert wer([""], [""]).rate == 0.0
    assert math.isinf(wer([""], ["oops"]).rate)
    assert wer(["a"], [""]).deletions == 1


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        wer([], [])
    with pytest.raises(ValueError):
        cer(["a", "b"], ["a"])
