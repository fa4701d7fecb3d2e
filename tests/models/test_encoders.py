"""Conformer, Transformer and pyramidal-BLSTM encoders: shapes, padding, chunk masks and streaming."""
import pytest
import torch

from s2s_media.models.layers import chunk_mask
from s2s_media.models.registry import ENCODERS, component_config
from s2s_media.models.subsampling import Conv2dSubsampling4

N_MELS = 16
ATTN = dict(d_model=32, n_heads=4, n_layers=2, ffn_dim=64, subsampling_channels=8, dropout=0.0)
CONFS = {
    "conformer": dict(ATTN, kernel_size=5, causal=True),
    "conformer_noncausal": dict(ATTN, kernel_size=5, causal=False),
    "transformer": dict(ATTN),
    "pyramidal_lstm": dict(hidden=16, n_layers=3, pyramid_layers=2, d_model=32, dropout=0.0),
}


def make(kind: str, seed: int = 0, **over):
    name = kind.replace("_noncausal", "")
    torch.manual_seed(seed)
    conf = {**CONFS[kind], **over}
    return ENCODERS[name](N_MELS, component_config(ENCODERS, name, conf, "model.encoder")).eval()


def feats(lengths, seed: int = 1, pad_value: float | None = None):
    """(B, max(lengths), N_MELS) random features; padding filled with ``pad_value`` (random junk if None)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), max(lengths), N_MELS, generator=g)
    for i, n in enumerate(lengths):
        x[i, n:] = 50 * torch.randn(x.size(1) - n, N_MELS, generator=g) if pad_value is None else pad_value
    return x, torch.tensor(lengths)


def subsampled(n: int) -> int:
    return ((n - 1) // 2 - 1) // 2


# --------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("kind", ["conformer", "transformer"])
def test_attention_encoder_shapes_follow_subsampling_formula(kind):
    lengths = [61, 40, 11, 7, 6]
    x, lens = feats(lengths)
    with torch.no_grad():
        out, out_lens = make(kind)(x, lens)
    assert out.shape == (5, subsampled(61), 32)
    assert out_lens.tolist() == [subsampled(n) for n in lengths] == [14, 9, 2, 1, 0]
    assert Conv2dSubsampling4.output_lengths(lens).tolist() == out_lens.tolist()
    assert torch.isfinite(out).all()


def test_subsampling_formula_matches_convolutions_for_every_length():
    sub = Conv2dSubsampling4(N_MELS, 32, channels=4)
    for n in range(7, 40):
        out, out_len = sub(torch.zeros(1, n, N_MELS), torch.tensor([n]))
        assert out.size(1) == out_len.item() == subsampled(n), n


@pytest.mark.parametrize("n_layers", [3, 2])       # 2: every layer is pyramidal, the last one too
def test_pyramidal_lstm_shapes(n_layers):
    lengths = [61, 40, 13, 4]
    x, lens = feats(lengths)
    with torch.no_grad():
        out, out_lens = make("pyramidal_lstm", n_layers=n_layers)(x, lens)
    assert out.shape == (4, 61 // 4, 32)
    assert out_lens.tolist() == [n // 2 // 2 for n in lengths] == [15, 10, 3, 1]


# --------------------------------------------------------------------------- padding
@pytest.mark.parametrize("kind, chunk", [("conformer", 0), ("conformer_noncausal", 0), ("transformer", 0),
                                         ("pyramidal_lstm", 0), ("conformer", 3), ("transformer", 3)])
def test_padding_invariance(kind, chunk):
    enc = make(kind)
    lengths = [70, 45, 31]
    x, lens = feats(lengths)                  # padding is large random junk, not zeros
    with torch.no_grad():
        out, out_lens = enc(x, lens, chunk_size=chunk)
        for i, n in enumerate(lengths):
            alone, alone_len = enc(x[i:i + 1, :n], lens[i:i + 1], chunk_size=chunk)
            assert alone_len.item() == out_lens[i].item()
            assert alone.size(1) == alone_len.item()
            torch.testing.assert_close(out[i, : out_lens[i]], alone[0], atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- chunk masks
def test_chunk_mask_semantics():
    t, f = True, False
    assert chunk_mask(5, 2).tolist() == [
        [t, t, f, f, f],
        [t, t, f, f, f],
        [t, t, t, t, f],
        [t, t, t, t, f],
        [t, t, t, t, t],
    ]
    assert chunk_mask(5, 2, left_chunks=0).tolist() == [          # own chunk only
        [t, t, f, f, f],
        [t, t, f, f, f],
        [f, f, t, t, f],
        [f, f, t, t, f],
        [f, f, f, f, t],
    ]
    assert chunk_mask(6, 2, left_chunks=1).tolist()[5] == [f, f, t, t, t, t]
    assert torch.equal(chunk_mask(4, 1), torch.ones(4, 4, dtype=torch.bool).tril())  # chunk 1 = causal
    assert chunk_mask(4, 10).all()                                                    # one big chunk


# --------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("kind, left", [("conformer", -1), ("conformer", 1), ("transformer", -1)])
def test_chunked_outputs_do_not_change_when_future_frames_arrive(kind, left):
    """The streaming property: outputs of complete chunks depend only on the past and the chunk itself."""
    enc, c = make(kind), 4
    x, _ = feats([120], pad_value=0.0)
    with torch.no_grad():
        full, _ = enc(x, torch.tensor([120]), chunk_size=c, left_chunks=left)
        for n in (4 * 4 * c + 3, 4 * 4 * c + 3 + 9, 90):          # 4 chunks exactly; 4 and a bit; more
            part, part_len = enc(x[:, :n], torch.tensor([n]), chunk_size=c, left_chunks=left)
            done = part_len.item() // c * c                         # frames in complete chunks
            assert done >= 4 * c
            torch.testing.assert_close(part[:, :done], full[:, :done], atol=1e-5, rtol=0)


def test_noncausal_conv_breaks_streaming():
    """The same check fails without causal convolutions: the test above can tell them apart."""
    enc, c = make("conformer_noncausal"), 4
    x, _ = feats([120], pad_value=0.0)
    n = 4 * 4 * c + 3
    with torch.no_grad():
        full, _ = enc(x, torch.tensor([120]), chunk_size=c)
        part, _ = enc(x[:, :n], torch.tensor([n]), chunk_size=c)
    assert (part[:, : 4 * c] - full[:, : 4 * c]).abs().max() > 1e-3


@pytest.mark.parametrize("kind", ["conformer", "transformer"])
def test_full_context_and_chunked_differ(kind):
    enc = make(kind)
    x, lens = feats([80])
    with torch.no_grad():
        full, _ = enc(x, lens)
        chunked, _ = enc(x, lens, chunk_size=4)
        again, _ = enc(x, lens)
    torch.testing.assert_close(full, again, atol=0, rtol=0)    # eval mode is deterministic
    assert (full[:, :-4] - chunked[:, :-4]).abs().max() > 1e-3


def test_dynamic_chunk_training_draws_full_and_chunked(monkeypatch):
    enc = make("conformer", dynamic_chunk=True, max_chunk=6)
    x, lens = feats([100, 80])
    with torch.no_grad():
        full, _ = enc(x, lens)
        by_chunk = {c: enc(x, lens, chunk_size=c)[0] for c in range(1, 7)}
    draws = []
    original = enc.sample_chunk
    monkeypatch.setattr(enc, "sample_chunk", lambda t: draws.append(original(t)) or draws[-1])
    enc.train()
    torch.manual_seed(0)
    with torch.no_grad():
        for _ in range(30):
            out, _ = enc(x, lens)
            chunk, left = draws[-1]
            # the drawn chunk is what the forward pass used (dropout is 0, so train == eval maths)
            torch.testing.assert_close(out, by_chunk[chunk] if chunk else full, atol=1e-5, rtol=0)
        assert len(draws) == 30
        enc(x, lens, chunk_size=3)                     # an explicit chunk size is not redrawn
    assert len(draws) == 30
    chunks = [c for c, _ in draws]
    assert 0 in chunks and any(c > 0 for c in chunks)
    assert all(0 <= c <= 6 for c in chunks) and all(left == -1 for _, left in draws)
    enc.eval()
    with torch.no_grad():
        enc(x, lens)
    assert len(draws) == 30                            # no draws in eval mode


def test_sample_chunk_distribution():
    enc = make("transformer", dynamic_chunk=True, max_chunk=5, dynamic_left_chunks=True, max_left_chunks=3)
    torch.manual_seed(0)
    draws = [enc.sample_chunk(40) for _ in range(400)]
    full = sum(c == 0 for c, _ in draws)
    assert 120 < full < 280                                    # about half full context
    chunked = [(c, left) for c, left in draws if c]
    assert {c for c, _ in chunked} == {1, 2, 3, 4, 5}
    assert {left for _, left in chunked} == {0, 1, 2, 3}
    assert all(left == -1 for c, left in draws if c == 0)


def test_pyramidal_lstm_rejects_chunks():
    enc = make("pyramidal_lstm")
    x, lens = feats([20])
    with pytest.raises(ValueError, match="cannot decode in chunks"):
        enc(x, lens, chunk_size=4)
