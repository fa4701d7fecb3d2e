"""The image front-end's config (the ``data.image`` block), without :mod:`s2s_media.frontend.vision`'s torch
code: the config is read wherever a model's config is, the runtime too."""
from __future__ import annotations

from dataclasses import dataclass, field

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
DEFAULT_MAX_PIXELS = 100_000_000   # decoded pixels; a 10000 x 10000 image is the largest accepted


@dataclass
class ImageConfig:
    size: int = 224                     # side of the square the encoder sees
    crop_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])   # train: RandomResizedCrop area
                                        # range; [1, 1] = no random crop (the eval resize + centre crop)
    hflip: float = 0.0                  # train: probability of a horizontal flip; captions swap left/right
    color_jitter: float = 0.0           # train: brightness/contrast/saturation strength (hue is never
                                        # jittered: captions name colours)
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    max_pixels: int = DEFAULT_MAX_PIXELS   # larger files are decoded downscaled (JPEG) or refused

    def __post_init__(self):
        if self.size < 16:
            raise ValueError(f"size must be >= 16 pixels, got {self.size}")
        lo, hi = (self.crop_scale + [0, 0])[:2]
        if len(self.crop_scale) != 2 or not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must be [low, high] with 0 < low <= high <= 1, got {self.crop_scale}")
        if not 0 <= self.hflip <= 1:
            raise ValueError(f"hflip is a probability in [0, 1], got {self.hflip}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need 3 values each (RGB), std > 0")
        if self.max_pixels < self.size * self.size:
            raise ValueError(f"max_pixels ({self.max_pixels}) is smaller than one {self.size}x{self.size} image")
