"""Pictures of captioning results: per-word attention overlays (PNG) and an HTML gallery.

- :func:`save_attention_maps` writes one PNG per caption word: the image as the encoder saw it
  (:attr:`~s2s_media.inference.captioner.AttentionMaps.view`), the word's attention over the ``h x w`` grid
  upsampled bilinearly to the image and blended in with the ``jet`` colour map, and the word
  written on a strip below. Weights are divided by ``max(peak, 2 / cells)``: the most attended
  cell is red, while a flat (uniform) map stays a mid green rather than turning all red. Files are
  ``OUTDIR/<name>/<k>_<word>.png`` with ``k`` the word's position from 00 and ``<name>`` the
  image's name (its path relative to the folder it was found in, without extension).
- :func:`write_html` writes one self-contained page: per image a thumbnail (embedded as JPEG,
  so converted formats such as CMYK, 16-bit or TIFF display everywhere), the caption and its
  score, and, when maps were written, the image's overlays (linked relative to the page);
  failed images show their error.
"""
from __future__ import annotations

import base64
import html
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from s2s_media.errors import UserError
from s2s_media.frontend.vision import load_image

from s2s_media.inference.captioner import AttentionMaps

MIN_SIDE = 224          # overlays are drawn at least this large
ALPHA = 0.5             # weight of the heat map in the blend
STRIP = 28              # height of the word strip under an overlay, in pixels
_UNSAFE = re.compile(r"[^\w\-]+", re.UNICODE)


def _colormap(x: np.ndarray) -> np.ndarray:
    """``x (H, W)`` in [0, 1] -> ``(H, W, 3)`` uint8 through matplotlib's ``jet``."""
    from matplotlib import colormaps
    return (colormaps["jet"](x)[..., :3] * 255).round().astype(np.uint8)


def overlay(view: Image.Image, weights: np.ndarray, word: str = "") -> Image.Image:
    """One word's overlay: ``weights (h, w)`` over the RGB ``view``, with ``word`` on a strip below."""
    scale = max(1.0, MIN_SIDE / min(view.size))
    size = (round(view.width * scale), round(view.height * scale))
    base = view.convert("RGB").resize(size, Image.BICUBIC) if scale > 1 else view.convert("RGB")
    w = np.asarray(weights, dtype=np.float32)
    w = w / max(float(w.max()), 2.0 / w.size) if w.size else w
    heat = np.asarray(Image.fromarray(w).resize(size, Image.BILINEAR), dtype=np.float32).clip(0, 1)
    blend = (1 - ALPHA) * np.asarray(base, dtype=np.float32) + ALPHA * _colormap(heat).astype(np.float32)
    canvas = Image.new("RGB", (size[0], size[1] + STRIP), "white")
    canvas.paste(Image.fromarray(blend.round().astype(np.uint8), "RGB"), (0, 0))
    if word:
        ImageDraw.Draw(canvas).text((6, size[1] + 4), word, fill="black", font=ImageFont.load_default(size=18))
    return canvas


def maps_folder(out_dir: str | Path, name: str) -> Path:
    """Where the overlays of the image named ``name`` go."""
    return Path(out_dir) / name


def save_attention_maps(maps: AttentionMaps, out_dir: str | Path, name: str) -> list[Path]:
    """Write one PNG per word of ``maps`` into ``OUTDIR/<name>/``; returns the paths in word order.

    Earlier PNGs in that folder are removed first, so a re-run never leaves stale words behind.
    """
    folder = maps_folder(out_dir, name)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    paths = []
    for k, (word, weights) in enumerate(zip(maps.words, maps.weights)):
        path = folder / f"{k:02d}_{_UNSAFE.sub('_', word).strip('_')[:40] or 'word'}.png"
        overlay(maps.view, weights, word).save(path)
        paths.append(path)
    return paths


def map_files(out_dir: str | Path, name: str) -> list[Path]:
    """The overlay PNGs of an image, in word order (empty when none were written)."""
    folder = maps_folder(out_dir, name)
    return sorted(folder.glob("*.png")) if folder.is_dir() else []


# --------------------------------------------------------------------------- HTML
@dataclass
class Entry:
    """One image of the gallery: its output record, and the overlay PNGs written for it."""

    record: dict
    maps: list[Path] = field(default_factory=list)


def thumbnail_uri(path: str | Path, side: int = 256) -> str | None:
    """A ``data:image/jpeg`` URI of the image at ``path`` fitted in ``side`` pixels; None if unreadable."""
    try:
        im = load_image(path)
    except UserError:
        return None
    im.thumbnail((side, side))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; background: #fafafa; color: #222; }
h1 { font-size: 1.3em; } .summary { color: #555; margin-bottom: 1em; }
.card { background: white; border: 1px solid #ddd; border-radius: 6px; padding: 10px; margin: 0 0 14px 0;
        display: flex; gap: 14px; align-items: flex-start; }
.card img.thumb { max-width: 256px; max-height: 256px; border-radius: 4px; }
.caption { font-size: 1.1em; font-weight: 600; } .path, .score { color: #666; font-size: 0.85em; }
.error { color: #b00020; } .maps { display: flex; flex-wrap: wrap; gap: 6px; margin-top: 8px; }
.maps figure { margin: 0; text-align: center; font-size: 0.8em; } .maps img { width: 112px; }
"""


def write_html(path: str | Path, entries: list[Entry], title: str = "s2s-media captions") -> Path:
    """Write the gallery page for ``entries`` (in the given order) to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    failed = sum("error" in e.record for e in entries)
    cards = []
    for e in entries:
        rec = e.record
        src = html.escape(str(rec.get("path", "")))
        if "error" in rec:
            cards.append(f'<div class="card"><div><div class="path">{src}</div>'
                         f'<div class="error">{html.escape(str(rec["error"]))}</div></div></div>')
            continue
        uri = thumbnail_uri(rec["path"])
        thumb = f'<img class="thumb" src="{uri}" alt="{src}">' if uri else ""
        figures = "".join(
            f'<figure><a href="{html.escape(_rel(m, base))}"><img src="{html.escape(_rel(m, base))}" '
            f'alt="{html.escape(_word_of(m))}"></a><figcaption>{html.escape(_word_of(m))}</figcaption></figure>'
            for m in e.maps)
        score = rec.get("score")
        score_text = f"score {float(score):.3f}" if score not in (None, "") else ""
        cards.append(f'<div class="card">{thumb}<div><div class="caption">{html.escape(str(rec.get("caption", "")))}'
                     f'</div><div class="score">{score_text}</div><div class="path">{src}</div>'
                     + (f'<div class="maps">{figures}</div>' if figures else "") + "</div></div>")
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f'<div class="summary">{len(entries)} images, {failed} failed</div>\n' + "\n".join(cards)
            + "\n</body></html>\n")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _rel(p: Path, base: Path) -> str:
    return Path(os.path.relpath(Path(p).resolve(), base)).as_posix()


def _word_of(p: Path) -> str:
    """``03_red.png`` -> ``red``."""
    return Path(p).stem.split("_", 1)[-1]
