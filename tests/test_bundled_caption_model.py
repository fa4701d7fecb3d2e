"""The bundled default captioning model: it ships inside the package, is a plain small checkpoint with
its card, and captions synthetic scenes it never saw well enough that a broken export (random or
mismatched weights, wrong vocabulary, lost normalisation) would fail."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import s2s_media
from s2s_media.inference.checkpoint import load_model_file
from s2s_media.models.seq2seq import param_count
from s2s_media.caption_metrics import score_captions
from s2s_media.data.synthetic_shapes import generate_shapes

ASSETS = Path(s2s_media.__file__).parent / "assets"
BUNDLED = ASSETS / "caption_default.pt"
CARD = ASSETS / "caption_default.md"


def test_bundled_caption_model_is_a_small_plain_checkpoint_with_a_card():
    assert BUNDLED.is_file(), f"{BUNDLED} is missing: the package must ship its default captioning model"
    assert BUNDLED.stat().st_size < 12 * 2**20, f"{BUNDLED} is {BUNDLED.stat().st_size / 2**20:.1f} MiB"
    ckpt = torch.load(BUNDLED, map_location="cpu", weights_only=True)
    assert {"model", "config", "tokenizer", "version"} <= set(ckpt)
    card = CARD.read_text(encoding="utf-8")
    for must in ("trained on", "test split", "real photographs"):
        assert must in card.lower(), f"the model card must say {must!r}"


def _number(pattern: str, text: str) -> float:
    m = re.search(pattern, text)
    assert m, f"the model card no longer says {pattern!r}"
    return float(m.group(1))


def test_the_card_describes_the_file_it_ships_with():
    """What the card states (parameters, input size, grid, vocabulary, size, beam) is what the file holds."""
    card = CARD.read_text(encoding="utf-8")
    loaded = load_model_file(BUNDLED, quantize=False)
    image = loaded.model.encoders["image"]
    assert _number(r"([\d.]+) M-parameter", card) == pytest.approx(param_count(loaded.model) / 1e6, abs=0.005)
    size = int(_number(r"turns a (\d+) x \d+ image", card))
    assert size == loaded.config.data.image.size
    assert image.grid_size(size, size) == (int(_number(r"into a (\d+) x \d+ grid", card)),) * 2
    assert _number(r"vocabulary of (\d+) ids", card) == loaded.tokenizer.vocab_size
    assert _number(r"\(([\d.]+) MB\)", card) == pytest.approx(BUNDLED.stat().st_size / 1e6, abs=0.05)
    assert _number(r"beam search, beam (\d+)", card) == loaded.config.decode.beam


def test_load_model_caption_describes_unseen_scenes(tmp_path, one_thread):
    # seed 7: scenes the recipe (seed 0) never generated
    manifests = generate_shapes(tmp_path, train_images=1, val_images=0, test_images=24, seed=7, workers=1)
    rows = [json.loads(line) for line in manifests["test"].read_text().splitlines()]
    model = s2s_media.load_model(task="caption", device="cpu")
    hyps = {r["id"]: model.caption(tmp_path / r["image"])["caption"] for r in rows}   # image: relative path
    scores = score_captions(hyps, {r["id"]: r["captions"] for r in rows}, use_meteor=False)
    # an untrained or mis-exported model scores near 0; the bundled one is far above (see its card)
    assert scores["BLEU-4"] > 0.3 and scores["CIDEr-D"] > 1.0, (scores, list(hyps.values())[:5])
