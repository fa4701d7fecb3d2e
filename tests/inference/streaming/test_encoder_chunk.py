"""AttentionEncoder.forward_chunk: chunk by chunk equals forward() with the chunk mask."""
import pytest
import torch

from s2s_media.errors import UserError
from s2s_media.models.attention_encoder import EncoderCache
from s2s_media.models.registry import ENCODERS, component_config

N_MELS = 16
ATTN = dict(d_model=32, n_heads=4, n_layers=2, ffn_dim=64, subsampling_channels=8, dropout=0.0)
CONFS = {"conformer": dict(ATTN, kernel_size=5, causal=True), "transformer": dict(ATTN)}


def make(kind: str, **over):
    torch.manual_seed(0)
    return ENCODERS[kind](N_MELS, component_config(ENCODERS, kind, {**CONFS[kind], **over}, "model.encoder")).eval()


def feats(lengths, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), max(lengths), N_MELS, generator=g)
    for i, n in enumerate(lengths):
        x[i, n:] = 0.0
    return x, torch.tensor(lengths)


def run_chunks(enc, x, lengths, chunk, cap=-1, restack=True):
    """Feed each stream's features chunk by chunk (one batched call per chunk); per stream outputs."""
    b = x.size(0)
    cache = enc.init_cache(b)
    outs = [[] for _ in range(b)]
    sizes = []
    while True:
        starts = [4 * int(o) for o in cache.offset]
        n = [max(0, min(4 * chunk + 3, int(lengths[i]) - starts[i])) for i in range(b)]
        if max(n) < 7:
            return [torch.cat(o) for o in outs], sizes
        window = torch.zeros(b, max(n), x.size(2))
        for i in range(b):
            window[i, :n[i]] = x[i, starts[i]:starts[i] + n[i]]
        out, out_len, cache = enc.forward_chunk(window, torch.tensor(n), cache, cap)
        if restack:  # what the recognizer does between chunks
            cache = EncoderCache.stack(cache.unstack())
        sizes.append(cache.frames)
        for i in range(b):
            outs[i].append(out[i, :out_len[i]])


@pytest.mark.parametrize("kind", ["conformer", "transformer"])
@pytest.mark.parametrize("chunk, left", [(1, -1), (4, -1), (16, -1), (3, 2), (4, 0)])
def test_chunk_by_chunk_equals_forward_with_chunk_mask(kind, chunk, left):
    assert_streams_like_forward(make(kind), [203, 131], chunk, left)   # different lengths, partial last chunks


def assert_streams_like_forward(enc, lengths, chunk, left):
    """Chunk-by-chunk outputs (left context capped at ``left`` chunks) equal ``forward`` under the chunk mask."""
    x, lengths = feats(lengths)
    with torch.no_grad():
        full, full_len = enc(x, lengths, chunk_size=chunk, left_chunks=left)
        outs, _ = run_chunks(enc, x, lengths, chunk, cap=chunk * left if left >= 0 else -1)
    for i in range(len(outs)):
        assert outs[i].size(0) == full_len[i]
        torch.testing.assert_close(outs[i], full[i, :full_len[i]], atol=1e-4, rtol=0)


def test_streams_at_different_positions_batch_like_alone():
    """Stacking caches of different lengths and offsets (left padding, per-stream positions)."""
    enc, chunk = make("conformer"), 4
    x, lengths = feats([150, 150, 150], seed=2)
    with torch.no_grad():
        alone = [enc(x[i:i + 1], lengths[i:i + 1], chunk_size=chunk)[0][0] for i in range(3)]
        caches = [enc.init_cache(1) for _ in range(3)]
        got = [[] for _ in range(3)]
        # stream 0 starts at once, stream 1 after 2 chunks, stream 2 after 5; then all step together
        for step in range(9):
            active = [i for i, start in enumerate([0, 2, 5]) if step >= start]
            window = torch.stack([x[i, 4 * int(caches[i].offset):4 * int(caches[i].offset) + 4 * chunk + 3]
                                  for i in active])
            out, _, cache = enc.forward_chunk(window, torch.full((len(active),), 4 * chunk + 3),
                                              EncoderCache.stack([caches[i] for i in active]))
            for j, (i, c) in enumerate(zip(active, cache.unstack())):
                caches[i] = c
                got[i].append(out[j])
    for i, n_chunks in enumerate([9, 7, 4]):
        torch.testing.assert_close(torch.cat(got[i]), alone[i][:n_chunks * chunk], atol=1e-4, rtol=0)


def test_cache_is_capped_and_sized_per_stream():
    enc, chunk = make("conformer"), 4
    x, lengths = feats([400, 90])
    with torch.no_grad():
        _, sizes = run_chunks(enc, x, lengths, chunk, cap=3 * chunk)
        cache = enc.init_cache(2)
        _, _, cache = enc.forward_chunk(x[:, :4 * chunk + 3], torch.tensor([4 * chunk + 3, 4 * chunk + 3]), cache, 2)
    assert max(sizes) == 3 * chunk
    assert [c.frames for c in cache.unstack()] == [2, 2]
    assert cache.conv[0].shape == (2, 32, 4)                        # kernel_size - 1 frames of conv state


def test_noncausal_conformer_cannot_stream():
    enc = make("conformer", causal=False)
    x, lengths = feats([40])
    with pytest.raises(UserError, match="causal"):
        enc.forward_chunk(x, lengths, enc.init_cache(1))


HALF = dict(n_layers=4, half_rate_blocks=[1, 3])       # block 0 full rate, 1-2 half rate, 3 full rate


@pytest.mark.parametrize("kind", ["conformer", "transformer"])
@pytest.mark.parametrize("over", [dict(subsampling="dwconv2d"), dict(subsampling="conv1d"), HALF,
                                  dict(HALF, half_rate_blocks=[0, 4]), dict(HALF, subsampling="conv1d")])
@pytest.mark.parametrize("chunk, left", [(2, -1), (8, -1), (4, 2), (6, 0)])
def test_new_fronts_stream_like_forward_with_chunk_mask(kind, over, chunk, left):
    """The other fronts and the half-rate blocks keep chunked streaming exact."""
    assert_streams_like_forward(make(kind, **over), [203, 131, 57], chunk, left)   # odd and even frame counts


def test_half_rate_blocks_see_half_the_frames_and_keep_the_output_rate():
    enc = make("conformer", **HALF)
    seen = []
    for i in (1, 2):
        enc.blocks[i].register_forward_hook(lambda m, args, out: seen.append(args[0].size(1)))
    x, lengths = feats([207])
    with torch.no_grad():
        out, out_len = enc(x, lengths)
    assert out.size(1) == int(out_len[0]) == 51                     # x4 as without half-rate blocks
    assert seen == [26, 26]                                          # ceil(51 / 2)
    cache = enc.init_cache(1)
    assert len(cache.keys) == 2 and len(cache.inner.keys) == 2


def test_half_rate_blocks_refuse_odd_chunks_and_bad_ranges():
    enc = make("conformer", **HALF)
    x, lengths = feats([80])
    with pytest.raises(UserError, match="even number of frames"):
        enc(x, lengths, chunk_size=3)
    with pytest.raises(UserError, match="half_rate_blocks"):
        make("conformer", n_layers=4, half_rate_blocks=[2, 6])
    with pytest.raises(UserError, match="subsampling"):
        make("conformer", subsampling="conv3d")
    enc.train()
    assert all(enc.sample_chunk(200)[0] % 2 == 0 for _ in range(200))  # training draws even chunks only
