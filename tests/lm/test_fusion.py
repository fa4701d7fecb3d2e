"""Shallow fusion of the n-gram into the CTC prefix beam search and into rescoring."""
import itertools
import math

import pytest
import torch

from s2s_media.decoding.ctc import CTCHyp, CTCPrefixBeamSearch, ctc_prefix_beam_search, ctc_prefix_beam_search_batch
from s2s_media.decoding.rescoring import attention_rescoring
from s2s_media.lm import LMFusion, NgramLM

BOS, EOS = 2, 3


def ctc_totals(log_probs: torch.Tensor) -> dict[tuple, float]:
    """Brute force: every label sequence -> log of its summed alignment probability."""
    t, v = log_probs.shape
    p = log_probs.exp().tolist()
    total: dict[tuple, float] = {}
    for path in itertools.product(range(v), repeat=t):
        labels, prev = [], 0
        for u in path:
            if u != 0 and u != prev:
                labels.append(u)
            prev = u
        total[tuple(labels)] = total.get(tuple(labels), 0.0) + math.prod(p[i][u] for i, u in enumerate(path))
    return {k: math.log(v) for k, v in total.items()}


def fused(fusion: LMFusion, labels: tuple) -> float:
    state, score = (), 0.0
    for u in labels:
        score += fusion.next_scores(state)[u]
        state = fusion.advance(state, u)
    return score + fusion.end(state)


def tiny_lm(order: int = 3) -> NgramLM:
    # vocabulary 0..5: blank, unk, bos, eos, then "a" (4) and "b" (5); the language says "abab..."
    return NgramLM.train([[4, 5] * k for k in range(1, 5)] + [[4]], order, 6, BOS, EOS)


@pytest.mark.parametrize("seed", range(3))
def test_fused_search_is_exact_against_brute_force(seed):
    torch.manual_seed(seed)
    lp = torch.randn(4, 6, dtype=torch.float64).mul(1.5)
    lp[:, 1:4] = -30.0                                   # specials are never emitted
    lp = lp.log_softmax(-1)
    fusion = LMFusion(tiny_lm(), weight=0.8, bonus=0.3)
    expect = {k: c + fused(fusion, k) for k, c in ctc_totals(lp).items()}
    hyps = ctc_prefix_beam_search(lp, beam=256, blank_skip=None, lm=fusion)
    best = max(expect, key=expect.get)
    assert tuple(hyps[0].tokens) == best
    for h in hyps:
        assert h.score + h.lm_score == pytest.approx(expect[tuple(h.tokens)], abs=1e-6)
        assert h.lm_score == pytest.approx(fused(fusion, tuple(h.tokens)), abs=1e-9)


def test_the_language_model_settles_what_the_acoustics_leave_open():
    # frames: "a", blank, then "a" or "b" almost equally (b slightly ahead), blank
    rows = [[0.05, 0, 0, 0, 0.95, 0], [0.9, 0, 0, 0, 0.05, 0.05], [0.02, 0, 0, 0, 0.48, 0.5],
            [0.9, 0, 0, 0, 0.05, 0.05]]
    lp = torch.tensor([[x + 1e-6 for x in r] for r in rows], dtype=torch.float64)
    lp = (lp / lp.sum(-1, keepdim=True)).log()
    assert ctc_prefix_beam_search(lp, beam=8)[0].tokens == [4, 5]       # "ab" by a hair without an LM
    lm = NgramLM.train([[4, 4]] * 20, 3, 6, BOS, EOS)                  # a language where "aa" is the word
    with_lm = ctc_prefix_beam_search(lp, beam=8, lm=LMFusion(lm, weight=1.0))
    assert with_lm[0].tokens == [4, 4]


def test_weight_zero_gives_the_plain_search():
    torch.manual_seed(0)
    lp = torch.randn(2, 30, 6).log_softmax(-1)
    plain = ctc_prefix_beam_search_batch(lp, beam=5)
    zero = ctc_prefix_beam_search_batch(lp, beam=5, lm=LMFusion(tiny_lm(), weight=0.0))
    for a, b in zip(plain, zero):
        assert [h.tokens for h in a] == [h.tokens for h in b]
        assert [h.score for h in a] == pytest.approx([h.score for h in b])
        assert all(h.lm_score == 0.0 for h in b)


def test_fusion_carries_across_streaming_chunks():
    torch.manual_seed(1)
    lp = torch.randn(40, 6).log_softmax(-1)
    fusion = LMFusion(tiny_lm(), weight=0.5, bonus=0.2)
    search = CTCPrefixBeamSearch(beam=6, lm=fusion)
    for part in lp.split(7):
        search.advance(part)
    whole = ctc_prefix_beam_search(lp, beam=6, lm=fusion)
    chunked = search.nbest()
    assert [h.tokens for h in chunked] == [h.tokens for h in whole]
    assert [h.lm_score for h in chunked] == pytest.approx([h.lm_score for h in whole])


def test_token_floor_prunes_without_changing_a_peaky_result():
    torch.manual_seed(2)
    logits = torch.randn(60, 6)
    logits[torch.arange(60), torch.randint(0, 6, (60,))] += 9.0
    lp = logits.log_softmax(-1)
    exact = ctc_prefix_beam_search(lp, beam=6, blank_skip=None)
    floored = ctc_prefix_beam_search(lp, beam=6, blank_skip=None, token_floor=1e-3)
    assert floored[0].tokens == exact[0].tokens
    assert floored[0].score == pytest.approx(exact[0].score, abs=1e-2)
    with pytest.raises(ValueError, match="token_floor"):
        CTCPrefixBeamSearch(beam=4, token_floor=1.5)


def test_rescoring_adds_the_fused_score():
    class Flat(torch.nn.Module):      # a decoder with no opinion: every token equally likely
        def forward(self, tokens, memory, mask, memory_index=None):
            return torch.zeros(tokens.size(0), tokens.size(1), 6)
    memory, mask = torch.zeros(1, 5, 4), torch.ones(1, 5, dtype=torch.bool)
    nbest = [[CTCHyp([4, 5], -1.0, lm_score=-5.0), CTCHyp([4], -1.2, lm_score=-0.5)]]
    best = attention_rescoring(Flat(), memory, mask, nbest, [BOS], ctc_weight=0.5)[0]
    # att: "ab"+eos = 3 log(1/6), "a"+eos = 2 log(1/6); totals -0.5-2.69-5 vs -0.6-1.79-0.5
    assert best.tokens == [4]
    assert best.score == pytest.approx(0.5 * -1.2 + 0.5 * 2 * math.log(1 / 6) - 0.5)
    assert best.lm_score == -0.5 and best.ctc_score == -1.2
