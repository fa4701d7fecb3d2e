"""Captioning fixtures: tiny random-weight checkpoints (image-only and speech-only) and images made with PIL.

The image model is the real architecture (ResNet-18 trunk to layer3, a 1-layer Transformer
decoder) at 64x64 input, so a 4x4 grid; its weights are random but seeded, so its captions are
arbitrary yet deterministic, which is what the pipeline tests need.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fixtures_make import TINY_MODEL

CAPTIONS = ["a red square on a white background", "a blue circle next to a green square",
            "two dogs play in the snow", "a man riding a horse on the beach", "a cat sitting on a table"]
IMAGE_SIZE = 64
MAX_PIXELS = 250_000     # images above this are decoded downscaled (JPEG) or refused (other formats)


def _save(obj: dict, path: Path) -> Path:
    from s2s_media.training.checkpoint import save_checkpoint
    return save_checkpoint(obj, path)


@pytest.fixture(scope="session")
def caption_ckpt(tmp_path_factory) -> Path:
    """An image-only captioning checkpoint with a word tokenizer (task ``caption``)."""
    from s2s_media.config import load_config, tasks_of, to_dict
    from s2s_media.models.seq2seq import Seq2SeqModel
    from s2s_media.text.tokenizer import WordTokenizer
    cfg = load_config(None, [
        "model.modalities=[image]", "model.image_encoder_conf.trunk=resnet18", "model.image_encoder_conf.grid_layer=3",
        "model.image_encoder_conf.d_model=32", "model.image_encoder_conf.n_layers=0",
        "model.decoder_conf.n_layers=1", "model.decoder_conf.n_heads=2", "model.decoder_conf.ffn_dim=64",
        "model.ctc_weight=0", "tokenizer.kind=word", f"data.image.size={IMAGE_SIZE}",
        f"data.image.max_pixels={MAX_PIXELS}", "decode.beam=2", "decode.caption_max_len=6"])
    tok = WordTokenizer.train(CAPTIONS, tasks=tasks_of(cfg.model))
    torch.manual_seed(0)
    model = Seq2SeqModel(cfg.model, tok.vocab_size).eval()
    path = tmp_path_factory.mktemp("caption_model") / "caption.pt"
    return _save({"model": model.state_dict(), "config": to_dict(cfg), "tokenizer": tok.to_dict(), "meta": {}}, path)


@pytest.fixture(scope="session")
def speech_ckpt(tmp_path_factory) -> Path:
    """A speech-only checkpoint (tiny Conformer, random weights)."""
    from s2s_media.config import load_config, tasks_of, to_dict
    from s2s_media.models.seq2seq import Seq2SeqModel
    from s2s_media.text.tokenizer import CharTokenizer
    cfg = load_config(None, TINY_MODEL)
    tok = CharTokenizer.train(["hello world"], tasks=tasks_of(cfg.model))
    torch.manual_seed(0)
    model = Seq2SeqModel(cfg.model, tok.vocab_size).eval()
    path = tmp_path_factory.mktemp("speech_model") / "speech.pt"
    return _save({"model": model.state_dict(), "config": to_dict(cfg), "tokenizer": tok.to_dict(), "meta": {}}, path)


def _pattern(w: int, h: int, seed: int) -> np.ndarray:
    """A (h, w, 3) uint8 picture: a coloured rectangle on a gradient."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), np.full_like(x, 128)], -1).astype(np.uint8)
    x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
    img[y0:y0 + h // 3, x0:x0 + w // 3] = rng.integers(0, 256, 3)
    return img


def write_good_images(folder: Path) -> dict[str, Path]:
    """Valid images of every awkward kind; all must caption. Returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    rgb = Image.fromarray(_pattern(96, 80, 0))
    out["rgb_jpeg"] = folder / "rgb_jpeg.jpg"
    rgb.save(out["rgb_jpeg"], quality=90)
    out["rgb_png"] = folder / "rgb_png.png"
    Image.fromarray(_pattern(70, 90, 1)).save(out["rgb_png"])
    out["gray"] = folder / "gray.png"
    Image.fromarray(_pattern(64, 64, 2)[..., 0]).save(out["gray"])
    out["cmyk"] = folder / "cmyk.jpg"
    Image.fromarray(_pattern(80, 64, 3)).convert("CMYK").save(out["cmyk"])
    out["alpha"] = folder / "alpha.png"
    rgba = np.dstack([_pattern(64, 72, 4), np.linspace(0, 255, 64 * 72).reshape(72, 64).astype(np.uint8)])
    Image.fromarray(rgba, "RGBA").save(out["alpha"])
    out["png16"] = folder / "png16.png"
    Image.fromarray((np.arange(80 * 64).reshape(64, 80) * 12).astype(np.uint16)).save(out["png16"])
    out["animated"] = folder / "animated.gif"
    frames = [Image.fromarray(_pattern(64, 64, 10 + k)).convert("P") for k in range(3)]
    frames[0].save(out["animated"], save_all=True, append_images=frames[1:], duration=100, loop=0)
    out["palette"] = folder / "palette.bmp"
    Image.fromarray(_pattern(66, 66, 5)).convert("P").save(out["palette"])
    out["large_jpeg"] = folder / "large_jpeg.jpg"   # over MAX_PIXELS: decoded downscaled (JPEG draft)
    Image.fromarray(_pattern(1200, 900, 6)).save(out["large_jpeg"], quality=80)
    return out


def write_bad_images(folder: Path) -> dict[str, Path]:
    """Files that must each give an error record. Returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    buf = io.BytesIO()
    Image.fromarray(_pattern(128, 128, 7)).save(buf, "JPEG", quality=95)
    out["truncated"] = folder / "truncated.jpg"
    out["truncated"].write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    out["corrupt"] = folder / "corrupt.png"
    out["corrupt"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(np.random.default_rng(8).integers(0, 256, 500,
                                                                                             dtype=np.uint8)))
    out["not_an_image"] = folder / "notes.jpg"
    out["not_an_image"].write_text("this is a text file with an image extension\n")
    out["empty"] = folder / "empty.png"
    out["empty"].write_bytes(b"")
    out["huge_png"] = folder / "huge_png.png"   # over MAX_PIXELS and not a JPEG: refused
    Image.fromarray(_pattern(700, 600, 9)).save(out["huge_png"])
    return out


@pytest.fixture
def good_images(tmp_path) -> dict[str, Path]:
    return write_good_images(tmp_path / "good")


@pytest.fixture
def mixed_images(tmp_path) -> tuple[Path, dict[str, Path], dict[str, Path]]:
    """One folder holding the good and the bad images (plus a .txt that folder discovery skips)."""
    folder = tmp_path / "mixed"
    good, bad = write_good_images(folder), write_bad_images(folder)
    (folder / "readme.txt").write_text("not an image, and not named like one")
    return folder, good, bad


@pytest.fixture
def caption_manifest(tmp_path) -> Path:
    """A caption manifest over 4 generated images (3 test, 1 train) with 2-3 references each."""
    folder = tmp_path / "manifest_images"
    folder.mkdir()
    rows = []
    for i in range(4):
        Image.fromarray(_pattern(72, 64, 20 + i)).save(folder / f"im{i}.png")
        rows.append({"id": f"im{i}", "image": f"manifest_images/im{i}.png",
                     "captions": CAPTIONS[i:i + 2 + i % 2], "split": "train" if i == 3 else "test"})
    path = tmp_path / "captions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
