import itertools
import math

import pytest
import torch

from s2s_media.decoding.ctc import (CTCPrefixBeamSearch, ctc_greedy, ctc_prefix_beam_search,
                                    ctc_prefix_beam_search_batch)


def posteriorgram(rows: list[list[float]]) -> torch.Tensor:
    """(T, V) log-posteriors from rows of (unnormalised) probabilities."""
    p = torch.tensor(rows, dtype=torch.float64)
    return (p / p.sum(-1, keepdim=True)).log()


def peaky(t: int, v: int, seed: int, blank_frac: float = 0.6) -> torch.Tensor:
    """Random CTC-like output: each frame is confidently one symbol, mostly blank."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(t, v, generator=g)
    ids = torch.randint(1, v, (t,), generator=g)
    ids[torch.rand(t, generator=g) < blank_frac] = 0
    logits[torch.arange(t), ids] += 8.0
    return logits.log_softmax(-1)


def brute_force(log_probs: torch.Tensor, blank: int = 0):
    """Every alignment: label sequence -> (total prob, best-path peak frames, best-path peak probs)."""
    t, v = log_probs.shape
    p = log_probs.exp().tolist()
    total: dict[tuple, float] = {}
    best: dict[tuple, tuple[float, list[int], list[float]]] = {}
    for path in itertools.product(range(v), repeat=t):
        prob = math.prod(p[i][u] for i, u in enumerate(path))
        labels, frames, peaks, prev = [], [], [], blank
        for i, u in enumerate(path):
            if u != blank:
                if u != prev:
                    labels.append(u), frames.append(i), peaks.append(p[i][u])
                elif p[i][u] > peaks[-1]:
                    frames[-1], peaks[-1] = i, p[i][u]
            prev = u
        key = tuple(labels)
        total[key] = total.get(key, 0.0) + prob
        if key not in best or prob > best[key][0]:
            best[key] = (prob, frames, peaks)
    return total, best


def test_greedy_on_hand_built_posteriorgram():
    # frames:  a    a(peak) -    b    -    b    b(peak) c    pad  pad
    rows = [[.1, .8, .1, 0], [.05, .9, .05, 0], [.9, .05, .05, 0], [.2, .1, .7, 0], [.9, .1, 0, 0],
            [.3, 0, .7, 0], [.1, 0, .9, 0], [.1, 0, 0, .9], [0, 0, 0, 1], [0, 0, 0, 1]]
    lp = posteriorgram([[x + 1e-9 for x in r] for r in rows])
    batch = torch.stack([lp, lp])
    hyps = ctc_greedy(batch, torch.tensor([8, 3]))
    assert hyps[0].tokens == [1, 2, 2, 3]
    assert hyps[0].frames == [1, 3, 6, 7]
    assert hyps[0].probs == pytest.approx([.9, .7, .9, .9], abs=1e-6)
    assert hyps[0].score == pytest.approx(sum(math.log(x) for x in [.8, .9, .9, .7, .9, .7, .9, .9]), abs=1e-6)
    assert hyps[1].tokens == [1] and hyps[1].frames == [1]
    full = ctc_greedy(batch)[0]  # without lengths the last two frames continue c's run
    assert full.tokens == [1, 2, 2, 3] and full.frames == [1, 3, 6, 8]


@pytest.mark.parametrize("seed", range(4))
def test_prefix_beam_search_is_exact_against_brute_force(seed):
    torch.manual_seed(seed)
    lp = torch.randn(4, 3, dtype=torch.float64).mul(1.5).log_softmax(-1)
    total, best = brute_force(lp)
    hyps = ctc_prefix_beam_search(lp, beam=64, blank_skip=None)
    assert len(total) == 15  # label sequences 4 frames can spell over 2 symbols ("aa" needs 3 frames)
    assert {tuple(h.tokens) for h in hyps} == set(total)
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
    for h in hyps:
        key = tuple(h.tokens)
        assert math.exp(h.score) == pytest.approx(total[key], rel=1e-9)
        assert h.frames == best[key][1]
        assert h.probs == pytest.approx(best[key][2], rel=1e-9)


def test_small_beam_keeps_the_best_of_the_exact_ranking():
    torch.manual_seed(7)
    lp = torch.randn(4, 3, dtype=torch.float64).log_softmax(-1)
    total, _ = brute_force(lp)
    top = sorted(total.items(), key=lambda kv: kv[1], reverse=True)[0][0]
    assert ctc_prefix_beam_search(lp, beam=3, blank_skip=None)[0].tokens == list(top)


@pytest.mark.parametrize("seed", range(5))
def test_beam_one_matches_greedy_on_peaky_input(seed):
    lp = peaky(60, 12, seed)
    greedy = ctc_greedy(lp[None])[0]
    hyp = ctc_prefix_beam_search(lp, beam=1)[0]
    assert hyp.tokens == greedy.tokens
    assert hyp.frames == greedy.frames
    assert hyp.probs == pytest.approx(greedy.probs)
    assert hyp.score >= greedy.score - 1e-4  # all alignments >= the best one


@pytest.mark.parametrize("blank_skip", [None, 0.999])
def test_chunked_search_equals_one_shot(blank_skip):
    lp = peaky(97, 20, seed=3, blank_frac=0.7)
    one_shot = ctc_prefix_beam_search(lp, beam=6, blank_skip=blank_skip)
    search = CTCPrefixBeamSearch(beam=6, blank_skip=blank_skip)
    for chunk in lp.split(16):
        search.advance(chunk)
    chunked = search.nbest()
    assert [h.tokens for h in chunked] == [h.tokens for h in one_shot]
    assert [h.frames for h in chunked] == [h.frames for h in one_shot]
    assert [h.score for h in chunked] == pytest.approx([h.score for h in one_shot])
    search.reset()
    search.advance(lp[:0])
    assert search.nbest()[0].tokens == [] and search.nbest()[0].score == 0.0
    search.advance(lp)
    assert [h.tokens for h in search.nbest()] == [h.tokens for h in one_shot]


def test_blank_skip_changes_little_on_peaky_input():
    lp = peaky(200, 30, seed=11, blank_frac=0.8)
    exact = ctc_prefix_beam_search(lp, beam=8, blank_skip=None)[0]
    fast = ctc_prefix_beam_search(lp, beam=8, blank_skip=0.999)[0]
    assert fast.tokens == exact.tokens and fast.frames == exact.frames
    assert fast.score == pytest.approx(exact.score, abs=1e-2)


def test_batch_wrapper_equals_per_utterance_search():
    lps = torch.stack([peaky(50, 15, s) for s in range(3)])
    lengths = torch.tensor([50, 31, 7])
    batched = ctc_prefix_beam_search_batch(lps, lengths, beam=5)
    for b in range(3):
        single = ctc_prefix_beam_search(lps[b, :lengths[b]], beam=5)
        assert [h.tokens for h in batched[b]] == [h.tokens for h in single]
        assert [h.frames for h in batched[b]] == [h.frames for h in single]
        assert [h.score for h in batched[b]] == pytest.approx([h.score for h in single])


def test_bad_arguments():
    with pytest.raises(ValueError):
        CTCPrefixBeamSearch(beam=0)
    with pytest.raises(ValueError):
        CTCPrefixBeamSearch(blank_skip=1.5)
    with pytest.raises(ValueError):
        CTCPrefixBeamSearch().advance(torch.zeros(1, 2, 3))
