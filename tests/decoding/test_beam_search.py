"""Attention beam search and attention rescoring, driven by two tiny real decoders."""
import math

import pytest
import torch
from torch import nn

from s2s_media.decoding.beam_search import GNMTLengthNorm, beam_search, greedy_search
from s2s_media.decoding.ctc import CTCHyp
from s2s_media.decoding.rescoring import attention_rescoring, attention_scores
from s2s_media.models.decoder import Decoder
from s2s_media.text.tokenizer import EOS, SOS

A, B, C, D = 4, 5, 6, 7  # ordinary units after the reserved ids


class GRUDecoder(Decoder):
    """Embedding + GRUCell + dot-product attention over memory; forward is the step loop."""

    def __init__(self, vocab_size: int = 10, d_model: int = 16, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.vocab_size, self.d_model = vocab_size, d_model
        self.embed = nn.Embedding(vocab_size, d_model)
        self.cell = nn.GRUCell(d_model, d_model)
        self.out = nn.Linear(d_model, vocab_size)
        with torch.no_grad():
            self.out.weight.mul_(4.0)  # sharper distributions: the search matters

    def init_state(self, memory, memory_mask):
        m = memory_mask.unsqueeze(-1).float()
        return {"h": (memory * m).sum(1) / m.sum(1)}

    def step(self, tokens, state, memory, memory_mask):
        h = self.cell(self.embed(tokens), state["h"])
        scores = torch.einsum("btd,bd->bt", memory, h).masked_fill(~memory_mask, -math.inf)
        attn = scores.softmax(-1)
        ctx = torch.einsum("bt,btd->bd", attn, memory)
        return self.out(h + ctx).log_softmax(-1), {"h": h}, attn

    def forward(self, tokens, memory, memory_mask, return_attention=False, memory_index=None):
        if memory_index is not None:
            memory, memory_mask = memory[memory_index], memory_mask[memory_index]
        state = self.init_state(memory, memory_mask)
        logits, attns = [], []
        for u in range(tokens.size(1)):
            lp, state, attn = self.step(tokens[:, u], state, memory, memory_mask)
            logits.append(lp)
            attns.append(attn)
        logits = torch.stack(logits, 1)
        return (logits, torch.stack(attns, 1)) if return_attention else logits


class MarkovDecoder(Decoder):
    """p(next | previous token) from a fixed table; memory only sets a uniform attention."""

    def __init__(self, probs: dict[int, dict[int, float]], vocab_size: int = 8):
        super().__init__()
        self.vocab_size, self.d_model = vocab_size, 4
        table = torch.full((vocab_size, vocab_size), 1e-6)
        for prev, row in probs.items():
            for nxt, p in row.items():
                table[prev, nxt] = p
        self.register_buffer("table", (table / table.sum(1, keepdim=True)).log())

    def init_state(self, memory, memory_mask):
        return [torch.zeros(memory.size(0), dtype=torch.long)]  # steps taken, to exercise select_state

    def _attn(self, memory_mask):
        m = memory_mask.float()
        return m / m.sum(-1, keepdim=True)

    def step(self, tokens, state, memory, memory_mask):
        return self.table[tokens], [state[0] + 1], self._attn(memory_mask)

    def forward(self, tokens, memory, memory_mask, return_attention=False, memory_index=None):
        if memory_index is not None:
            memory_mask = memory_mask[memory_index]
        logits = self.table[tokens]
        attn = self._attn(memory_mask)[:, None].expand(-1, tokens.size(1), -1)
        return (logits, attn) if return_attention else logits


# greedy takes A (0.55) but every continuation of A is weak: A C = 0.55 * 0.5 * 0.9 ~ 0.25,
# while B C = 0.45 * 0.95 * 0.9 ~ 0.38
GARDEN_PATH = {SOS: {A: 0.55, B: 0.45}, A: {C: 0.5, D: 0.5}, B: {C: 0.95, D: 0.05},
               C: {EOS: 0.9, D: 0.1}, D: {EOS: 0.9, C: 0.1}}


def toy_memory(lengths: list[int], d: int = 16, seed: int = 1):
    """Memory (B, T, d) with random junk in the padding, and its mask."""
    g = torch.Generator().manual_seed(seed)
    t = max(lengths)
    memory = torch.randn(len(lengths), t, d, generator=g)
    mask = torch.arange(t)[None] < torch.tensor(lengths)[:, None]
    return memory, mask


def explicit_greedy(decoder, memory, mask, prefix, max_len):
    """Argmax loop, one utterance (batch of 1) at a time: tokens, log-prob, attention rows."""
    state = decoder.init_state(memory, mask)
    for tok in prefix:
        lp, state, attn = decoder.step(torch.tensor([tok]), state, memory, mask)
    tokens, total, attns = [], 0.0, []
    while True:
        nxt = int(lp[0].argmax()) if len(tokens) < max_len else EOS
        total += float(lp[0, nxt])
        if nxt == EOS:
            return tokens, total, attns
        tokens.append(nxt)
        attns.append(attn[0])
        lp, state, attn = decoder.step(torch.tensor([nxt]), state, memory, mask)


def teacher_forced_log_prob(decoder, memory, mask, prefix, tokens):
    lp = decoder(torch.tensor([prefix + tokens]), memory, mask).log_softmax(-1)[0]
    targets = tokens + [EOS]
    return sum(float(lp[len(prefix) - 1 + i, u]) for i, u in enumerate(targets))


@torch.no_grad()
def test_beam_one_equals_explicit_greedy_loop():
    dec = GRUDecoder().eval()
    memory, mask = toy_memory([9, 6, 3])
    prefix = [SOS, A]
    hyps = beam_search(dec, memory, mask, prefix, beam=1, max_len=12, return_attention=True)
    for b in range(3):
        tokens, total, attns = explicit_greedy(dec, memory[b:b + 1], mask[b:b + 1], prefix, 12)
        (h,) = hyps[b]
        assert h.tokens == tokens
        assert h.log_prob == pytest.approx(total, abs=1e-5)
        assert h.score == pytest.approx(total / (len(tokens) + 1), abs=1e-5)
        n = int(mask[b].sum())
        assert h.attention.shape == (len(tokens), n)
        if tokens:
            assert torch.allclose(h.attention, torch.stack(attns)[:, :n], atol=1e-6)
    assert [g.tokens for g in greedy_search(dec, memory, mask, prefix, max_len=12)] == [h[0].tokens for h in hyps]


def test_larger_beam_escapes_the_garden_path():
    dec = MarkovDecoder(GARDEN_PATH).eval()
    memory, mask = toy_memory([5, 2], d=4)
    greedy = beam_search(dec, memory, mask, [SOS], beam=1, max_len=10)
    wide = beam_search(dec, memory, mask, [SOS], beam=2, max_len=10, length_penalty=0.0)
    for b in range(2):
        assert greedy[b][0].tokens[0] == A
        assert wide[b][0].tokens == [B, C]
        assert wide[b][0].log_prob == pytest.approx(math.log(0.45 * 0.95 * 0.9), abs=1e-4)
        assert wide[b][0].log_prob > greedy[b][0].log_prob
        assert len(wide[b]) == 2 and wide[b][0].score >= wide[b][1].score


@torch.no_grad()
def test_batched_search_equals_per_utterance_search():
    dec = GRUDecoder(seed=3).eval()
    lengths = [7, 4, 10]
    memory, mask = toy_memory(lengths, seed=5)
    kwargs = dict(beam=4, max_len=lambda t: t + 2, length_penalty=GNMTLengthNorm(0.6), return_attention=True)
    batched = beam_search(dec, memory, mask, [SOS], **kwargs)
    for b, n in enumerate(lengths):
        single = beam_search(dec, memory[b:b + 1, :n], mask[b:b + 1, :n], [SOS], **kwargs)[0]
        assert [h.tokens for h in batched[b]] == [h.tokens for h in single]
        assert [h.score for h in batched[b]] == pytest.approx([h.score for h in single], abs=1e-5)
        for hb, hs in zip(batched[b], single):
            assert torch.allclose(hb.attention, hs.attention, atol=1e-5)
            assert len(hb.tokens) <= n + 2


@torch.no_grad()
def test_nbest_scores_are_normalised_teacher_forced_log_probs():
    dec = GRUDecoder(seed=4).eval()
    memory, mask = toy_memory([6, 8])
    hyps = beam_search(dec, memory, mask, [SOS, B], beam=5, max_len=6, length_penalty=1.0)
    for b in range(2):
        assert 1 <= len(hyps[b]) <= 5
        assert len({tuple(h.tokens) for h in hyps[b]}) == len(hyps[b])
        assert [h.score for h in hyps[b]] == sorted((h.score for h in hyps[b]), reverse=True)
        for h in hyps[b]:
            assert EOS not in h.tokens and h.attention is None and len(h.tokens) <= 6
            lp = teacher_forced_log_prob(dec, memory[b:b + 1], mask[b:b + 1], [SOS, B], h.tokens)
            assert h.log_prob == pytest.approx(lp, abs=1e-4)
            assert h.score == pytest.approx(lp / (len(h.tokens) + 1), abs=1e-4)


def test_max_len_forces_eos():
    loop = {SOS: {A: 1.0}, A: {B: 1.0}, B: {A: 1.0}}  # never wants to stop
    dec = MarkovDecoder(loop).eval()
    memory, mask = toy_memory([3, 8], d=4)
    hyps = beam_search(dec, memory, mask, [SOS], beam=3, max_len=lambda t: t)
    assert hyps[0][0].tokens == [A, B, A]
    assert hyps[1][0].tokens == [A, B, A, B, A, B, A, B]
    assert beam_search(dec, memory, mask, [SOS], beam=2, max_len=0)[0][0].tokens == []


def test_bad_arguments():
    dec = MarkovDecoder(GARDEN_PATH)
    memory, mask = toy_memory([2], d=4)
    with pytest.raises(ValueError):
        beam_search(dec, memory, mask, [SOS], beam=0)
    with pytest.raises(ValueError):
        beam_search(dec, memory, mask, [], beam=2)


# ---------------------------------------------------------------- attention rescoring

def test_rescoring_follows_the_weights():
    dec = MarkovDecoder(GARDEN_PATH).eval()
    memory, mask = toy_memory([4, 6, 2], d=4)
    nbest = [
        [CTCHyp([A, C], -1.0, [0, 2], [0.9, 0.8]), CTCHyp([B, C], -3.0, [1, 3], [0.5, 0.6])],
        [CTCHyp([A, D], -0.5, [0, 1], [0.9, 0.9]), CTCHyp([B, D], -0.6, [2, 4], [0.7, 0.7]),
         CTCHyp([B, C], -4.0, [2, 5], [0.4, 0.5])],
        [CTCHyp([], -0.1)],
    ]
    by_ctc = attention_rescoring(dec, memory, mask, nbest, [SOS], ctc_weight=1.0)
    by_att = attention_rescoring(dec, memory, mask, nbest, [SOS], ctc_weight=0.0)
    assert [r.tokens for r in by_ctc] == [[A, C], [A, D], []]
    assert [r.tokens for r in by_att] == [[B, C], [B, C], []]
    assert by_att[1].frames == [2, 5] and by_att[1].probs == [0.4, 0.5]  # the CTC timing travels along
    assert by_att[0].att_score == pytest.approx(math.log(0.45 * 0.95 * 0.9), abs=1e-4)
    assert by_att[0].ctc_score == -3.0 and by_att[0].score == by_att[0].att_score
    mixed = attention_rescoring(dec, memory, mask, nbest, [SOS], ctc_weight=0.3)
    for r in mixed:
        assert r.score == pytest.approx(0.3 * r.ctc_score + 0.7 * r.att_score)


@torch.no_grad()
def test_attention_scores_match_step_by_step_decoding():
    dec = GRUDecoder(seed=2).eval()
    memory, mask = toy_memory([5, 9])
    hyps = [[A, B, C], [], [D], [C, C, A, B, D]]
    utt = [0, 0, 1, 1]
    scores = attention_scores(dec, memory, mask, hyps, utt, [SOS, A])
    for h, b, s in zip(hyps, utt, scores.tolist()):
        n = int(mask[b].sum())
        state = dec.init_state(memory[b:b + 1, :n], mask[b:b + 1, :n])
        total = 0.0
        for i, u in enumerate([SOS, A] + h):
            lp, state, _ = dec.step(torch.tensor([u]), state, memory[b:b + 1, :n], mask[b:b + 1, :n])
            if i >= 1:
                total += float(lp[0, (h + [EOS])[i - 1]])
        assert s == pytest.approx(total, abs=1e-4)


def test_rescoring_edge_cases():
    dec = MarkovDecoder(GARDEN_PATH)
    memory, mask = toy_memory([3, 3], d=4)
    empty = attention_rescoring(dec, memory, mask, [[], [CTCHyp([A], -1.0)]], [SOS])
    assert empty[0].tokens == [] and empty[0].score == -math.inf and empty[1].tokens == [A]
    with pytest.raises(ValueError):
        attention_rescoring(dec, memory, mask, [[]], [SOS])
    with pytest.raises(ValueError):
        attention_rescoring(dec, memory, mask, [[], []], [SOS], ctc_weight=1.5)


def test_attention_scores_do_not_depend_on_grouping(monkeypatch):
    import s2s_media.decoding.rescoring as rescoring
    dec = GRUDecoder(seed=3).eval()
    memory, mask = toy_memory([4, 7, 6])
    hyps = [[A, B, C], [], [D], [C, C, A, B, D], [B], [A, A]]
    utt = [2, 0, 1, 1, 0, 2]
    together = attention_scores(dec, memory, mask, hyps, utt, [SOS])
    monkeypatch.setattr(rescoring, "ROWS", 2)      # three groups, each with its own memory rows
    assert attention_scores(dec, memory, mask, hyps, utt, [SOS]).tolist() == pytest.approx(together.tolist(), abs=1e-5)


@pytest.mark.parametrize("name", ["transformer", "lstm"])
def test_decoders_share_memory_through_memory_index(name):
    from s2s_media.models.registry import DECODERS
    torch.manual_seed(0)
    cls = DECODERS[name]
    dec = cls(12, 16, cls.Config(**({"n_layers": 2, "n_heads": 2, "ffn_dim": 32} if name == "transformer"
                                    else {}))).eval()
    memory, mask = torch.randn(2, 7, 16), torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    index = torch.tensor([1, 0, 1])
    tokens = torch.randint(0, 12, (3, 5))
    copied = dec(tokens, memory[index], mask[index])
    shared = dec(tokens, memory, mask, memory_index=index)
    assert torch.allclose(copied, shared, atol=1e-5)
