"""Attention overlays and the HTML gallery, without a model."""
from __future__ import annotations

import numpy as np
from PIL import Image

from s2s_media.inference.captioner import AttentionMaps
from s2s_media.inference.report import Entry, overlay, save_attention_maps, write_html


def _red(a: np.ndarray) -> float:
    return float(a[..., 0].mean() - a[..., 2].mean())


def test_overlay_puts_the_heat_where_the_attention_is():
    view = Image.new("RGB", (64, 64), (128, 128, 128))
    weights = np.zeros((4, 4), np.float32)
    weights[0, 3] = 1.0  # top row, right column (row-major grid)
    im = np.asarray(overlay(view, weights, "dog"))
    assert im.shape == (224 + 28, 224, 3)  # upscaled to at least 224, plus the word strip
    top_right, bottom_left = im[:56, 168:224], im[168:224, :56]
    assert _red(top_right) > 50 > _red(bottom_left)
    assert (im[224:] < 128).any()  # the word is written on the white strip


def test_save_attention_maps_one_png_per_word_and_no_stale_files(tmp_path):
    maps = AttentionMaps(["a", "red/dog", "<odd>"], np.random.default_rng(0).random((3, 2, 2)).astype(np.float32),
                         Image.new("RGB", (32, 32)))
    paths = save_attention_maps(maps, tmp_path, "sub/img")
    assert [p.name for p in paths] == ["00_a.png", "01_red_dog.png", "02_odd.png"]
    assert all(p.parent == tmp_path / "sub" / "img" for p in paths)
    fewer = AttentionMaps(["a"], maps.weights[:1], maps.view)
    assert [p.name for p in save_attention_maps(fewer, tmp_path, "sub/img")] == ["00_a.png"]
    assert len(list((tmp_path / "sub" / "img").glob("*.png"))) == 1


def test_html_escapes_text_and_embeds_thumbnails(tmp_path):
    img = tmp_path / "a&b.png"
    Image.new("RGB", (300, 200), (10, 200, 30)).save(img)
    page = write_html(tmp_path / "r.html", [Entry({"path": str(img), "caption": "a <b> & c", "score": -1.5}),
                                            Entry({"path": "x.jpg", "error": "x.jpg: <truncated>"})])
    text = page.read_text()
    assert "a &lt;b&gt; &amp; c" in text and "x.jpg: &lt;truncated&gt;" in text and "<b>" not in text
    assert text.count("data:image/jpeg;base64,") == 1 and "score -1.500" in text
    assert "2 images, 1 failed" in text


def test_flat_attention_is_not_drawn_as_a_hot_spot():
    view = Image.new("RGB", (32, 32), (128, 128, 128))
    flat = np.asarray(overlay(view, np.full((4, 4), 1 / 16, np.float32)))[:224]
    peaked = np.zeros((4, 4), np.float32)
    peaked[0, 0] = 1
    hot = np.asarray(overlay(view, peaked))[:224]
    assert _red(flat) < _red(hot[:56, :56]) - 50
    assert flat.std(axis=(0, 1)).max() < 1.0  # uniform colour everywhere
