"""The ARPA writer: KenLM (through flashlight) scores sentences exactly as our n-gram does."""
import math
import random

import pytest
from flashlight.lib.text.decoder.kenlm import KenLM
from flashlight.lib.text.dictionary import Dictionary

from s2s_media.decoding.native import KenLMFusion
from s2s_media.errors import UserError
from s2s_media.lm import NgramLM
from s2s_media.lm.arpa import arpa_vocabulary, arpa_words, write_arpa

ITOS = ["<blank>", "<unk>", "<sos>", "<eos>", "'", "a", "b", "c", "d", "e", "▁"]
BOS, EOS = 2, 3


def corpus(seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.choice([4, 5, 5, 6, 7, 8, 9, 10, 5, 10]) for _ in range(rng.randint(1, 9))] for _ in range(300)]


def kenlm_score(lm: KenLM, ids: list[int]) -> float:
    """Natural-log probability of a sentence, its end included."""
    state, total = lm.start(False), 0.0
    for u in ids:
        state, s = lm.score(state, u)
        total += s
    return (total + lm.finish(state)[1]) * math.log(10)


@pytest.mark.parametrize("order,prune", [(2, 1), (3, 1), (4, 2), (6, 1)])
def test_kenlm_scores_equal_the_ngram(order, prune, tmp_path):
    seqs = corpus()
    lm = NgramLM.train(seqs, order, len(ITOS), BOS, EOS, prune=prune)
    words = arpa_words(ITOS, BOS, EOS)
    ken = KenLMFusion(write_arpa(lm, words, tmp_path / "lm.arpa"), words, 1.0).kenlm
    rng = random.Random(1)
    unseen = [[rng.randint(4, 10) for _ in range(rng.randint(0, 12))] for _ in range(60)]
    for ids in seqs[:60] + unseen:
        assert kenlm_score(ken, ids) == pytest.approx(lm.score(ids), abs=1e-4)


def test_token_bonus_is_added_per_token_and_kept_below_one(tmp_path):
    lm = NgramLM.train(corpus(), 3, len(ITOS), BOS, EOS)
    words = arpa_words(ITOS, BOS, EOS)
    path = write_arpa(lm, words, tmp_path / "bonus.arpa", token_bonus=0.05)
    ken = KenLM(str(path), Dictionary(words))                 # KenLM refuses a positive log-probability
    for ids in corpus(2)[:30]:
        plain = lm.score(ids) + 0.05 * len(ids)
        assert kenlm_score(ken, ids) <= plain + 1e-4          # the bonus, capped where a log-prob would pass 0
        assert kenlm_score(ken, ids) >= lm.score(ids) - 1e-4


def test_words_and_vocabulary(tmp_path):
    assert arpa_words(ITOS, BOS, EOS)[BOS:EOS + 1] == ["<s>", "</s>"]
    with pytest.raises(ValueError, match="ARPA words"):
        arpa_words(["a", "b c"], 5, 6)
    lm = NgramLM.train(corpus(), 2, len(ITOS), BOS, EOS)
    path = write_arpa(lm, arpa_words(ITOS, BOS, EOS), tmp_path / "lm.arpa")
    assert arpa_vocabulary(path) == set(arpa_words(ITOS, BOS, EOS))


def test_an_lm_over_another_tokenizer_is_refused_naming_the_file(tmp_path):
    lm = NgramLM.train(corpus(), 2, len(ITOS), BOS, EOS)
    path = write_arpa(lm, arpa_words(ITOS, BOS, EOS), tmp_path / "lm.arpa")
    other = ITOS[:-2] + ["x", "y"]
    with pytest.raises(UserError, match=r"lm\.arpa: the language model does not match the model's tokenizer") as e:
        KenLMFusion(path, arpa_words(other, BOS, EOS), 1.0)
    assert "\n" not in str(e.value) and "'x'" in str(e.value)
    junk = tmp_path / "junk.arpa"
    junk.write_text("not a language model\n")
    with pytest.raises(UserError, match="junk.arpa: not an ARPA language model"):
        KenLMFusion(junk, arpa_words(ITOS, BOS, EOS), 1.0)
