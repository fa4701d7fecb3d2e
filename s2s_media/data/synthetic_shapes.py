"""A synthetic captioning corpus: scenes of coloured shapes, each with five differently phrased captions.

A scene has 1-4 objects on a 3 x 3 layout grid (one object per cell, jittered). Each object has a
shape (circle, square, triangle, star, diamond, cross), a colour (red, green, blue, yellow, purple,
orange) and a size (small, large). The background is plain, a gradient or a texture (stripes,
checks or blotches), and pixel noise is added. Captions name every object (in reading order:
top to bottom, left to right), where a lone object is (``in the top left``), how the first two
objects relate (``left of``, ``above``, ``next to``, ``below and to the right of`` ...), how many
there are and the kind of background; five templates give five phrasings per image.

Compositional generalisation: the six (colour, shape) pairs of :data:`HELD_OUT` (one per colour
and one per shape) never occur in ``train`` or ``val``; ``test`` draws colours and shapes freely,
so about a third of its images hold at least one unseen pair, and ``test_heldout.jsonl`` lists
exactly those images. ``shapes.json`` in OUT records the held-out pairs and the settings.

Everything is a function of (seed, split, index): the corpus is identical for a seed whatever
the number of worker processes.
"""
from __future__ import annotations

import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from s2s_media.data.captions import CaptionRecord, write_caption_manifest
from s2s_media.errors import UserError

SHAPES = ("circle", "square", "triangle", "star", "diamond", "cross")
COLOURS = {"red": (215, 35, 35), "green": (35, 160, 55), "blue": (35, 75, 215), "yellow": (235, 205, 25),
           "purple": (135, 50, 175), "orange": (245, 125, 15)}
SIZES = {"small": 0.085, "large": 0.15}     # radius as a fraction of the image side
HELD_OUT = (("red", "star"), ("green", "cross"), ("blue", "triangle"), ("yellow", "circle"),
            ("purple", "square"), ("orange", "diamond"))
BACKGROUNDS = ("plain", "gradient", "textured")
POSITIONS = {(0, 0): "top left", (0, 1): "top middle", (0, 2): "top right",
             (1, 0): "middle left", (1, 1): "center", (1, 2): "middle right",
             (2, 0): "bottom left", (2, 1): "bottom middle", (2, 2): "bottom right"}
COUNTS = {1: "one", 2: "two", 3: "three", 4: "four"}
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
SUPERSAMPLE = 4


@dataclass
class Obj:
    shape: str
    colour: str
    size: str
    cell: tuple[int, int]      # (row, column) on the 3 x 3 layout
    dx: float                  # jitter within the cell, fraction of a cell
    dy: float
    angle: float               # rotation in degrees (not for circles)

    def phrase(self) -> str:
        return f"a {self.size} {self.colour} {self.shape}"


@dataclass
class Scene:
    objects: list[Obj]         # in reading order
    background: str
    bg_colours: list[tuple[int, int, int]]
    texture: str               # stripes / checks / blotches (textured backgrounds)
    noise: float               # std of the pixel noise (0-255 scale)


# --------------------------------------------------------------------------- sampling
def sample_scene(rng: np.random.Generator, allow_held_out: bool) -> Scene:
    n = int(rng.choice([1, 2, 3, 4], p=[0.25, 0.3, 0.25, 0.2]))
    cells = [divmod(int(c), 3) for c in rng.choice(9, size=n, replace=False)]
    objects = []
    for cell in sorted(cells):
        while True:
            colour, shape = str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES))
            if allow_held_out or (colour, shape) not in HELD_OUT:
                break
        objects.append(Obj(shape, colour, str(rng.choice(list(SIZES))), cell, float(rng.uniform(-0.12, 0.12)),
                           float(rng.uniform(-0.12, 0.12)), float(rng.uniform(-12, 12))))
    background = str(rng.choice(BACKGROUNDS))
    light = lambda: tuple(int(v) for v in rng.integers(185, 250, size=3))  # noqa: E731
    return Scene(objects, background, [light(), light()], str(rng.choice(["stripes", "checks", "blotches"])),
                 float(rng.uniform(0, 8)))


def has_held_out(scene: Scene) -> bool:
    return any((o.colour, o.shape) in HELD_OUT for o in scene.objects)


# --------------------------------------------------------------------------- captions
def relation(a: Obj, b: Obj) -> tuple[str, str]:
    """How ``a`` (earlier in reading order) stands to ``b``, and the inverse: ("left of", "right of")."""
    (ra, ca), (rb, cb) = a.cell, b.cell
    if ra == rb:   # reading order: a is the left one
        return "to the left of", "to the right of"
    horizontal = "" if ca == cb else " and to the left of" if ca < cb else " and to the right of"
    inverse = "" if ca == cb else " and to the right of" if ca < cb else " and to the left of"
    return "above" + horizontal, "below" + inverse


def _listing(objects: list[Obj]) -> str:
    names = [o.phrase() for o in objects]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def captions(scene: Scene) -> list[str]:
    """Five reference captions, each true of the scene, phrased differently."""
    objs, bg = scene.objects, f"on a {scene.background} background"
    a = objs[0]
    if len(objs) == 1:
        where = POSITIONS[a.cell]
        return [f"{a.phrase()} in the {where}",
                f"there is {a.phrase()} in the {where} of the image",
                f"{a.phrase()} {bg}",
                f"one {a.size} {a.colour} {a.shape} in the {where}",
                f"a {a.colour} {a.shape} in the {where} {bg}"]
    b, rest = objs[1], objs[2:]
    rel, inv = relation(a, b)
    side_by_side = a.cell[0] == b.cell[0] and abs(a.cell[1] - b.cell[1]) == 1
    tail = f", and {_listing(rest)}" if rest else ""
    count = COUNTS[len(objs)]
    return [f"{a.phrase()} {rel} {b.phrase()}{tail}",
            f"{b.phrase()} {inv} {a.phrase()}{tail}",
            f"{count} shapes: {_listing(objs)}",
            f"{_listing(objs)} {bg}",
            f"there are {count} shapes, {a.phrase()} {'next to' if side_by_side else rel} {b.phrase()}{tail}"]


# --------------------------------------------------------------------------- rendering
def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if shape == "square":
        pts = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
        pts = [(x * 0.8, y * 0.8) for x, y in pts]
    elif shape == "triangle":
        pts = [(math.cos(math.radians(-90 + 120 * k)), math.sin(math.radians(-90 + 120 * k)) + 0.15) for k in range(3)]
    elif shape == "star":
        pts = [((1.0 if k % 2 == 0 else 0.45) * math.cos(math.radians(-90 + 36 * k)),
                (1.0 if k % 2 == 0 else 0.45) * math.sin(math.radians(-90 + 36 * k))) for k in range(10)]
    elif shape == "diamond":
        pts = [(0, -1), (0.65, 0), (0, 1), (-0.65, 0)]
    elif shape == "cross":
        t = 0.33
        pts = [(-t, -1), (t, -1), (t, -t), (1, -t), (1, t), (t, t), (t, 1), (-t, 1), (-t, t), (-1, t), (-1, -t), (-t, -t)]
    else:
        raise ValueError(shape)
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in pts]


def _background(scene: Scene, side: int, rng: np.random.Generator) -> np.ndarray:
    c0, c1 = (np.array(c, dtype=np.float32) for c in scene.bg_colours)
    if scene.background == "plain":
        return np.broadcast_to(c0, (side, side, 3)).copy()
    ramp = np.linspace(0, 1, side, dtype=np.float32)
    if scene.background == "gradient":
        t = ramp[:, None] if rng.random() < 0.5 else ramp[None, :]
        t = np.broadcast_to(t, (side, side))[..., None]
        return c0 * (1 - t) + c1 * t
    yy, xx = np.mgrid[0:side, 0:side] / side
    if scene.texture == "stripes":
        f = rng.uniform(4, 9)
        mask = (np.sin(2 * np.pi * f * (xx + yy * rng.uniform(-1, 1))) > 0)
    elif scene.texture == "checks":
        f = int(rng.integers(3, 7))
        mask = ((xx * f).astype(int) + (yy * f).astype(int)) % 2 == 0
    else:
        low = rng.normal(size=(6, 6))
        big = np.kron(low, np.ones((side // 6 + 1, side // 6 + 1)))[:side, :side]
        mask = big > 0
    mask = mask[..., None].astype(np.float32)
    c1 = c0 + (c1 - c0) * 0.6    # low contrast: the texture must not look like a shape
    return c0 * (1 - mask) + c1 * mask


def render(scene: Scene, size: int, rng: np.random.Generator) -> Image.Image:
    """The scene as a ``size x size`` RGB image (shapes drawn at 4x and downsampled: antialiased)."""
    big = size * SUPERSAMPLE
    canvas = Image.fromarray(np.clip(_background(scene, big, rng), 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(canvas)
    cell = big / 3
    for o in scene.objects:
        row, col = o.cell
        cx, cy = (col + 0.5 + o.dx) * cell, (row + 0.5 + o.dy) * cell
        r = SIZES[o.size] * big
        jitter = rng.integers(-18, 19, size=3)
        colour = tuple(int(v) for v in np.clip(np.array(COLOURS[o.colour]) + jitter, 0, 255))
        if o.shape == "circle":
            draw.ellipse([cx - r * 0.9, cy - r * 0.9, cx + r * 0.9, cy + r * 0.9], fill=colour)
        else:
            draw.polygon(_polygon(o.shape, cx, cy, r, o.angle), fill=colour)
    image = np.asarray(canvas.resize((size, size), Image.LANCZOS), dtype=np.float32)
    image = image + rng.normal(0, scene.noise, size=image.shape)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB")


# --------------------------------------------------------------------------- the corpus
def make_item(job: tuple[int, str, int, int, str]) -> tuple[dict, bool]:
    """Render image ``index`` of ``split`` into ``folder``; returns (manifest row, holds a held-out pair)."""
    seed, split, index, size, folder = job
    rng = np.random.default_rng([seed, SPLIT_CODES[split], index])
    scene = sample_scene(rng, allow_held_out=split == "test")
    name = f"{split}_{index:06d}"
    rel = f"images/{split}/{name}.png"
    render(scene, size, rng).save(os.path.join(folder, rel), optimize=False, compress_level=1)
    return {"id": name, "image": rel, "captions": captions(scene), "split": split}, has_held_out(scene)


def generate_shapes(out: Path, train_images: int = 20000, val_images: int = 500, test_images: int = 1000,
                    seed: int = 0, size: int = 64, workers: int | None = None) -> dict[str, Path]:
    """Write ``out/images/<split>/*.png``, ``out/{train,val,test}.jsonl``, ``out/test_heldout.jsonl``
    and ``out/shapes.json``; returns ``{split: manifest}``. Deterministic for a seed."""
    if size < 32:
        raise UserError(f"synthetic_shapes: --size {size} is too small; use 32 or more (64 or 96 recommended)")
    if train_images < 1:
        raise UserError("synthetic_shapes: --train must be at least 1")
    workers = workers or os.cpu_count() or 1
    counts = {"train": train_images, "val": val_images, "test": test_images}
    written: dict[str, Path] = {}
    heldout_rows = []
    for split, n in counts.items():
        if n <= 0:
            continue
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        jobs = [(seed, split, i, size, str(out)) for i in range(n)]
        bar = tqdm(total=n, desc=f"shapes {split}", unit="img", mininterval=1.0, disable=None)
        rows = []
        if workers > 1 and n >= 2 * workers:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for row in pool.map(make_item, jobs, chunksize=max(1, min(64, n // (4 * workers)))):
                    rows.append(row)
                    bar.update(1)
        else:
            for job in jobs:
                rows.append(make_item(job))
                bar.update(1)
        bar.close()
        records = [CaptionRecord(**row) for row, _ in rows]
        written[split] = out / f"{split}.jsonl"
        write_caption_manifest(written[split], records)
        if split == "test":
            heldout_rows = [CaptionRecord(**row) for row, held in rows if held]
    if heldout_rows:
        written["test_heldout"] = out / "test_heldout.jsonl"
        write_caption_manifest(written["test_heldout"], heldout_rows)
    info = {"seed": seed, "size": size, "counts": counts, "held_out": [list(p) for p in HELD_OUT],
            "shapes": list(SHAPES), "colours": list(COLOURS), "sizes": list(SIZES), "backgrounds": list(BACKGROUNDS),
            "test_heldout_images": len(heldout_rows)}
    (out / "shapes.json").write_text(json.dumps(info, indent=1))
    return written
