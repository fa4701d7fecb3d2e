"""Captioning tests: tiny images, tiny models, one thread."""
from __future__ import annotations

from pathlib import Path

import pytest

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
SHAPES_CONF = RECIPES / "synthetic_shapes" / "conf" / "resnet_transformer.yaml"

# ``--set`` overrides for a captioning model that trains in seconds on 32-pixel images
TINY_IMAGE_MODEL = [
    "model.image_encoder_conf={trunk: resnet18, grid_layer: 3, d_model: 32, pos: learned, n_layers: 1, n_heads: 2, "
    "ffn_dim: 64, dropout: 0.0}",
    "model.decoder_conf={n_layers: 1, n_heads: 2, ffn_dim: 64, dropout: 0.0}",
    "data.image.size=32", "data.images_per_batch=4", "data.captions_per_image=2", "data.num_workers=0",
    "train.log_interval=1", "train.save_interval=2", "train.valid_utterances=4", "optim.warmup_steps=5",
    "decode.caption_max_len=12",
]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="session")
def shapes(tmp_path_factory) -> Path:
    """A tiny synthetic shapes corpus: 16 train, 4 val, 8 test images of 32 pixels."""
    from s2s_media.data.synthetic_shapes import generate_shapes
    out = tmp_path_factory.mktemp("shapes")
    generate_shapes(out, train_images=16, val_images=4, test_images=8, seed=1, size=32, workers=1)
    return out


@pytest.fixture
def caption_overrides(shapes, tmp_path) -> list[str]:
    return TINY_IMAGE_MODEL + [f"data.caption_train={shapes / 'train.jsonl'}",
                               f"data.caption_dev={shapes / 'val.jsonl'}", f"train.exp_dir={tmp_path / 'exp'}",
                               "train.epochs=2"]
