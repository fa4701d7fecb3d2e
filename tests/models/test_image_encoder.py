"""The image front-end: grid shapes, positions, freezing, local weights, and the model contract."""
from __future__ import annotations

import pytest
import torch
import torchvision

from s2s_media.config import ModelConfig
from s2s_media.errors import ConfigError, UserError
from s2s_media.models.image_encoder import ImageEncoder, ResNetEncoderConfig, sinusoid_2d
from s2s_media.models.seq2seq import Seq2SeqModel

TINY = dict(trunk="resnet18", grid_layer=3, d_model=32, n_heads=2, ffn_dim=64, dropout=0.0)


def encoder(**kw) -> ImageEncoder:
    torch.manual_seed(0)
    return ImageEncoder(ResNetEncoderConfig(**{**TINY, **kw})).eval()


@pytest.mark.parametrize("grid_layer", [3, 4])
@pytest.mark.parametrize("hw", [(32, 32), (45, 70), (64, 48)])
def test_grid_size_matches_the_memory(grid_layer, hw):
    enc = encoder(grid_layer=grid_layer, n_layers=1)
    memory, mask = enc(torch.randn(2, 3, *hw))
    h, w = enc.grid_size(*hw)
    assert memory.shape == (2, h * w, 32) and mask.shape == (2, h * w) and mask.dtype == torch.bool and mask.all()


def test_positions_tell_cells_apart():
    pe = sinusoid_2d(3, 4, 16)
    assert pe.shape == (12, 16) and len({tuple(r.tolist()) for r in pe}) == 12
    torch.testing.assert_close(pe[0, :8], pe[1, :8])          # same row, same row half
    torch.testing.assert_close(pe[0, 8:], pe[4, 8:])          # same column, same column half
    enc = encoder(pos="learned", max_grid=2)
    with pytest.raises(UserError, match="max_grid=2"):
        enc(torch.randn(1, 3, 64, 64))                        # a 4x4 grid


def test_frozen_trunk_keeps_batchnorm_statistics():
    enc = encoder(finetune_blocks=0)
    assert not any(p.requires_grad for p in enc.trunk.parameters())
    assert all(p.requires_grad for p in enc.proj.parameters())
    enc.train()
    assert not enc.trunk.bn1.training and not enc.trunk.layer3[0].bn1.training
    before = enc.trunk.bn1.running_mean.clone()
    enc(torch.randn(2, 3, 32, 32))
    torch.testing.assert_close(enc.trunk.bn1.running_mean, before)


def test_finetune_last_blocks_only():
    enc = encoder(grid_layer=4, finetune_blocks=1).train()
    trainable = {n.split(".")[1] for n, p in enc.trunk.named_parameters(prefix="trunk") if p.requires_grad}
    assert trainable == {"layer4"}
    assert enc.trunk.layer4.training and not enc.trunk.layer3.training
    assert all(p.requires_grad for p in encoder(finetune_blocks=-1).trunk.parameters())
    with pytest.raises(ValueError):
        ResNetEncoderConfig(grid_layer=3, finetune_blocks=4)


def test_local_torchvision_weights_load(tmp_path):
    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    enc = encoder(grid_layer=4)
    enc.load_trunk_weights(path)
    torch.testing.assert_close(enc.trunk.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, tmp_path / "ddp.pth")
    encoder(grid_layer=3).load_trunk_weights(tmp_path / "ddp.pth")          # wrapped and prefixed is fine too
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "r34.pth")
    with pytest.raises(UserError, match="resnet18"):
        encoder().load_trunk_weights(tmp_path / "r34.pth")
    with pytest.raises(UserError, match="not found"):
        encoder().load_trunk_weights(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(UserError, match="not a readable"):
        encoder().load_trunk_weights(tmp_path / "junk.pth")


@pytest.mark.parametrize("trunk", ["resnet34", "resnet50"])
def test_other_trunks(trunk):
    enc = encoder(trunk=trunk, grid_layer=3)
    assert enc(torch.randn(1, 3, 32, 32))[0].shape == (1, 4, 32)


def test_model_contract_and_config_errors():
    cfg = ModelConfig(modalities=["image"], image_encoder_conf=TINY, decoder_conf=dict(n_layers=1, n_heads=2, ffn_dim=64))
    model = Seq2SeqModel(cfg, 20).eval()
    assert set(model.encoders) == {"image"} and model.ctc is None
    memory, mask = model.encode(torch.randn(2, 3, 40, 56), None, modality="image")
    h, w = model.encoders["image"].grid_size(40, 56)
    assert memory.shape == (2, h * w, 32) and mask.all()
    with pytest.raises(UserError, match="no audio encoder"):
        model.encode(torch.randn(1, 10, 80), torch.tensor([10]))
    from s2s_media.config import load_config
    with pytest.raises(ConfigError, match="differs from the audio encoder"):
        load_config(None, ["model.modalities=[audio, image]", "model.image_encoder_conf.d_model=64"])
    with pytest.raises(ConfigError, match="model.modalities"):
        load_config(None, ["model.modalities=[video]"])
    with pytest.raises(ConfigError, match="image_encoder_conf.trunk"):
        load_config(None, ["model.modalities=[image]", "model.image_encoder_conf.trunk=vgg"])
