"""Image loading and the train/eval transform presets of the image front-end.

- :func:`load_image` ``(path) -> PIL.Image`` in RGB, whatever the file holds: grayscale, CMYK,
  palette, alpha (composited on white), 16-bit PNG, animated GIF (first frame), EXIF rotation.
  Unreadable, corrupt or truncated files raise :class:`~s2s_media.errors.ImageError` with one
  line naming the file; images over ``max_pixels`` are decoded downscaled (JPEG draft mode)
  or refused with a clear error, before any large buffer is allocated.
- :func:`eval_transform` ``(cfg)`` -> ``(image: PIL) -> pixels (3, size, size) float``, normalised:
  shorter side resized to ``size``, centre crop.
- :func:`train_transform` ``(cfg)`` -> ``(image, captions) -> (pixels, captions)``: a *joint*
  transform, because a horizontal flip must swap ``left`` and ``right`` in the captions.

Both presets are built from :class:`ImageConfig`, the ``data.image`` block of the YAML config,
with ``torchvision.transforms.v2``. Randomness comes from torch's global generator: the dataset
seeds it per item inside :func:`torch.random.fork_rng`, so augmentation is reproducible.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from s2s_media.errors import ImageError
from s2s_media.frontend.vision_config import DEFAULT_MAX_PIXELS, IMAGENET_MEAN, IMAGENET_STD, ImageConfig  # noqa: F401
from s2s_media.text.mirror import mirror_caption

# --------------------------------------------------------------------------- loading
def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:160] if text else type(e).__name__


def _to_8bit(im: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer / float grayscale -> 8-bit ``L`` (scaled, not clipped)."""
    a = np.asarray(im)
    if im.mode.startswith("I;16") or (im.mode == "I" and a.max(initial=0) > 255):
        a = (a.astype(np.uint32) >> 8) if a.max(initial=0) <= 65535 else a.astype(np.float64) / a.max() * 255
    elif im.mode == "F":
        lo, hi = float(a.min(initial=0.0)), float(a.max(initial=1.0))
        a = (a - lo) / max(hi - lo, 1e-12) * 255
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; transparency is composited on white."""
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        im = _to_8bit(im)
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read ``path`` into a fully loaded RGB :class:`PIL.Image.Image` (first frame of an animation).

    An image of more than ``max_pixels`` pixels is decoded at a reduced scale when the format
    allows it (JPEG); otherwise :class:`ImageError` says so. Missing, non-image, corrupt and
    truncated files raise :class:`ImageError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: image file not found" if not path.exists() else f"{path}: not a file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (or a format Pillow cannot read)") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: refused as a decompression bomb ({_first_line(e)})") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot open image ({_first_line(e)})") from None
    try:
        with im:
            w, h = im.size
            if w * h > max_pixels:
                if im.format == "JPEG":   # decode at 1/2, 1/4 or 1/8 scale (DCT scaling): the largest that fits
                    s = next((s for s in (2, 4, 8) if math.ceil(w / s) * math.ceil(h / s) <= max_pixels), 8)
                    im.draft("RGB", (math.ceil(w / s), math.ceil(h / s)))
                if im.size[0] * im.size[1] > max_pixels:
                    raise ImageError(f"{path}: {w}x{h} = {w * h} pixels is over the decode limit of {max_pixels} "
                                     "(data.image.max_pixels); downscale the file or raise the limit")
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)
            im.load()
            im = ImageOps.exif_transpose(im) or im
            out = _to_rgb(im)
            out.load()
            return out
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as e:   # corrupt, truncated, odd modes
        raise ImageError(f"{path}: corrupt or truncated image ({_first_line(e)})") from None


# --------------------------------------------------------------------------- presets
def _to_tensor(cfg: ImageConfig) -> list:
    from torchvision.transforms import v2   # torchvision loads slowly; only image pipelines need it
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(cfg.mean, cfg.std)]


class EvalTransform:
    """``(image: PIL RGB) -> pixels (3, size, size)`` float32, normalised: resize the shorter side to
    ``size`` (antialiased), centre crop."""

    def __init__(self, cfg: ImageConfig):
        self.cfg = cfg
        from torchvision.transforms import v2
        self.pipeline = v2.Compose([v2.Resize(cfg.size, antialias=True), v2.CenterCrop(cfg.size), *_to_tensor(cfg)])

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.pipeline(image)


class TrainTransform:
    """``(image: PIL RGB, captions: list[str]) -> (pixels (3, size, size), captions)``.

    Random resized crop (``crop_scale``), colour jitter without hue, and a horizontal flip with
    probability ``hflip`` that also mirrors the captions (:func:`s2s_media.text.mirror.mirror_caption`).
    """

    def __init__(self, cfg: ImageConfig):
        from torchvision.transforms import v2
        self.cfg = cfg
        if list(cfg.crop_scale) == [1.0, 1.0]:
            geometry = [v2.Resize(cfg.size, antialias=True), v2.CenterCrop(cfg.size)]
        else:
            geometry = [v2.RandomResizedCrop(cfg.size, scale=tuple(cfg.crop_scale), antialias=True)]
        j = cfg.color_jitter
        colour = [v2.ColorJitter(brightness=j, contrast=j, saturation=j)] if j > 0 else []
        self.pipeline = v2.Compose([*geometry, *colour, *_to_tensor(cfg)])

    def __call__(self, image: Image.Image, captions: list[str]) -> tuple[torch.Tensor, list[str]]:
        pixels = self.pipeline(image)
        if self.cfg.hflip > 0 and float(torch.rand(())) < self.cfg.hflip:
            pixels = pixels.flip(-1)
            captions = [mirror_caption(c) for c in captions]
        return pixels, captions


def train_transform(cfg: ImageConfig) -> TrainTransform:
    """The training preset of ``cfg`` (a joint image + captions transform)."""
    return TrainTransform(cfg)


def eval_transform(cfg: ImageConfig) -> EvalTransform:
    """The evaluation preset of ``cfg`` (deterministic)."""
    return EvalTransform(cfg)


def denormalize(pixels: torch.Tensor, cfg: ImageConfig) -> torch.Tensor:
    """Undo the normalisation: ``(…, 3, H, W)`` -> the same in [0, 1] (for plots and attention overlays)."""
    mean = torch.tensor(cfg.mean, dtype=pixels.dtype, device=pixels.device).view(3, 1, 1)
    std = torch.tensor(cfg.std, dtype=pixels.dtype, device=pixels.device).view(3, 1, 1)
    return (pixels * std + mean).clamp(0, 1)
