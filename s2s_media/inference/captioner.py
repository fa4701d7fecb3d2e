"""Batch image captioning: image files and folders -> one caption record per image.

The flow mirrors :mod:`s2s_media.inference.transcriber`, one responsibility per step:

1. :func:`discover_images` turns the command-line paths into a sorted list of
   :class:`~s2s_media.inference.transcriber.Item`: image files, the images of folders (``recursive``
   descends). A missing path, a folder without images or a file that is not an image by its
   extension becomes an item carrying its error, so it gets an error record in order.
2. :meth:`Captioner.prepare` (in ``workers`` threads) reads an image with
   :func:`s2s_media.frontend.vision.load_image` (grayscale, CMYK, palette, alpha, 16-bit and animated
   files are converted to RGB, very large ones decoded downscaled or refused; corrupt,
   truncated and non-image files raise a one-line :class:`~s2s_media.errors.ImageError`) and
   applies the model's evaluation preset (:func:`s2s_media.frontend.vision.eval_transform`: shorter side
   resized to ``data.image.size``, centre crop, normalised).
3. Prepared images are decoded ``batch_size`` at a time: one image-encoder pass
   (``memory (B, h*w, d)``), then the attention beam search of
   :mod:`s2s_media.decoding.beam_search` from the ``<caption>`` task prefix.
4. Records come out in input order: ``{"path", "caption", "score"}``, where ``score`` is the
   length-normalised log-probability the beam ranks by (``log p(caption + eos) / (tokens + 1)``
   with the model's ``decode.length_penalty`` of 1); a failure is ``{"path", "error"}``.

Attention maps (``attention=True``). The beam search keeps, for every token of the best
caption, the decoder's cross-attention over the ``h x w`` grid of the image encoder (the
average over heads of the last decoder layer, as the decoder reports it). Tokens are grouped
into words (SentencePiece pieces by their ``▁``; characters by the space unit) and a word's map
is the mean of its tokens' maps, so :class:`AttentionMaps` holds ``weights (n_words, h, w)``;
``view`` is the image exactly as the encoder saw it (the centre crop, de-normalised), which is
what the grid covers. :mod:`s2s_media.inference.report` draws them.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from s2s_media.decoding.timing import word_spans
from s2s_media.errors import ImageError, UserError
from s2s_media.frontend.vision import denormalize, eval_transform, load_image
from s2s_media.inference.checkpoint import LoadedModel
from s2s_media.inference.inputs import Item
from s2s_media.inference.pipeline import Searcher
from s2s_media.parallel import ordered_map


# --------------------------------------------------------------------------- options
@dataclass(frozen=True)
class CaptionOptions:
    beam: int | None = None             # beam size; None = the model's decode.beam; 1 = greedy
    max_len: int | None = None          # most tokens in a caption; None = the model's decode.caption_max_len
    batch_size: int = 16                # images per encoder pass and beam search
    workers: int = 1                    # threads reading and transforming images (0 = the main thread)
    attention: bool = False             # keep per-word attention maps (AttentionMaps) for each image


# --------------------------------------------------------------------------- attention maps
@dataclass
class AttentionMaps:
    """Where the decoder looked for each word of a caption.

    words: the caption's words. weights: ``(n_words, h, w)`` float32, each word's mean
    cross-attention over its tokens on the encoder grid (rows sum to about 1 over ``h*w``).
    view: the RGB image the encoder saw (centre crop at the model's input size).
    """

    words: list[str]
    weights: np.ndarray
    view: Image.Image


# --------------------------------------------------------------------------- reading
def read_image(item: Item, max_pixels: int) -> Image.Image | str:
    """An item's RGB image (see :func:`load_image`), or a one-line error naming the file (never raises)."""
    if item.error:
        return item.error
    try:
        return load_image(item.path, max_pixels=max_pixels)
    except UserError as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 - one bad file never stops the run
        return f"{item.path}: cannot read image ({type(e).__name__}: {e})"


# --------------------------------------------------------------------------- captioner
@dataclass
class Prepared:
    """An item read and transformed: ``pixels (3, S, S)``; ``error`` when it could not be read."""

    item: Item
    pixels: torch.Tensor | None = None
    error: str | None = None


@dataclass
class Captioned:
    """One decoded image: its record, plus its attention maps when they were asked for."""

    item: Item
    record: dict
    maps: AttentionMaps | None = None


class Captioner:
    """Turns images (items, paths or PIL images) into caption records with one model and one set of options."""

    def __init__(self, loaded: LoadedModel, device: torch.device | str = "cpu",
                 options: CaptionOptions = CaptionOptions()):
        if "image" not in loaded.model.encoders:
            raise UserError("this model cannot caption images: it was trained for "
                            f"{', '.join(loaded.config.model.modalities)} only (model.modalities); "
                            "pass a captioning checkpoint")
        self.loaded, self.options = loaded, options
        self.device = torch.device(device)
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        self.searcher = Searcher(loaded, loaded.config.decode.override(beam=options.beam, caption_max_len=options.max_len),
                                 task="caption")
        dec = self.searcher.decode
        self.beam, self.max_len, self.length_penalty = dec.beam, dec.caption_max_len, dec.length_penalty
        if self.max_len < 1:
            raise UserError(f"max_len {self.max_len}: a caption needs at least one token")
        if options.batch_size < 1:
            raise UserError(f"--batch-size {options.batch_size}: must be at least 1")
        self.image_cfg = loaded.config.data.image
        self.transform = eval_transform(self.image_cfg)
        self.prefix = self.searcher.prefix

    # ---- preparing
    def prepare_image(self, item: Item, image: Image.Image) -> Prepared:
        """An RGB PIL image -> its normalised ``pixels (3, S, S)``."""
        return Prepared(item, self.transform(image))

    def prepare_read(self, item: Item, image: Image.Image | str) -> Prepared:
        """What :func:`read_image` gave for ``item`` -> its pixels, or the item's error."""
        return Prepared(item, error=image) if isinstance(image, str) else self.prepare_image(item, image)

    def prepare(self, item: Item) -> Prepared:
        """Read and transform one item; a failure is returned in ``error``, never raised."""
        return self.prepare_read(item, read_image(item, self.image_cfg.max_pixels))

    def _prepared(self, items: Iterable[Item]) -> Iterator[Prepared]:
        """:meth:`prepare` over ``items`` in order, ``workers`` threads reading up to 2 x workers + a batch ahead."""
        workers = self.options.workers
        return ordered_map(self.prepare, items, workers, 2 * workers + self.options.batch_size, "s2s-image")

    # ---- decoding
    @torch.inference_mode()
    def decode(self, pixels: torch.Tensor) -> list[tuple[list[int], float, torch.Tensor | None]]:
        """``pixels (B, 3, S, S)`` -> per image ``(tokens, score, attention (U, h, w) or None)``."""
        pixels = pixels.to(self.device)
        memory, mask = self.searcher.encode(pixels)
        h, w = self.model.encoders["image"].grid_size(pixels.size(2), pixels.size(3))
        hyps = self.searcher.caption(memory, mask, attention=self.options.attention)
        out = []
        for nbest in hyps:
            if not nbest:
                out.append(([], float("-inf"), None))
                continue
            best = nbest[0]
            att = best.attention.float().reshape(len(best.tokens), h, w) if best.attention is not None else None
            out.append((best.tokens, best.score, att))
        return out

    def _decode_safely(self, pixels: torch.Tensor) -> list:
        """:meth:`decode`, retried one image at a time when a batch fails, so one failure costs one image."""
        try:
            return self.decode(pixels)
        except Exception as e:  # noqa: BLE001 - e.g. out of memory on a GPU
            if pixels.size(0) == 1:
                return [e]
            return [r for i in range(pixels.size(0)) for r in self._decode_safely(pixels[i:i + 1])]

    def _maps(self, tokens: list[int], att: torch.Tensor, pixels: torch.Tensor) -> AttentionMaps:
        spans = word_spans(self.tokenizer, tokens)
        weights = np.stack([att[ks].mean(0).numpy() for _, ks in spans]) if spans \
            else np.zeros((0, *att.shape[1:]), np.float32)
        view = denormalize(pixels.float().cpu(), self.image_cfg).mul(255).round().byte().permute(1, 2, 0).numpy()
        return AttentionMaps([w for w, _ in spans], weights.astype(np.float32), Image.fromarray(view, "RGB"))

    def _finish(self, preps: list[Prepared]) -> list[Captioned]:
        """Decode the good ones of ``preps`` together; results in the same order."""
        good = [p for p in preps if p.error is None]
        results = self._decode_safely(torch.stack([p.pixels for p in good])) if good else []
        by_id = {id(p): r for p, r in zip(good, results)}
        out = []
        for p in preps:
            head = {"path": p.item.path, **({"id": p.item.id} if p.item.id is not None else {})}
            r = by_id.get(id(p))
            if p.error is not None:
                out.append(Captioned(p.item, {**head, "error": p.error}))
            elif isinstance(r, Exception):
                reason = (str(r).strip().splitlines() or [""])[0][:200]
                out.append(Captioned(p.item, {**head, "error": f"{p.item.path}: captioning failed "
                                                                 f"({type(r).__name__}: {reason})"}))
            else:
                tokens, score, att = r
                maps = self._maps(tokens, att, p.pixels) if att is not None else None
                record = {**head, "caption": self.tokenizer.decode(tokens), "score": round(float(score), 4)}
                out.append(Captioned(p.item, record, maps))
            p.pixels = None  # free the tensor as soon as it is decoded
        return out

    # ---- driving
    def run(self, items: Iterable[Item]) -> Iterator[Captioned]:
        """Caption items; yields a :class:`Captioned` per item, in input order, batch by batch."""
        return self.run_prepared(self._prepared(items))

    def run_prepared(self, preps: Iterable[Prepared]) -> Iterator[Captioned]:
        """:meth:`run` for items prepared already (by :meth:`prepare` or :meth:`prepare_read`)."""
        pending: list[Prepared] = []
        n_good = 0
        for prep in preps:
            pending.append(prep)
            n_good += prep.error is None
            if n_good >= self.options.batch_size:
                yield from self._finish(pending)
                pending, n_good = [], 0
        if pending:
            yield from self._finish(pending)

    def caption_one(self, image: Image.Image | str | Path, path: str | None = None) -> Captioned:
        """Caption one path or RGB PIL image; an unreadable file raises :class:`ImageError`."""
        if isinstance(image, (str, Path)):
            prep = self.prepare(Item(str(image), Path(image).stem))
            if prep.error:
                raise ImageError(prep.error)
        else:
            prep = self.prepare_image(Item(path or "", "image"), image.convert("RGB"))
        done = self._finish([prep])[0]
        if "error" in done.record:
            raise UserError(done.record["error"])
        if not isinstance(image, (str, Path)):
            done.record["path"] = path
        return done


def as_pil(image) -> Image.Image | str | Path:
    """What :meth:`Captioner.caption_one` takes: paths and PIL images as they are; an array
    ``(H, W)`` or ``(H, W, 3|4)`` (uint8, or float in [0, 1]) or a tensor ``(3, H, W)`` in [0, 1] as an image."""
    if isinstance(image, (str, Path, Image.Image)):
        return image
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().float()
        if image.dim() != 3 or image.size(0) not in (1, 3):
            raise UserError(f"caption: a tensor image must be (3, H, W) in [0, 1], got {tuple(image.shape)}")
        image = image.permute(1, 2, 0).squeeze(-1).numpy()
    a = np.asarray(image)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or a.size == 0:
        raise UserError(f"caption: an array image must be (H, W) or (H, W, 3|4), got {a.shape}")
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float64), 0, 1) * 255).round().astype(np.uint8)
    return Image.fromarray(a).convert("RGB")


def replace_options(options: CaptionOptions | None, **opts) -> CaptionOptions:
    """``options`` (default :class:`CaptionOptions`) with ``opts`` fields replaced; TypeError names the fields."""
    try:
        return dataclasses.replace(options or CaptionOptions(), **opts)
    except TypeError as e:
        raise TypeError(f"{e}; options are {[f.name for f in dataclasses.fields(CaptionOptions)]}") from None
