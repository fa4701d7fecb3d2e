"""Caption corpus preparers: images + captions on disk -> ``train``/``val``/``test`` caption manifests.

Same contract as the audio preparers (:mod:`s2s_media.data.preparers`): ``prepare_x(src, out,
**options) -> {split: manifest path}``; captions go through the one text normaliser; single bad
entries (a missing image, no usable caption) are counted, the first few logged, and never stop
the run; a missing SRC or index file is a one-line :class:`UserError` naming what was expected.
Image paths are written absolute (they point into SRC).

- Karpathy splits (``dataset_coco.json``, ``dataset_flickr8k.json``, ``dataset_flickr30k.json``):
  ``images[]`` with ``filename`` (COCO also ``filepath``: ``train2014``/``val2014``), ``split``
  (``train``/``restval``/``val``/``test``; ``restval`` goes to train) and ``sentences[]`` with
  ``raw`` and ``tokens``.
- ``image_folder``: a folder of images plus a captions file, CSV (``image,caption`` columns, one
  row per caption, several rows per image, optional ``split``) or JSONL (``image`` plus
  ``caption`` or ``captions``, optional ``split``); without splits, val/test are drawn at random.
"""
from __future__ import annotations

import csv
import json
import logging
import random
from pathlib import Path

from s2s_media.data.captions import CaptionRecord, write_caption_manifest
from s2s_media.data.preparers.common import Issues, require_dir, write_splits
from s2s_media.data import synthetic_shapes
from s2s_media.errors import UserError
from s2s_media.text.normalize import normalize_text

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
_SPLIT_NAMES = {"train": "train", "restval": "train", "val": "val", "valid": "val", "validation": "val",
                "dev": "val", "test": "test"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def caption_record(issues: Issues, image_id: str, image: Path, captions: list[str], split: str) -> CaptionRecord | None:
    """A record with normalised captions, or ``None`` (counted) when the image is missing or no caption is left."""
    if not image.is_file():
        issues.skip("missing images", f"{image_id}: image {image} not found; skipped")
        return None
    norm = [c for c in (normalize_text(c) for c in captions) if c]
    if not norm:
        issues.skip("images without captions", f"{image_id}: no caption left after normalisation; skipped")
        return None
    issues.kept += 1
    return CaptionRecord(id=image_id, image=str(image.resolve()), captions=norm, split=split)


def write_caption_splits(out: Path, splits: dict[str, list[CaptionRecord]], issues: Issues,
                         expected: str) -> dict[str, Path]:
    """:func:`~s2s_media.data.preparers.write_splits` for caption manifests."""
    return write_splits(out, splits, issues, expected, writer=write_caption_manifest, items="images")


# --------------------------------------------------------------------------- Karpathy splits
KARPATHY = {   # dataset -> (json name, image folders tried under SRC, or None: COCO's filepath)
    "coco": ("dataset_coco.json", None),
    "flickr8k": ("dataset_flickr8k.json", ("Flicker8k_Dataset", "Flickr8k_Dataset", "Images", "images")),
    "flickr30k": ("dataset_flickr30k.json", ("flickr30k-images", "flickr30k_images", "Images", "images")),
}
_JSON_DIRS = (".", "caption_datasets", "karpathy", "annotations")


def _expected(dataset: str) -> str:
    name, folders = KARPATHY[dataset]
    images = "train2014/ and val2014/" if folders is None else f"{folders[0]}/ (or {', '.join(folders[1:])})"
    return f"a folder with {images} and the Karpathy split file {name} (in it or in caption_datasets/)"


def find_karpathy_json(src: Path, dataset: str) -> Path:
    name = KARPATHY[dataset][0]
    for sub in _JSON_DIRS:
        if (src / sub / name).is_file():
            return src / sub / name
    raise UserError(f"{dataset}: {name} not found in {src} or its {', '.join(_JSON_DIRS[1:])}/ folder; "
                    f"expected {_expected(dataset)}")


def _image_root(src: Path, dataset: str) -> Path:
    """COCO: the folder holding train2014/ and val2014/; Flickr: the image folder itself."""
    folders = KARPATHY[dataset][1]
    if folders is None:
        for root in (src, src / "images"):
            if (root / "train2014").is_dir() or (root / "val2014").is_dir():
                return root
        raise UserError(f"{dataset}: no train2014/ or val2014/ folder in {src}; expected {_expected(dataset)}")
    for name in folders:
        if (src / name).is_dir():
            return src / name
    raise UserError(f"{dataset}: no image folder ({', '.join(folders)}) in {src}; expected {_expected(dataset)}")


def read_karpathy(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise UserError(f"{path}: expected a Karpathy split file, a JSON object with an 'images' list")
    return data["images"]


def prepare_karpathy(src: Path, out: Path, dataset: str) -> dict[str, Path]:
    """Karpathy's splits of ``dataset`` (coco, flickr8k, flickr30k) -> train (with restval), val, test."""
    require_dir(src, dataset, _expected(dataset))
    index = find_karpathy_json(src, dataset)
    root = _image_root(src, dataset)
    issues = Issues(dataset)
    splits: dict[str, list[CaptionRecord]] = {s: [] for s in SPLITS}
    for n, entry in enumerate(read_karpathy(index)):
        where = f"{index}: images[{n}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str):
            issues.skip("malformed entries", f"{where}: no 'filename'; skipped")
            continue
        split = _SPLIT_NAMES.get(entry.get("split", ""))
        if split is None:
            issues.skip("unknown splits", f"{where}: split {entry.get('split')!r} is not train/restval/val/test; skipped")
            continue
        filename = entry["filename"]
        image = root / entry.get("filepath", "") / filename if dataset == "coco" else root / filename
        image_id = str(entry["cocoid"]) if dataset == "coco" and "cocoid" in entry else Path(filename).stem
        captions = [s.get("raw") or " ".join(s.get("tokens", [])) for s in entry.get("sentences", [])
                    if isinstance(s, dict)]
        record = caption_record(issues, image_id, image, captions, split)
        if record:
            splits[split].append(record)
    return write_caption_splits(out, splits, issues, _expected(dataset))


def prepare_coco(src: Path, out: Path) -> dict[str, Path]:
    """MS COCO 2014 with Karpathy's split: SRC holds train2014/, val2014/ and dataset_coco.json."""
    return prepare_karpathy(src, out, "coco")


def prepare_flickr8k(src: Path, out: Path) -> dict[str, Path]:
    """Flickr8k with Karpathy's split: SRC holds Flicker8k_Dataset/ (or Images/) and dataset_flickr8k.json."""
    return prepare_karpathy(src, out, "flickr8k")


def prepare_flickr30k(src: Path, out: Path) -> dict[str, Path]:
    """Flickr30k with Karpathy's split: SRC holds flickr30k-images/ (or Images/) and dataset_flickr30k.json."""
    return prepare_karpathy(src, out, "flickr30k")


# --------------------------------------------------------------------------- image folder
_FOLDER_EXPECTED = ("an image folder with a captions file: captions.csv (columns image,caption; one row per "
                    "caption; optional split) or captions.jsonl (image + caption or captions; optional split), "
                    "or --captions FILE")
_CAPTION_FILES = ("captions.csv", "captions.jsonl", "captions.txt")


def _caption_rows(path: Path, issues: Issues) -> list[tuple[str, list[str], str | None]]:
    """``(image, captions, split or None)`` rows of a CSV (header with image, caption) or JSONL file."""
    rows = []
    if path.suffix == ".jsonl":
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            caps = obj.get("captions", [obj["caption"]] if "caption" in obj else None) if isinstance(obj, dict) else None
            if not isinstance(obj, dict) or not isinstance(obj.get("image"), str) or not isinstance(caps, list):
                raise UserError(f"{path}:{lineno}: expected an object with 'image' and 'caption' (or 'captions')")
            rows.append((obj["image"], [str(c) for c in caps], obj.get("split")))
        return rows
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        fields = [c.strip().lower() for c in reader.fieldnames or []]
        if "image" not in fields or "caption" not in fields:
            raise UserError(f"{path}: needs a header row with 'image' and 'caption' columns "
                            f"(found: {', '.join(reader.fieldnames or []) or 'nothing'})")
        reader.fieldnames = fields
        for row in reader:
            if not row.get("image") or row.get("caption") is None:
                issues.skip("malformed rows", f"{path}:{reader.line_num}: no image or caption; skipped")
                continue
            rows.append((row["image"].strip(), [row["caption"]], (row.get("split") or "").strip() or None))
    return rows


def _resolve_image(src: Path, name: str) -> Path:
    path = Path(name)
    if path.is_absolute():
        return path
    for base in (src, src / "images", src / "Images"):
        if (base / path).is_file():
            return base / path
    return src / path


def prepare_image_folder(src: Path, out: Path, *, captions: str | None = None, val_images: int | None = None,
                         test_images: int | None = None, seed: int | None = None) -> dict[str, Path]:
    """Images in ``src`` (or ``src/images``) with captions from ``captions`` (default: ``src/captions.csv``,
    ``.jsonl`` or ``.txt``). Rows of one image are merged. A ``split`` column/field decides the split;
    otherwise ``val_images``/``test_images`` images (default 5 % each) are drawn with ``seed``."""
    require_dir(src, "image_folder", _FOLDER_EXPECTED)
    if captions:
        index = Path(captions)
        if not index.is_file():
            raise UserError(f"image_folder: captions file {index} not found")
    else:
        index = next((src / n for n in _CAPTION_FILES if (src / n).is_file()), None)
        if index is None:
            raise UserError(f"image_folder: no {', '.join(_CAPTION_FILES)} in {src}; expected {_FOLDER_EXPECTED}")
    issues = Issues("image_folder")
    merged: dict[str, tuple[list[str], str | None]] = {}
    for image, caps, split in _caption_rows(index, issues):
        entry = merged.setdefault(image, ([], split))
        entry[0].extend(caps)
        if split and split != entry[1]:
            merged[image] = (entry[0], split)
    records: list[tuple[CaptionRecord, str | None]] = []
    for image, (caps, split) in merged.items():
        if split is not None and split not in _SPLIT_NAMES:
            issues.skip("unknown splits", f"{image}: split {split!r} is not train/val/test; skipped")
            continue
        path = _resolve_image(src, image)
        image_id = Path(image).with_suffix("").as_posix().replace("/", "_")
        record = caption_record(issues, image_id, path, caps, _SPLIT_NAMES.get(split or "", "train"))
        if record:
            records.append((record, split))
    splits: dict[str, list[CaptionRecord]] = {s: [] for s in SPLITS}
    if any(split for _, split in records):
        for record, _ in records:
            splits[record.split].append(record)
    else:
        order = [r for r, _ in records]
        random.Random(seed or 0).shuffle(order)
        n_val = round(0.05 * len(order)) if val_images is None else val_images
        n_test = round(0.05 * len(order)) if test_images is None else test_images
        if n_val + n_test >= len(order) and order:
            raise UserError(f"image_folder: {len(order)} images cannot give {n_val} val and {n_test} test images "
                            "and still leave some for training")
        for i, record in enumerate(order):
            record.split = "val" if i < n_val else "test" if i < n_val + n_test else "train"
            splits[record.split].append(record)
        for split in splits.values():
            split.sort(key=lambda r: r.id)
    return write_caption_splits(out, splits, issues, _FOLDER_EXPECTED)


def prepare_synthetic_shapes(src: Path | None, out: Path, *, train_images: int | None = None,
                             val_images: int | None = None, test_images: int | None = None, seed: int | None = None,
                             size: int | None = None, workers: int | None = None) -> dict[str, Path]:
    """Generate the synthetic shapes captioning corpus (:mod:`s2s_media.data.synthetic_shapes`); takes no SRC.
    Options left at ``None`` take the generator's defaults."""
    options = dict(train_images=train_images, val_images=val_images, test_images=test_images, seed=seed, size=size,
                   workers=workers)
    return synthetic_shapes.generate_shapes(out, **{k: v for k, v in options.items() if v is not None})
