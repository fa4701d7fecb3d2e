"""The shared decoder over image memory: losses, attention penalty, scheduled sampling, SCST loss,
beam search with attention maps, sampling, multimodal models and checkpoint round trips."""
from __future__ import annotations

import pytest
import torch

from s2s_media.config import Config, ModelConfig, to_dict
from s2s_media.decoding.beam_search import beam_search, greedy_search
from s2s_media.decoding.sampling import sample
from s2s_media.inference.checkpoint import model_from_checkpoint
from s2s_media.models.seq2seq import SelfCritical, Seq2SeqModel, doubly_stochastic_penalty, scheduled_sampling_inputs
from s2s_media.text.tokenizer import EOS, SOS, WordTokenizer
from s2s_media.training.checkpoint import load_checkpoint, save_checkpoint

V, CAPTION = 14, 4
IMAGE = dict(trunk="resnet18", grid_layer=3, d_model=32, n_heads=2, ffn_dim=64, dropout=0.0, n_layers=1)
DECODERS = {"transformer": dict(n_layers=1, n_heads=2, ffn_dim=64, dropout=0.0),
            "lstm": dict(hidden=32, embed_dim=16, attention_dim=16, dropout=0.0)}
AUDIO = dict(d_model=32, n_heads=2, n_layers=1, ffn_dim=64, kernel_size=5, subsampling_channels=8, dropout=0.0,
             dynamic_chunk=False)


def make(decoder="transformer", modalities=("image",), **kw) -> Seq2SeqModel:
    torch.manual_seed(0)
    cfg = ModelConfig(modalities=list(modalities), image_encoder_conf=IMAGE, decoder=decoder,
                      decoder_conf=DECODERS[decoder], encoder_conf=AUDIO, n_mels=16, **kw)
    return Seq2SeqModel(cfg, V)


def pixels(n=2, side=32):
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("decoder", ["transformer", "lstm"])
def test_caption_loss_trains_every_used_parameter(decoder):
    model = make(decoder, attention_penalty=1.0).train()
    out = model(pixels(), None, [[5, 6, 7], [8], [9, 10]], [SOS, CAPTION], modality="image",
                repeat=torch.tensor([2, 1]))
    assert {"loss", "loss_att", "acc", "loss_attn_penalty"} <= set(out) and "loss_ctc" not in out
    torch.testing.assert_close(out["loss"], out["loss_att"] + out["loss_attn_penalty"])
    out["loss"].backward()
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []


def test_doubly_stochastic_penalty_is_zero_for_full_coverage():
    # 2 steps over 2 pixels: each pixel attended exactly once in total -> no penalty
    attn = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]])
    valid = torch.tensor([[True, True, False]])
    assert doubly_stochastic_penalty(attn, valid, torch.ones(1, 2, dtype=torch.bool)) == 0
    # all attention on one pixel: (1 - 2)^2 + (1 - 0)^2 = 2, over 2 tokens
    attn = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    valid = torch.ones(1, 2, dtype=torch.bool)
    assert doubly_stochastic_penalty(attn, valid, torch.ones(1, 2, dtype=torch.bool)) == pytest.approx(1.0)
    model = make("lstm", attention_penalty=0.0)
    assert "loss_attn_penalty" not in model(pixels(1), None, [[5]], [SOS, CAPTION], modality="image")


def test_scheduled_sampling_keeps_the_prefix_and_mixes_tokens():
    model = make().eval()
    memory, mask = model.encode(pixels(), modality="image")
    ys_in = torch.tensor([[SOS, CAPTION, 5, 6, 7, 8], [SOS, CAPTION, 9, 9, 9, 9]])
    torch.manual_seed(0)
    never = scheduled_sampling_inputs(model.decoder, ys_in, memory, mask, 2, 0.0)
    assert torch.equal(never, ys_in)
    always = scheduled_sampling_inputs(model.decoder, ys_in, memory, mask, 2, 1.0)
    assert torch.equal(always[:, :2], ys_in[:, :2])
    logits = model.decoder(ys_in, memory, mask)
    assert not torch.equal(always, ys_in) and ((always[:, 2:] >= 0) & (always[:, 2:] < V)).all()
    assert logits.shape[:2] == ys_in.shape
    model.train()
    out = model(pixels(), None, [[5, 6], [7]], [SOS, CAPTION], modality="image", ss_prob=0.5)
    out["loss"].backward()


def test_policy_gradient_follows_the_advantage():
    model = make()
    targets = [[5, 6], [7, 8]]
    base = model(pixels(), None, targets, [SOS, CAPTION], modality="image", advantages=torch.tensor([1.0, 1.0]))
    flipped = model(pixels(), None, targets, [SOS, CAPTION], modality="image", advantages=torch.tensor([-1.0, -1.0]))
    torch.testing.assert_close(base["loss_att"], -flipped["loss_att"])
    zero = model(pixels(), None, targets, [SOS, CAPTION], modality="image", advantages=torch.zeros(2))
    assert zero["loss_att"] == 0


def test_self_critical_forward_samples_rewards_and_backpropagates():
    model = make().train()
    seen = {}

    def reward(sampled, greedy):
        seen["sampled"], seen["greedy"] = sampled, greedy
        r = torch.tensor([float(len(s)) for s in sampled])
        return r, torch.full_like(r, 2.0)

    def rollouts(decoder, memory, mask, prefix):     # what the training task does (CaptionTask.rollouts)
        greedy = [h.tokens for h in greedy_search(decoder, memory, mask, prefix, max_len=6)]
        rows = torch.arange(memory.size(0)).repeat_interleave(3)
        return sample(decoder, memory[rows], mask[rows], prefix, 6, 1.0), greedy

    out = model(pixels(), None, None, [SOS, CAPTION], modality="image",
                self_critical=SelfCritical(samples=3, max_len=6, temperature=1.0, reward=reward, rollouts=rollouts))
    assert len(seen["sampled"]) == 6 and len(seen["greedy"]) == 2
    assert all(len(s) <= 6 for s in seen["sampled"])
    assert {"reward", "reward_baseline"} <= set(out) and out["reward_baseline"] == 2.0
    out["loss"].backward()
    assert model.decoder.output.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("decoder", ["transformer", "lstm"])
def test_beam_search_over_image_memory_returns_attention_maps(decoder):
    model = make(decoder).eval()
    memory, mask = model.encode(pixels(3, 40), modality="image")
    h, w = model.encoders["image"].grid_size(40, 40)
    hyps = beam_search(model.decoder, memory, mask, [SOS, CAPTION], beam=3, max_len=5, return_attention=True)
    assert len(hyps) == 3
    for nbest in hyps:
        for hyp in nbest:
            assert hyp.attention.shape == (len(hyp.tokens), h * w)
            torch.testing.assert_close(hyp.attention.sum(1), torch.ones(len(hyp.tokens)))
    greedy = greedy_search(model.decoder, memory, mask, [SOS, CAPTION], max_len=5)
    assert all(len(g.tokens) <= 5 for g in greedy)


def test_sampling_is_seeded_and_bounded():
    model = make().eval()
    memory, mask = model.encode(pixels(), modality="image")
    torch.manual_seed(3)
    a = sample(model.decoder, memory, mask, [SOS, CAPTION], max_len=7)
    torch.manual_seed(3)
    b = sample(model.decoder, memory, mask, [SOS, CAPTION], max_len=7)
    assert a == b and len(a) == 2 and all(len(x) <= 7 and EOS not in x for x in a)


def test_multimodal_model_has_both_encoders_and_audio_only_ctc():
    model = make(modalities=("audio", "image"), ctc_weight=0.3).train()
    assert set(model.encoders) == {"audio", "image"} and model.ctc is not None
    feats = torch.randn(2, 40, 16)
    audio = model(feats, torch.tensor([40, 30]), [[5, 6], [7]], [SOS, 4], modality="audio")
    image = model(pixels(), None, [[5, 6], [7]], [SOS, 5], modality="image")
    assert "loss_ctc" in audio and "loss_ctc" not in image
    (audio["loss"] + image["loss"]).backward()
    assert model.encoders["audio"].body.blocks[0].ff.net[0].weight.grad is not None
    assert model.encoders["image"].proj.weight.grad is not None


@pytest.mark.parametrize("modalities", [("image",), ("audio", "image")])
def test_checkpoints_rebuild_image_models_with_weights_only(tmp_path, modalities):
    tok = WordTokenizer.train(["a red circle", "a blue square"], tasks=["asr", "caption"][-len(modalities):])
    cfg = Config(model=ModelConfig(modalities=list(modalities), image_encoder_conf={**IMAGE, "weights": "/nowhere.pth"},
                                   decoder_conf=DECODERS["transformer"], encoder_conf=AUDIO, n_mels=16))
    model = Seq2SeqModel(cfg.model, tok.vocab_size).eval()
    path = save_checkpoint({"model": model.state_dict(), "config": to_dict(cfg), "tokenizer": tok.to_dict(),
                            "cmvn": None}, tmp_path / "m.pt")
    loaded = model_from_checkpoint(load_checkpoint(path))      # the trunk weights file is not needed again
    x = pixels(1)
    torch.testing.assert_close(loaded.model.encode(x, modality="image")[0], model.encode(x, modality="image")[0])
    assert loaded.tokenizer.prefix("caption")[-1] == loaded.tokenizer.task_id("caption")
