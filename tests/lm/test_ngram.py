"""The Kneser-Ney n-gram: proper distributions, what it prefers, serialisation and limits."""
import math
import random

import numpy as np
import pytest
import torch

from s2s_media.checkpoint_io import save_checkpoint
from s2s_media.lm import NgramLM

V, BOS, EOS = 12, 2, 3          # ids 4..11 are "letters"; 0 blank and 1 unk never occur


def corpus(n: int = 300, seed: int = 0) -> list[list[int]]:
    """Sentences of a tiny language: words 'ab', 'abc', 'de', 'fgh' joined by the separator 11."""
    rng = random.Random(seed)
    words = [[4, 5], [4, 5, 6], [7, 8], [9, 10, 4]]
    out = []
    for _ in range(n):
        s: list[int] = []
        for k in range(rng.randint(1, 4)):
            s += ([11] if k else []) + rng.choice(words)
        out.append(s)
    return out


@pytest.mark.parametrize("order", [1, 2, 3, 5])
@pytest.mark.parametrize("prune", [1, 2])
def test_every_distribution_sums_to_one(order, prune):
    lm = NgramLM.train(corpus(), order, V, BOS, EOS, prune=prune)
    rng = random.Random(1)
    contexts = [(), (4,), (4, 5), (11, 9, 10), (6, 6, 6, 6), tuple(rng.randrange(V) for _ in range(6))]
    for ctx in contexts:
        p = np.exp(lm.log_probs(ctx))
        assert p.sum() == pytest.approx(1.0, abs=1e-5)
        assert (p > 0).all()                       # smoothing leaves no zero


def test_it_prefers_what_it_saw():
    lm = NgramLM.train(corpus(), 3, V, BOS, EOS)
    lp = lm.log_probs((9, 10))
    assert int(np.argmax(lp)) == 4                 # "fg" -> "h" (4) every time in training
    assert lm.log_probs((4,))[5] > math.log(0.9)   # "a" is always followed by "b"
    held_out = corpus(100, seed=7)
    scrambled = [random.Random(i).sample(s, len(s)) for i, s in enumerate(held_out)]
    assert lm.perplexity(held_out) < 0.5 * lm.perplexity(scrambled)
    unigram = NgramLM.train(corpus(), 1, V, BOS, EOS)
    assert lm.perplexity(held_out) < unigram.perplexity(held_out)


def test_kneser_ney_lower_order_uses_continuation_counts():
    # "x" (4) is frequent but only ever after "y" (5); "z" (6) is rarer but follows many ids.
    seqs = [[5, 4]] * 50 + [[k, 6] for k in (7, 8, 9, 10, 11)]
    lm = NgramLM.train(seqs, 2, V, BOS, EOS)
    backoff = lm.log_probs((1,))       # an unseen context: the unigram of continuation counts
    assert backoff[6] > backoff[4]     # raw counts (50 vs 5) would rank them the other way


def test_score_is_the_sum_of_conditionals_with_the_end():
    lm = NgramLM.train(corpus(), 3, V, BOS, EOS)
    s = [4, 5, 11, 7, 8]
    expected = lm.log_probs(())[4] + lm.log_probs((4,))[5] + lm.log_probs((4, 5))[11] + \
        lm.log_probs((5, 11))[7] + lm.log_probs((11, 7))[8] + lm.log_probs((7, 8))[EOS]
    assert lm.score(s) == pytest.approx(expected, rel=1e-9)


def test_round_trip_through_a_weights_only_file(tmp_path):
    lm = NgramLM.train(corpus(), 4, V, BOS, EOS)
    save_checkpoint({"model": {}, "lm": lm.to_dict()}, tmp_path / "lm.pt")   # numpy tables stored as tensors
    again = NgramLM.from_dict(torch.load(tmp_path / "lm.pt", weights_only=True)["lm"])
    assert again.order == 4 and again.num_ngrams == lm.num_ngrams
    for ctx in [(), (4,), (9, 10), (4, 5, 11)]:
        # probabilities are stored in float16: ~1e-3 relative
        assert np.allclose(np.exp(again.log_probs(ctx)), np.exp(lm.log_probs(ctx)), rtol=2e-3, atol=1e-6)
    with pytest.raises(ValueError, match="format"):
        NgramLM.from_dict({**lm.to_dict(), "format": 99})


def test_limits_are_checked():
    with pytest.raises(ValueError, match="order must be"):
        NgramLM.train(corpus(), 0, V, BOS, EOS)
    with pytest.raises(ValueError, match="64-bit context keys; use order <= 5"):
        NgramLM.train([[5, 6]], 7, 5000, BOS, EOS)
