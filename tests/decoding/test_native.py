"""The native (flashlight-text) CTC prefix beam search against brute force, with and without an LM."""
import math

import numpy as np
import pytest
import torch

from s2s_media.decoding.ctc import ctc_prefix_beam_search
from s2s_media.decoding.native import KenLMFusion, NativeCTCSearch, native_nbest_batch
from s2s_media.lm import LMFusion
from s2s_media.lm.arpa import arpa_words, write_arpa
from tests.decoding.test_ctc import brute_force, peaky
from tests.lm.test_fusion import ctc_totals, fused, tiny_lm

ITOS = ["<blank>", "<unk>", "<sos>", "<eos>", "a", "b"]


def lattice(seed: int, t: int = 5, v: int = 6) -> torch.Tensor:
    """Random (t, v) log-posteriors whose specials (1..3) are never emitted."""
    g = torch.Generator().manual_seed(seed)
    lp = torch.randn(t, v, generator=g, dtype=torch.float64).mul(1.5)
    lp[:, 1:4] = -30.0
    return lp.log_softmax(-1)


@pytest.mark.parametrize("seed", range(4))
def test_best_hypothesis_equals_brute_force_without_lm(seed):
    lp = peaky(6, 4, seed, blank_frac=0.3).double()
    total, best = brute_force(lp)
    search = NativeCTCSearch(4, beam=1100, blank_skip=None)   # every prefix
    search.advance(lp)
    hyps = search.nbest()
    top = max(total, key=total.get)
    assert tuple(hyps[0].tokens) == top
    assert hyps[0].frames == best[top][1]
    assert hyps[0].probs == pytest.approx(best[top][2], rel=1e-5)
    for h in hyps:                                       # every score is the total over alignments
        assert h.score == pytest.approx(math.log(total[tuple(h.tokens)]), abs=1e-4)
        assert h.lm_score == 0.0


@pytest.mark.parametrize("seed", range(4))
def test_best_hypothesis_equals_brute_force_with_the_lm(seed):
    lp = lattice(seed)
    fusion = LMFusion(tiny_lm(), weight=0.8, bonus=0.3)
    expect = {k: c + fused(fusion, k) for k, c in ctc_totals(lp).items()}
    hyps = native_nbest_batch(lp[None], beam=1000, blank_skip=None, lm=fusion)[0]
    assert tuple(hyps[0].tokens) == max(expect, key=expect.get)
    for h in hyps:
        assert h.score + h.lm_score == pytest.approx(expect[tuple(h.tokens)], abs=1e-4)
        assert h.lm_score == pytest.approx(fused(fusion, tuple(h.tokens)), abs=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_best_hypothesis_equals_brute_force_with_kenlm(seed, tmp_path):
    lm = tiny_lm()
    arpa = write_arpa(lm, arpa_words(ITOS, lm.bos, lm.eos), tmp_path / "lm.arpa")
    fusion = LMFusion(lm, weight=0.8)                    # no bonus: the ARPA file is the LM itself
    lp = lattice(seed)
    expect = {k: c + fused(fusion, k) for k, c in ctc_totals(lp).items()}
    hyps = native_nbest_batch(lp[None], beam=1000, blank_skip=None,
                              lm=KenLMFusion(arpa, arpa_words(ITOS, lm.bos, lm.eos), 0.8))[0]
    assert tuple(hyps[0].tokens) == max(expect, key=expect.get)
    for h in hyps[:5]:
        assert h.score + h.lm_score == pytest.approx(expect[tuple(h.tokens)], abs=1e-4)


@pytest.mark.parametrize("with_lm", [False, True])
def test_chunked_equals_one_shot_with_pruning(with_lm):
    lp = peaky(40, 6, 7, blank_frac=0.6)
    lp[:, 1:4] = -20.0
    lp = lp.log_softmax(-1)
    lm = LMFusion(tiny_lm(), weight=0.5, bonus=0.2) if with_lm else None
    whole = NativeCTCSearch(6, beam=4, blank_skip=0.99, lm=lm, token_floor=1e-3)
    whole.advance(lp)
    chunked = NativeCTCSearch(6, beam=4, blank_skip=0.99, lm=lm, token_floor=1e-3)
    for start in range(0, 40, 7):
        chunked.advance(lp[start:start + 7].numpy())
    a, b = whole.nbest(), chunked.nbest()
    assert [h.tokens for h in a] == [h.tokens for h in b] and [h.frames for h in a] == [h.frames for h in b]
    assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-4)
    chunked.reset()
    assert chunked.nbest()[0].tokens == [] and chunked.nbest()[0].score == 0.0 and chunked.frames == 0


@pytest.mark.parametrize("seed", range(3))
def test_pruned_search_agrees_with_the_python_search(seed):
    lp = peaky(60, 6, seed, blank_frac=0.5).double()
    lm = LMFusion(tiny_lm(), weight=0.5, bonus=0.5)
    for fusion in (None, lm):
        ours = native_nbest_batch(lp[None], beam=5, blank_skip=0.99, lm=fusion, token_floor=3e-3)[0][0]
        ref = ctc_prefix_beam_search(lp, beam=5, blank_skip=0.99, lm=fusion, token_floor=3e-3)[0]
        assert ours.tokens == ref.tokens and ours.frames == ref.frames
        assert ours.score == pytest.approx(ref.score, abs=1e-2)   # the two keep slightly different alignments


def test_bad_options_and_shapes():
    with pytest.raises(ValueError, match="beam"):
        NativeCTCSearch(6, beam=0)
    with pytest.raises(ValueError, match="blank_skip"):
        NativeCTCSearch(6, blank_skip=1.5)
    with pytest.raises(ValueError, match="token_floor"):
        NativeCTCSearch(6, token_floor=1.0)
    with pytest.raises(ValueError, match="shape"):
        NativeCTCSearch(6).advance(np.zeros((3, 5), np.float32))
