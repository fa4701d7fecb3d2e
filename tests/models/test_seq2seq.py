"""The seq2seq model: decoder input/output layout, hybrid CTC/attention loss, gradients, overfitting, CMVN."""
import math

import pytest
import torch
import torch.nn.functional as F

from s2s_media.config import ModelConfig
from s2s_media.models.seq2seq import GlobalCMVN, Seq2SeqModel, ctc_loss, decoder_io
from s2s_media.text.tokenizer import EOS, IGNORE_ID, SOS

V, N_MELS = 12, 16
ASR = 4  # a task token id
ENCODERS = {
    "conformer": dict(d_model=32, n_heads=4, n_layers=2, ffn_dim=64, kernel_size=5, subsampling_channels=8,
                      dropout=0.0, dynamic_chunk=False),
    "pyramidal_lstm": dict(hidden=16, n_layers=2, pyramid_layers=2, d_model=32, dropout=0.0),
}
DECODERS = {
    "transformer": dict(n_layers=2, n_heads=4, ffn_dim=64, dropout=0.0),
    "lstm": dict(hidden=32, n_layers=1, embed_dim=16, attention_dim=16, dropout=0.0),
}


def make(encoder="conformer", decoder="transformer", ctc_weight=0.3, lsm_weight=0.1, layers=None):
    """A tiny model; ``layers`` overrides the encoder and decoder depth."""
    torch.manual_seed(0)
    depth = {} if layers is None else {"n_layers": layers}
    cfg = ModelConfig(encoder=encoder, encoder_conf={**ENCODERS[encoder], **depth}, decoder=decoder,
                      decoder_conf={**DECODERS[decoder], **depth}, ctc_weight=ctc_weight, lsm_weight=lsm_weight,
                      n_mels=N_MELS)
    return Seq2SeqModel(cfg, V)


def batch():
    g = torch.Generator().manual_seed(3)
    lengths = torch.tensor([44, 36])
    feats = torch.randn(2, 44, N_MELS, generator=g)
    feats[1, 36:] = 0.0
    return feats, lengths, [[5, 6, 7, 8], [9, 10]]


# --------------------------------------------------------------------------- decoder_io
def test_decoder_io_with_sos_prefix():
    ys_in, ys_out = decoder_io([[5, 6, 7], [8], []], [SOS], "cpu")
    assert ys_in.tolist() == [[SOS, 5, 6, 7], [SOS, 8, EOS, EOS], [SOS, EOS, EOS, EOS]]
    assert ys_out.tolist() == [[5, 6, 7, EOS], [8, EOS, IGNORE_ID, IGNORE_ID], [EOS, IGNORE_ID, IGNORE_ID, IGNORE_ID]]
    assert ys_in.dtype == ys_out.dtype == torch.long


def test_decoder_io_with_task_prefix():
    ys_in, ys_out = decoder_io([[5, 6, 7], [8]], [SOS, ASR], "cpu")
    # the task token is fed, never predicted: the output under <sos> is ignored
    assert ys_in.tolist() == [[SOS, ASR, 5, 6, 7], [SOS, ASR, 8, EOS, EOS]]
    assert ys_out.tolist() == [[IGNORE_ID, 5, 6, 7, EOS], [IGNORE_ID, 8, EOS, IGNORE_ID, IGNORE_ID]]


# --------------------------------------------------------------------------- loss and gradients
@pytest.mark.parametrize("encoder, decoder", [("conformer", "transformer"), ("pyramidal_lstm", "lstm")])
@pytest.mark.parametrize("prefix", [[SOS], [SOS, ASR]])
def test_forward_losses_and_gradients(encoder, decoder, prefix):
    model = make(encoder, decoder).train()
    feats, lengths, targets = batch()
    out = model(feats, lengths, targets, prefix)
    assert set(out) == {"loss", "loss_att", "loss_ctc", "acc"}
    for name, value in out.items():
        assert value.dim() == 0 and torch.isfinite(value), name
    assert out["loss_att"] > 0 and out["loss_ctc"] > 0
    assert 0.0 <= out["acc"].item() <= 1.0
    torch.testing.assert_close(out["loss"], 0.3 * out["loss_ctc"] + 0.7 * out["loss_att"])
    out["loss"].backward()

    def grad_norm(module):
        return sum(p.grad.abs().sum().item() for p in module.parameters() if p.grad is not None)

    assert grad_norm(model.encoders["audio"]) > 0
    assert grad_norm(model.decoder) > 0
    assert grad_norm(model.ctc) > 0
    # every parameter takes part in the loss (DDP runs with find_unused_parameters=False)
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_no_ctc_head_without_ctc_weight():
    model = make(ctc_weight=0.0)
    assert model.ctc is None
    assert not any(name.startswith("ctc.") for name in model.state_dict())
    feats, lengths, targets = batch()
    out = model(feats, lengths, targets, [SOS])
    assert "loss_ctc" not in out
    assert torch.equal(out["loss"], out["loss_att"])


def test_attention_loss_without_smoothing_is_cross_entropy():
    model = make(lsm_weight=0.0).eval()
    feats, lengths, targets = batch()
    with torch.no_grad():
        out = model(feats, lengths, targets, [SOS, ASR])
        memory, mask = model.encode(feats, lengths)
        ys_in, ys_out = decoder_io(targets, [SOS, ASR], "cpu")
        logits = model.decoder(ys_in, memory, mask)
    valid = ys_out != IGNORE_ID
    expected = F.cross_entropy(logits[valid], ys_out[valid])
    torch.testing.assert_close(out["loss_att"], expected)
    acc = (logits.argmax(-1)[valid] == ys_out[valid]).float().mean()
    torch.testing.assert_close(out["acc"], acc)


def test_ctc_loss_is_per_token():
    g = torch.Generator().manual_seed(0)
    log_probs = torch.randn(2, 9, V, generator=g).log_softmax(-1)
    lengths = torch.tensor([9, 6])
    targets = [[5, 6, 6], [7]]
    per_utt = [F.ctc_loss(log_probs[i, : lengths[i]].unsqueeze(1), torch.tensor([t]), lengths[i:i + 1],
                          torch.tensor([len(t)]), blank=0, reduction="sum") for i, t in enumerate(targets)]
    torch.testing.assert_close(ctc_loss(log_probs, lengths, targets), sum(per_utt) / 4)


def test_overfits_a_tiny_batch():
    model = make(layers=1).train()
    feats, lengths, targets = batch()
    losses = []
    for _ in range(30):
        out = model(feats, lengths, targets, [SOS])
        model.zero_grad()
        out["loss"].backward()
        with torch.no_grad():          # plain SGD: torch.optim's first step imports torch._dynamo (~2 s)
            for p in model.parameters():
                p -= 0.2 * p.grad
        losses.append(out["loss"].item())
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.5 * losses[0], losses
    assert out["acc"].item() == 1.0


# --------------------------------------------------------------------------- CMVN
def test_global_cmvn_normalises():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 50, N_MELS, generator=g) * torch.linspace(0.1, 5.0, N_MELS) + torch.linspace(-8, 3, N_MELS)
    cmvn = GlobalCMVN(N_MELS)
    torch.testing.assert_close(cmvn(x), x)                              # identity before stats are set
    flat = x.reshape(-1, N_MELS)
    cmvn.set_stats(flat.mean(0), flat.std(0, unbiased=False))
    y = cmvn(x).reshape(-1, N_MELS)
    torch.testing.assert_close(y.mean(0), torch.zeros(N_MELS), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(0, unbiased=False), torch.ones(N_MELS), atol=1e-4, rtol=0)
    assert set(cmvn.state_dict()) == {"mean", "istd"}                   # the stats travel with the weights


def test_model_applies_cmvn():
    model = make().eval()
    feats, lengths, _ = batch()
    with torch.no_grad():
        before, _ = model.encode(feats, lengths)
        model.encoders["audio"].cmvn.set_stats(torch.full((N_MELS,), 2.0), torch.full((N_MELS,), 4.0))
        after, mask = model.encode(feats * 4.0 + 2.0, lengths)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)
    assert mask.sum(1).tolist() == [10, 8]
