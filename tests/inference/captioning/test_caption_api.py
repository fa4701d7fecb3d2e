"""load_model(...).caption(...), the Captioner pieces, and modality errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

import s2s_media
from s2s_media.inference import checkpoint
from s2s_media.decoding.timing import word_spans
from s2s_media.inference.inputs import discover_images
from s2s_media.errors import ImageError, UserError
from s2s_media.text.tokenizer import CharTokenizer, WordTokenizer


@pytest.fixture(scope="module")
def model(caption_ckpt):
    return s2s_media.load_model(caption_ckpt, device="cpu")


def test_caption_a_path_an_image_and_an_array(model, good_images, one_thread):
    rec = model.caption(good_images["rgb_png"])
    assert set(rec) == {"path", "caption", "score"}
    assert rec["path"] == str(good_images["rgb_png"])
    assert isinstance(rec["caption"], str) and rec["caption"]
    assert math.isfinite(rec["score"]) and rec["score"] < 0
    pil = Image.open(good_images["rgb_png"]).convert("RGB")
    from_pil = model.caption(pil)
    assert from_pil["path"] is None and from_pil["caption"] == rec["caption"]
    assert from_pil["score"] == pytest.approx(rec["score"], abs=1e-3)
    from_array = model.caption(np.asarray(pil))
    assert from_array["caption"] == rec["caption"]
    # beam 1 (greedy) is a valid search too, and never scores above the beam's best by much
    greedy = model.caption(good_images["rgb_png"], beam=1)
    assert greedy["caption"] and greedy["score"] <= rec["score"] + 1e-4


def test_attention_maps_have_one_grid_per_word(model, good_images, one_thread):
    rec = model.caption(good_images["rgb_jpeg"], attention=True)
    h, w = model.model.encoders["image"].grid_size(64, 64)
    assert rec["words"] == rec["caption"].split()
    assert rec["attention"].shape == (len(rec["words"]), h, w)
    # each word's map is a distribution over the grid (mean of its tokens' softmaxes)
    assert np.allclose(rec["attention"].reshape(len(rec["words"]), -1).sum(1), 1.0, atol=1e-4)


def test_unreadable_image_raises_image_error(model, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not a png")
    with pytest.raises(ImageError, match="bad.png"):
        model.caption(bad)
    with pytest.raises(UserError, match="array image"):
        model.caption(np.zeros((4, 4, 7), np.uint8))


def test_speech_model_cannot_caption_and_caption_model_cannot_transcribe(speech_ckpt, caption_ckpt, model):
    speech = s2s_media.load_model(speech_ckpt, device="cpu")
    assert speech.modalities == ["audio"] and model.modalities == ["image"]
    with pytest.raises(UserError, match="cannot caption images.*transcribe audio only"):
        speech.caption(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(UserError, match="cannot caption images"):
        s2s_media.load_model(speech_ckpt, device="cpu", task="caption")
    with pytest.raises(UserError, match="cannot transcribe audio"):
        model.transcribe(np.zeros(1600, np.float32))
    with pytest.raises(UserError, match="cannot transcribe audio"):
        s2s_media.load_model(caption_ckpt, device="cpu", task="asr")
    with pytest.raises(UserError, match="task 'ocr'"):
        s2s_media.load_model(caption_ckpt, device="cpu", task="ocr")


def test_missing_bundled_caption_model_says_what_to_do(monkeypatch):
    monkeypatch.setitem(checkpoint.BUNDLED, "caption", "assets/not_installed_caption.pt")
    with pytest.raises(UserError) as e:
        s2s_media.load_model(task="caption")
    msg = str(e.value)
    assert "not_installed_caption.pt" in msg and "--model" in msg and "\n" not in msg


def test_caption_files_yields_records_and_errors_in_order(model, mixed_images, one_thread):
    folder, good, bad = mixed_images
    recs = list(model.caption_files([folder], batch_size=4, workers=2))
    assert [r["path"] for r in recs] == sorted(str(p) for p in [*good.values(), *bad.values()])
    by_path = {r["path"]: r for r in recs}
    for p in good.values():
        assert "caption" in by_path[str(p)], by_path[str(p)]
    for p in bad.values():
        assert by_path[str(p)]["error"].startswith(str(p)), by_path[str(p)]
        assert "\n" not in by_path[str(p)]["error"]


def test_batched_captions_equal_one_by_one(model, good_images, one_thread):
    paths = sorted(good_images[k] for k in ("rgb_jpeg", "rgb_png", "gray", "cmyk"))  # caption_files sorts
    batched = list(model.caption_files(paths, batch_size=4, workers=0))
    assert [b["path"] for b in batched] == [str(p) for p in paths]
    single = [model.caption(p) for p in paths]
    assert [b["caption"] for b in batched] == [s["caption"] for s in single]
    assert [b["score"] for b in batched] == pytest.approx([s["score"] for s in single], abs=1e-3)


def test_discovery_reports_bad_paths_and_skips_non_images_in_folders(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"")
    (tmp_path / "a" / "notes.txt").write_text("hi")
    (tmp_path / "a" / "sub").mkdir()
    (tmp_path / "a" / "sub" / "y.jpg").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    (tmp_path / "doc.txt").write_text("hi")
    items = discover_images([tmp_path / "a", tmp_path / "missing.png", tmp_path / "empty", tmp_path / "doc.txt"])
    by = {it.path: it for it in items}
    assert by[str(tmp_path / "a" / "x.png")].error is None
    assert str(tmp_path / "a" / "notes.txt") not in by and str(tmp_path / "a" / "sub" / "y.jpg") not in by
    assert "no such file" in by[str(tmp_path / "missing.png")].error
    assert "no image files" in by[str(tmp_path / "empty")].error
    assert "not an image" in by[str(tmp_path / "doc.txt")].error
    deep = discover_images([tmp_path / "a"], recursive=True)
    assert [it.name for it in deep] == ["sub/y", "x"]


def test_word_spans_group_tokens_into_words():
    words = WordTokenizer.train(["a red dog"], tasks=["caption"])
    ids = words.encode("a red dog")
    assert word_spans(words, ids) == [("a", [0]), ("red", [1]), ("dog", [2])]
    chars = CharTokenizer.train(["a red dog"], tasks=["caption"])
    ids = chars.prefix("caption") + chars.encode("a red dog")
    spans = word_spans(chars, ids)
    assert [w for w, _ in spans] == ["a", "red", "dog"]
    assert spans[1][1] == [4, 5, 6]  # "red": positions after <sos> <caption> a ▁


def test_exported_caption_model_still_captions(caption_ckpt, good_images, tmp_path, one_thread):
    from s2s_media.inference.export import export_checkpoint
    out = tmp_path / "caption_fp16.pt"
    export_checkpoint(caption_ckpt, out, weights="float16", quantize=False)
    rec = s2s_media.load_model(out, device="cpu").caption(good_images["rgb_png"])
    assert rec["caption"] and math.isfinite(rec["score"])
    torch.testing.assert_close(torch.tensor(rec["score"]), torch.tensor(
        s2s_media.load_model(caption_ckpt, device="cpu").caption(good_images["rgb_png"])["score"]), atol=0.05, rtol=0)
