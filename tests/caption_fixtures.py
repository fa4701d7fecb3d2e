"""Tiny captioning corpora laid out exactly like the real ones, written at test time.

Images are a few pixels of solid colour (``write_image``); the index files follow the real
formats: Karpathy's ``dataset_*.json`` (COCO with ``filepath``/``cocoid``, Flickr without), a
captions CSV with several rows per image, a captions JSONL.
"""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

SPLITS = ["train", "restval", "val", "test"]
RECIPES = Path(__file__).resolve().parents[1] / "recipes"
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


def write_image(path: Path, colour=(200, 30, 30), size=(24, 20), mode: str = "RGB", fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).convert(mode).save(path, format=fmt)
    return path


def _sentences(i: int) -> list[dict]:
    raws = [f"A red square number {i}.", f"the square #{i} is RED", "  "]   # the last one is empty after normalising
    return [{"tokens": r.lower().strip(" .").split(), "raw": r, "imgid": i, "sentid": 10 * i + k}
            for k, r in enumerate(raws)]


def make_coco(root: Path, json_dir: str = ".") -> dict[str, str]:
    """``root/train2014``, ``root/val2014`` and ``dataset_coco.json``: one image per Karpathy split (restval
    from val2014, as in the real file), plus a JSON entry whose image is missing. Returns {cocoid: split}."""
    images, truth = [], {}
    for i, split in enumerate(SPLITS):
        folder = "train2014" if split == "train" else "val2014"
        cocoid = 391895 + i
        name = f"COCO_{folder}_{cocoid:012d}.jpg"
        write_image(root / folder / name)
        images.append({"filepath": folder, "sentids": [10 * i, 10 * i + 1], "filename": name, "imgid": i,
                       "split": split, "sentences": _sentences(i), "cocoid": cocoid})
        truth[str(cocoid)] = "train" if split == "restval" else split
    images.append({"filepath": "val2014", "filename": "COCO_val2014_000000000001.jpg", "imgid": 9, "split": "test",
                   "sentences": _sentences(9), "cocoid": 1})
    (root / json_dir).mkdir(parents=True, exist_ok=True)
    (root / json_dir / "dataset_coco.json").write_text(json.dumps({"images": images, "dataset": "coco"}))
    return truth


def make_flickr(root: Path, dataset: str = "flickr8k", image_dir: str = "Flicker8k_Dataset") -> dict[str, str]:
    """``root/<image_dir>/*.jpg`` + ``root/dataset_<dataset>.json`` (no filepath, no cocoid). Returns {stem: split}."""
    images, truth = [], {}
    for i, split in enumerate(["train", "train", "val", "test"]):
        name = f"{1000268201 + i}_693b08cb0e.jpg"
        write_image(root / image_dir / name, colour=(10 * i, 100, 200))
        images.append({"sentids": [i], "imgid": i, "sentences": _sentences(i), "split": split, "filename": name})
        truth[Path(name).stem] = split
    (root / f"dataset_{dataset}.json").write_text(json.dumps({"images": images, "dataset": dataset}))
    return truth


def make_image_folder(root: Path, kind: str = "csv", splits: bool = False, n: int = 6) -> dict[str, list[str]]:
    """``root/images/img<i>.png`` + ``root/captions.csv`` (several rows per image) or ``captions.jsonl``."""
    truth = {}
    rows = []
    for i in range(n):
        write_image(root / "images" / f"img{i}.png", colour=(i * 40, 0, 0))
        caps = [f"picture {i}, a red thing", f"another caption of image {i}"]
        truth[f"img{i}"] = caps
        split = ["train", "train", "train", "val", "test", "train"][i % 6] if splits else None
        if kind == "csv":
            rows += [{"image": f"img{i}.png", "caption": c, "split": split} for c in caps]
        else:
            rows.append({"image": f"images/img{i}.png", "captions": caps, **({"split": split} if split else {})})
    if kind == "csv":
        header = "image,caption" + (",split" if splits else "")
        lines = [header] + [f'{r["image"]},"{r["caption"]}"' + (f",{r['split']}" if splits else "") for r in rows]
        (root / "captions.csv").write_text("\n".join(lines) + "\n")
    else:
        (root / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return truth
