"""Both shared decoders: teacher forcing equals incremental steps, attention, state reordering, padding."""
import pytest
import torch

from s2s_media.models.decoder import select_state
from s2s_media.models.lstm_decoder import LSTMDecoder, LSTMDecoderConfig
from s2s_media.models.transformer_decoder import TransformerDecoder, TransformerDecoderConfig

V, D = 13, 32
LENGTHS = [9, 6, 3]


def make(kind: str):
    torch.manual_seed(0)
    if kind == "transformer":
        dec = TransformerDecoder(V, D, TransformerDecoderConfig(n_layers=2, n_heads=4, ffn_dim=64, dropout=0.1))
    else:
        dec = LSTMDecoder(V, D, LSTMDecoderConfig(hidden=24, n_layers=2, embed_dim=16, attention_dim=20, dropout=0.1))
    return dec.eval()   # dropout > 0 in the config: eval mode must switch it off


def inputs(lengths=LENGTHS, u: int = 6, seed: int = 1):
    """memory (B, T, D) with large junk in the padding, memory_mask (B, T), tokens (B, U)."""
    g = torch.Generator().manual_seed(seed)
    b, t = len(lengths), max(lengths)
    mask = torch.arange(t).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    memory = torch.randn(b, t, D, generator=g)
    memory = torch.where(mask.unsqueeze(-1), memory, 100 * torch.randn(b, t, D, generator=g))
    tokens = torch.randint(0, V, (b, u), generator=g)
    return memory, mask, tokens


def run_steps(dec, tokens, memory, mask, state=None):
    state = dec.init_state(memory, mask) if state is None else state
    logps, attns = [], []
    for u in range(tokens.size(1)):
        logp, state, attn = dec.step(tokens[:, u], state, memory, mask)
        logps.append(logp)
        attns.append(attn)
    return torch.stack(logps, 1), torch.stack(attns, 1), state


KINDS = ["transformer", "lstm"]


@pytest.mark.parametrize("kind", KINDS)
def test_teacher_forcing_equals_incremental_steps(kind):
    dec = make(kind)
    memory, mask, tokens = inputs()
    with torch.no_grad():
        logits, attn = dec(tokens, memory, mask, return_attention=True)
        step_logp, step_attn, _ = run_steps(dec, tokens, memory, mask)
    assert logits.shape == (3, 6, V)
    torch.testing.assert_close(step_logp, torch.log_softmax(logits, -1), atol=1e-5, rtol=0)
    torch.testing.assert_close(step_attn, attn, atol=1e-5, rtol=0)
    assert torch.allclose(step_logp.exp().sum(-1), torch.ones(3, 6), atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_forward_is_causal(kind):
    """Changing a later token never changes earlier logits (what makes the step cache possible)."""
    dec = make(kind)
    memory, mask, tokens = inputs()
    changed = tokens.clone()
    changed[:, 4] = (changed[:, 4] + 1) % V
    with torch.no_grad():
        a, b = dec(tokens, memory, mask), dec(changed, memory, mask)
    torch.testing.assert_close(a[:, :4], b[:, :4], atol=1e-5, rtol=0)
    assert (a[:, 4:] - b[:, 4:]).abs().amax(-1).min() > 1e-4       # every later position does change


@pytest.mark.parametrize("kind", KINDS)
def test_attention_weights(kind):
    dec = make(kind)
    memory, mask, tokens = inputs()
    with torch.no_grad():
        logits, attn = dec(tokens, memory, mask, return_attention=True)
        plain = dec(tokens, memory, mask)
    torch.testing.assert_close(plain, logits, atol=1e-5, rtol=0)     # asking for weights changes nothing
    assert attn.shape == (3, 6, max(LENGTHS))
    assert (attn >= 0).all()
    for i, n in enumerate(LENGTHS):
        torch.testing.assert_close(attn[i, :, :n].sum(-1), torch.ones(6), atol=1e-5, rtol=0)
        assert attn[i, :, n:].abs().sum() == 0.0


@pytest.mark.parametrize("kind", KINDS)
def test_select_state_reorders_hypotheses(kind):
    dec = make(kind)
    memory, mask, tokens = inputs(u=5)
    index = torch.tensor([2, 0, 0, 1])                 # reorder, duplicate, drop nothing
    with torch.no_grad():
        _, _, state = run_steps(dec, tokens[:, :3], memory, mask)
        picked = select_state(state, index)
        logp, new_state, attn = dec.step(tokens[index, 3], picked, memory[index], mask[index])
        # the same hypotheses computed from scratch with reordered inputs
        ref_logp, ref_attn, ref_state = run_steps(dec, tokens[index, :4], memory[index], mask[index])
        # and the reordered state keeps going correctly
        next_logp, _, _ = dec.step(tokens[index, 4], new_state, memory[index], mask[index])
        ref_next, _, _ = dec.step(tokens[index, 4], ref_state, memory[index], mask[index])
    torch.testing.assert_close(logp, ref_logp[:, -1], atol=1e-5, rtol=0)
    torch.testing.assert_close(attn, ref_attn[:, -1], atol=1e-5, rtol=0)
    torch.testing.assert_close(next_logp, ref_next, atol=1e-5, rtol=0)
    # rows 1 and 2 are copies of the same hypothesis
    torch.testing.assert_close(logp[1], logp[2], atol=0, rtol=0)
    assert (logp[0] - logp[1]).abs().max() > 1e-4


def test_select_state_handles_nested_structures():
    state = {"a": [torch.arange(3), (torch.arange(6).view(3, 2),)], "n": 7}
    out = select_state(state, torch.tensor([2, 2, 0]))
    assert out["a"][0].tolist() == [2, 2, 0]
    assert isinstance(out["a"][1], tuple) and out["a"][1][0].tolist() == [[4, 5], [4, 5], [0, 1]]
    assert out["n"] == 7


@pytest.mark.parametrize("kind", KINDS)
def test_memory_padding_does_not_change_valid_items(kind):
    dec = make(kind)
    memory, mask, tokens = inputs()
    with torch.no_grad():
        batch_logits, batch_attn = dec(tokens, memory, mask, return_attention=True)
        batch_steps, _, _ = run_steps(dec, tokens, memory, mask)
        for i, n in enumerate(LENGTHS):
            alone, alone_attn = dec(tokens[i:i + 1], memory[i:i + 1, :n], mask[i:i + 1, :n], return_attention=True)
            torch.testing.assert_close(batch_logits[i], alone[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(batch_attn[i, :, :n], alone_attn[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(batch_steps[i], torch.log_softmax(alone[0], -1), atol=1e-5, rtol=0)
