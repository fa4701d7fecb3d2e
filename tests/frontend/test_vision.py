"""Image loading (every mode and failure a user meets) and the train/eval presets."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from s2s_media.errors import ImageError, UserError
from s2s_media.frontend.vision import ImageConfig, denormalize, eval_transform, load_image, train_transform
from s2s_media.text.mirror import mirror_caption

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models run fastest on one thread


def save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def test_modes_become_rgb(tmp_path):
    gray = load_image(save(Image.new("L", (8, 6), 100), tmp_path / "g.png"))
    assert gray.mode == "RGB" and gray.size == (8, 6) and gray.getpixel((0, 0)) == (100, 100, 100)
    cmyk = load_image(save(Image.new("CMYK", (8, 6), (0, 255, 255, 0)), tmp_path / "c.jpg", quality=95))
    r, g, b = cmyk.getpixel((3, 3))
    assert cmyk.mode == "RGB" and r > 200 and g < 60 and b < 60          # CMYK (0,255,255,0) is red
    rgba = Image.new("RGBA", (8, 6), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    out = load_image(save(rgba, tmp_path / "a.png"))
    assert out.getpixel((5, 5)) == (255, 255, 255) and out.getpixel((0, 0)) == (0, 0, 255)   # on white
    pal = Image.new("P", (8, 6), 1)
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    pal.info["transparency"] = 1
    assert load_image(save(pal, tmp_path / "p.png", transparency=1)).getpixel((2, 2)) == (255, 255, 255)
    la = Image.new("LA", (4, 4), (0, 128))
    assert all(abs(v - 127) <= 1 for v in load_image(save(la, tmp_path / "la.png")).getpixel((0, 0)))
    bw = load_image(save(Image.new("1", (4, 4), 1), tmp_path / "b.bmp"))
    assert bw.getpixel((0, 0)) == (255, 255, 255)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    a = np.full((6, 8), 40000, dtype=np.uint16)
    a[0, 0] = 65535
    path = tmp_path / "deep.png"
    Image.fromarray(a).save(path)
    out = load_image(path)
    assert out.getpixel((3, 3)) == (40000 >> 8,) * 3 and out.getpixel((0, 0)) == (255, 255, 255)


def test_animated_gif_gives_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    r, g, b = load_image(path).getpixel((4, 4))
    assert r > 200 and b < 50


def test_exif_rotation_is_applied(tmp_path):
    img = Image.new("RGB", (10, 4), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6                                   # rotate 90 degrees on display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif)
    assert load_image(path).size == (4, 10)


@pytest.mark.parametrize("content, fragment", [
    (b"", "not an image"),
    (b"hello, I am text", "not an image"),
    (None, "corrupt or truncated"),                    # a PNG cut in half
])
def test_bad_files_raise_one_line_image_errors(tmp_path, content, fragment):
    path = tmp_path / "bad.png"
    if content is None:
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
        content = buf.getvalue()[: len(buf.getvalue()) // 2]
    path.write_bytes(content)
    with pytest.raises(ImageError) as e:
        load_image(path)
    assert isinstance(e.value, UserError) and str(path) in str(e.value) and fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="image file not found"):
        load_image(tmp_path / "nope.jpg")


def test_large_images_are_downscaled_when_jpeg_and_refused_otherwise(tmp_path):
    big = Image.new("RGB", (800, 600), (10, 200, 10))
    jpg = save(big, tmp_path / "big.jpg")
    small = load_image(jpg, max_pixels=100 * 100)
    assert small.size[0] * small.size[1] <= 100 * 100 and small.size[0] >= 100      # JPEG draft: 1/8 scale
    with pytest.raises(ImageError, match="over the decode limit of 10000"):
        load_image(save(big, tmp_path / "big.png"), max_pixels=100 * 100)
    assert load_image(jpg).size == (800, 600)


def test_eval_preset_resizes_crops_and_normalises(tmp_path):
    cfg = ImageConfig(size=32)
    pixels = eval_transform(cfg)(Image.new("RGB", (64, 40), (255, 255, 255)))
    assert pixels.shape == (3, 32, 32) and pixels.dtype == torch.float32
    expected = (1 - torch.tensor(cfg.mean)) / torch.tensor(cfg.std)
    torch.testing.assert_close(pixels[:, 5, 5], expected)


def test_mirror_caption_swaps_whole_words():
    assert mirror_caption("a dog left of a cat on the right") == "a dog right of a cat on the left"
    assert mirror_caption("the leftmost bird, bright light") == "the rightmost bird, bright light"


def test_flip_mirrors_image_and_captions_together():
    img = Image.new("RGB", (32, 32), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 8, 32))                       # a white band on the left
    caps = ["a white band on the left", "black on the right"]
    flip = train_transform(ImageConfig(size=32, hflip=1.0))
    pixels, out = flip(img, caps)
    assert out == ["a white band on the right", "black on the left"]
    assert pixels[0, 16, -2] > pixels[0, 16, 1]                      # the band is now on the right
    same, kept = train_transform(ImageConfig(size=32, hflip=0.0))(img, caps)
    assert kept == caps and same[0, 16, 1] > same[0, 16, -2]


def _halves(size: int = 48) -> Image.Image:
    """Red on the left, blue on the right: a flip and a crop both show in the pixels."""
    a = np.zeros((size, size, 3), np.uint8)
    a[:, : size // 2] = (220, 20, 20)
    a[:, size // 2:] = (20, 20, 220)
    return Image.fromarray(a)


def test_train_preset_flips_pixels_and_captions_together():
    image, caps = _halves(), ["a red square left of a blue one"]
    flat = ImageConfig(size=24, crop_scale=[1.0, 1.0], color_jitter=0.0, hflip=1.0)
    pixels, flipped = train_transform(flat)(image, caps)
    assert torch.allclose(pixels, eval_transform(flat)(image).flip(-1))
    assert flipped == ["a red square right of a blue one"]
    kept, same = train_transform(ImageConfig(size=24, crop_scale=[1.0, 1.0], color_jitter=0.0, hflip=0.0))(image, caps)
    assert torch.allclose(kept, eval_transform(flat)(image)) and same == caps


def test_train_preset_random_crop_and_jitter_shapes():
    image = _halves()
    cfg = ImageConfig(size=24, crop_scale=[0.2, 0.5], color_jitter=0.3, hflip=0.0)
    t = train_transform(cfg)
    torch.manual_seed(0)
    first = [t(image, ["x"])[0] for _ in range(4)]
    torch.manual_seed(0)
    again = [t(image, ["x"])[0] for _ in range(4)]
    assert all(p.shape == (3, 24, 24) and p.dtype == torch.float32 for p in first)
    assert all(torch.equal(a, b) for a, b in zip(first, again))               # seeded: reproducible
    assert not all(torch.allclose(first[0], p) for p in first[1:])            # random: crops and colours vary
    assert not any(torch.allclose(p, eval_transform(cfg)(image)) for p in first)
    # a crop of at most half the area shows one colour more than the other, unlike the centred view
    red_share = [float((denormalize(p, cfg)[0] > denormalize(p, cfg)[2]).float().mean()) for p in first]
    assert any(abs(s - 0.5) > 0.1 for s in red_share), red_share


def test_config_checks():
    for bad in (dict(size=8), dict(crop_scale=[0.5]), dict(hflip=2.0), dict(std=[1, 0, 1])):
        with pytest.raises(ValueError):
            ImageConfig(**bad)
