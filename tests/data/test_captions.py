"""Caption manifests, the corpus importers on fixtures laid out like the real corpora, the
synthetic shapes generator, the caption dataset and sampler."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from caption_fixtures import make_coco, make_flickr, make_image_folder, write_image
from s2s_media.cli.main import main
from s2s_media.data.captions import (CaptionDataset, ImageBatchSampler, collate, read_caption_manifest)
from s2s_media.data.dataset import Bad
from s2s_media.data.synthetic_shapes import HELD_OUT, captions, generate_shapes, relation, sample_scene, Obj
from s2s_media.errors import ManifestError, UserError
from s2s_media.text.tokenizer import WordTokenizer
from s2s_media.frontend.vision import ImageConfig

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models run fastest on one thread


def ids(path: Path) -> dict[str, str]:
    return {r.id: r.split for r in read_caption_manifest(path)}


# --------------------------------------------------------------------------- manifests
@pytest.mark.parametrize("line, message", [
    ('{"id": "a", "image": "x.png", "captions": ["hi"]}', "missing field 'split'"),
    ('{"id": "a", "image": "x.png", "captions": [], "split": "train"}', "non-empty list"),
    ('{"id": "a", "image": "x.png", "captions": ["ok", 3], "split": "train"}', "captions[1]"),
    ('{"id": 5, "image": "x.png", "captions": ["ok"], "split": "train"}', "field 'id'"),
    ('["not", "an", "object"]', "expected a JSON object"),
    ('{"id": "a", ', "not valid JSON"),
])
def test_manifest_lines_are_validated_with_file_and_line(tmp_path, line, message):
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "ok", "image": "x.png", "captions": ["fine"], "split": "train"}\n\n' + line + "\n")
    with pytest.raises(ManifestError) as e:
        read_caption_manifest(path)
    assert f"{path}:3" in str(e.value) and message in str(e.value)


def test_manifest_resolves_relative_images_and_rejects_duplicate_ids(tmp_path):
    path = tmp_path / "m.jsonl"
    row = {"id": "a", "image": "img/a.png", "captions": ["x"], "split": "val"}
    path.write_text(json.dumps(row) + "\n")
    assert read_caption_manifest(path)[0].image == str(tmp_path / "img/a.png")
    path.write_text((json.dumps(row) + "\n") * 2)
    with pytest.raises(ManifestError, match="appears twice"):
        read_caption_manifest(path)


# --------------------------------------------------------------------------- importers
@pytest.mark.parametrize("json_dir", [".", "caption_datasets"])
def test_prepare_coco_karpathy_split(tmp_path, json_dir, capsys):
    truth = make_coco(tmp_path / "coco", json_dir)
    assert main(["prepare", "coco", str(tmp_path / "coco"), str(tmp_path / "out")]) == 0
    found = {}
    for split in ("train", "val", "test"):
        found.update(ids(tmp_path / "out" / f"{split}.jsonl"))
    assert found == truth                                 # restval went to train; the missing image is skipped
    rec = read_caption_manifest(tmp_path / "out" / "val.jsonl")[0]
    assert Path(rec.image).is_file() and Path(rec.image).is_absolute() and "val2014" in rec.image
    assert rec.captions == ["a red square number two", "the square two is red"]
    out = capsys.readouterr().out
    assert "images" in out and "captions" in out


@pytest.mark.parametrize("dataset, folder", [("flickr8k", "Flicker8k_Dataset"), ("flickr8k", "Images"),
                                             ("flickr30k", "flickr30k-images")])
def test_prepare_flickr_karpathy_split(tmp_path, dataset, folder):
    truth = make_flickr(tmp_path / "src", dataset, folder)
    assert main(["prepare", dataset, str(tmp_path / "src"), str(tmp_path / "out")]) == 0
    found = {}
    for split in ("train", "val", "test"):
        found.update(ids(tmp_path / "out" / f"{split}.jsonl"))
    assert found == truth


def test_importer_errors_name_what_is_expected(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["prepare", "coco", str(tmp_path / "empty"), str(tmp_path / "out")]) == 2
    assert "dataset_coco.json not found" in capsys.readouterr().err
    make_flickr(tmp_path / "f8", "flickr8k", "Flicker8k_Dataset")
    (tmp_path / "f8" / "dataset_flickr8k.json").write_text("{not json")
    assert main(["prepare", "flickr8k", str(tmp_path / "f8"), str(tmp_path / "out")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["prepare", "coco", str(tmp_path / "empty")]) == 2
    assert "needs SRC and OUT" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_prepare_image_folder_random_split(tmp_path, kind):
    truth = make_image_folder(tmp_path / "src", kind, n=10)
    assert main(["prepare", "image_folder", str(tmp_path / "src"), str(tmp_path / "out"), "--val", "2",
                 "--test", "3", "--seed", "4"]) == 0
    records = {s: read_caption_manifest(tmp_path / "out" / f"{s}.jsonl") for s in ("train", "val", "test")}
    assert [len(records[s]) for s in ("train", "val", "test")] == [5, 2, 3]
    every = {r.id: r for rs in records.values() for r in rs}
    key = "img3" if kind == "csv" else "images_img3"
    assert every[key].captions == ["picture three a red thing", "another caption of image three"]
    assert len(every) == len(truth)


def test_prepare_image_folder_with_split_column_and_explicit_file(tmp_path):
    make_image_folder(tmp_path / "src", "csv", splits=True, n=6)
    moved = tmp_path / "elsewhere.csv"
    (tmp_path / "src" / "captions.csv").rename(moved)
    assert main(["prepare", "image_folder", str(tmp_path / "src"), str(tmp_path / "out"), "--captions", str(moved)]) == 0
    assert set(ids(tmp_path / "out" / "val.jsonl")) == {"img3"} and set(ids(tmp_path / "out" / "test.jsonl")) == {"img4"}
    assert len(ids(tmp_path / "out" / "train.jsonl")) == 4



def test_prepare_image_folder_with_no_usable_image_names_what_happened(tmp_path, capsys):
    make_image_folder(tmp_path / "src", "csv", n=3)
    for png in (tmp_path / "src").rglob("*.png"):       # captions left, every image gone
        png.unlink()
    assert main(["prepare", "image_folder", str(tmp_path / "src"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "image_folder: no usable images found (3 entries skipped" in err and "\n" not in err.strip()
    assert not (tmp_path / "out" / "train.jsonl").exists()

# --------------------------------------------------------------------------- synthetic shapes
def test_synthetic_shapes_is_deterministic_and_holds_pairs_out(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    generate_shapes(a, train_images=40, val_images=5, test_images=30, seed=3, size=32, workers=1)
    generate_shapes(b, train_images=40, val_images=5, test_images=30, seed=3, size=32, workers=2)
    for name in ("train.jsonl", "val.jsonl", "test.jsonl", "images/train/train_000007.png", "images/test/test_000011.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    info = json.loads((a / "shapes.json").read_text())
    assert [tuple(p) for p in info["held_out"]] == list(HELD_OUT)
    train = read_caption_manifest(a / "train.jsonl") + read_caption_manifest(a / "val.jsonl")
    held = [f"{c} {s}" for c, s in HELD_OUT]
    assert not any(h in cap for r in train for cap in r.captions for h in held)
    heldout = read_caption_manifest(a / "test_heldout.jsonl")
    assert heldout and all(any(h in r.captions[2] for h in held) for r in heldout)
    assert all(len(r.captions) == 5 and len(set(r.captions)) == 5 for r in train)


def test_synthetic_shapes_cli(tmp_path, capsys):
    assert main(["prepare", "synthetic_shapes", str(tmp_path / "s"), "--train", "6", "--val", "2", "--test", "2",
                 "--size", "32", "--seed", "1", "--workers", "1"]) == 0
    assert "train" in capsys.readouterr().out
    assert main(["prepare", "synthetic_shapes", str(tmp_path / "x"), str(tmp_path / "y")]) == 2
    assert "takes no SRC" in capsys.readouterr().err
    assert main(["prepare", "coco", str(tmp_path), str(tmp_path / "o"), "--size", "32"]) == 2
    assert "--size does not apply to 'coco'" in capsys.readouterr().err


def test_captions_describe_relations():
    left, right = Obj("circle", "red", "small", (1, 0), 0, 0, 0), Obj("star", "blue", "large", (1, 1), 0, 0, 0)
    assert relation(left, right) == ("to the left of", "to the right of")
    below = Obj("cross", "green", "small", (2, 2), 0, 0, 0)
    assert relation(left, below) == ("above and to the left of", "below and to the right of")
    caps = captions(type("S", (), {"objects": [left, right], "background": "plain"})())
    assert caps[0] == "a small red circle to the left of a large blue star"
    assert caps[1] == "a large blue star to the right of a small red circle"
    assert "next to" in caps[4]


def test_scenes_without_held_out_pairs():
    import numpy as np
    rng = np.random.default_rng(0)
    for _ in range(200):
        scene = sample_scene(rng, allow_held_out=False)
        assert 1 <= len(scene.objects) <= 4
        assert not any((o.colour, o.shape) in HELD_OUT for o in scene.objects)


# --------------------------------------------------------------------------- dataset and sampler
def test_dataset_items_batches_and_bad_images(shapes, tmp_path):
    records = read_caption_manifest(shapes / "train.jsonl")[:3]
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    records.append(type(records[0])("broken", str(tmp_path / "broken.png"), ["a thing"], "train"))
    tok = WordTokenizer.train([c.lower().replace(",", "").replace(":", "") for r in records for c in r.captions],
                              tasks=["caption"])
    ds = CaptionDataset(records, tok, ImageConfig(size=32), train=True, captions_per_image=2, seed=0)
    items = [ds[i] for i in range(4)]
    assert isinstance(items[3], Bad) and "broken.png" in items[3].reason
    again = ds[0]
    assert again["texts"] == items[0]["texts"] and torch.equal(again["pixels"], items[0]["pixels"])
    ds.set_epoch(1)
    batch = collate(items)
    assert batch["pixels"].shape == (3, 3, 32, 32) and batch["repeat"].tolist() == [2, 2, 2]
    assert len(batch["tokens"]) == 6 and len(batch["refs"]) == 3 and batch["bad"][0].id == "broken"
    assert all(1 not in t for t in batch["tokens"])                       # every word known, no <unk>


def test_image_sampler_shuffles_per_epoch_and_resumes():
    s = ImageBatchSampler(10, 3, shuffle=True, seed=1)
    first = list(s)
    assert len(first) == 3 and all(len(b) == 3 for b in first) and len(s) == 3     # the partial batch dropped
    s.set_epoch(1)
    second = list(s)
    assert sorted(sum(second, [])) != sorted(sum(first, [])) or second != first
    s.load_state_dict(s.state_dict(2))
    assert list(s) == second[2:]
    evaluation = ImageBatchSampler(10, 3, shuffle=False)
    assert list(evaluation) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    ranks = [list(ImageBatchSampler(12, 2, seed=0, rank=r, world_size=2)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 3 and not set(sum(ranks[0], [])) & set(sum(ranks[1], []))
