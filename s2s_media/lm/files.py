"""Language model files and entries, checked against the model's tokenizer.

An LM file is a plain dict (``torch.load(weights_only=True)``): ``version``, ``kind``,
``lm`` (:meth:`NgramLM.to_dict`), ``tokenizer`` (the dict of the tokenizer it was trained with)
and ``meta``. ``s2s-media export --lm`` stores its ``lm`` entry inside a model checkpoint, where
:func:`lm_from_dict` reads it back.
"""
from __future__ import annotations

from pathlib import Path

import torch

from s2s_media.checkpoint_io import save_checkpoint
from s2s_media.errors import UserError
from s2s_media.lm.ngram import NgramLM
from s2s_media.text.tokenizer import Tokenizer

LM_FILE_VERSION = 1


def lm_from_dict(d: dict, tokenizer: Tokenizer, where: str) -> NgramLM:
    """The n-gram of a checkpoint's or LM file's ``lm`` entry, checked against the model's tokenizer."""
    try:
        lm = NgramLM.from_dict(d)
    except (KeyError, ValueError, TypeError) as e:
        raise UserError(f"{where}: language model entry is unusable ({e})") from None
    if lm.vocab_size != tokenizer.vocab_size:
        raise UserError(f"{where}: the language model covers {lm.vocab_size} tokens but the model's tokenizer "
                        f"has {tokenizer.vocab_size}; train the LM with this model's tokenizer (s2s-media lm)")
    return lm


def save_lm_file(path: str | Path, lm: NgramLM, tokenizer: Tokenizer, meta: dict) -> Path:
    return save_checkpoint({"kind": "ngram", "lm": lm.to_dict(), "tokenizer": tokenizer.to_dict(), "meta": meta},
                           path)


def load_lm_file(path: str | Path) -> dict:
    """The dict of an LM file written by :func:`save_lm_file` (checked, not yet built)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: language model file not found (make one with s2s-media lm)")
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt/foreign files get one clear line
        raise UserError(f"{path}: not a readable language model file ({type(e).__name__})") from None
    if not isinstance(d, dict) or d.get("kind") != "ngram" or "lm" not in d:
        raise UserError(f"{path}: not an s2s-media language model file (make one with s2s-media lm)")
    if d.get("version", 0) > LM_FILE_VERSION:
        raise UserError(f"{path}: language model format {d['version']} is newer than this s2s-media; upgrade it")
    return d


def lm_for_model(path: str | Path, tokenizer: Tokenizer) -> NgramLM:
    """The n-gram of LM file ``path``, checked to be over ``tokenizer``'s units."""
    d = load_lm_file(path)
    if d.get("tokenizer") != tokenizer.to_dict():
        raise UserError(f"{path}: trained on another tokenizer than the model's; retrain it with "
                        "s2s-media lm --tokenizer <the model's checkpoint>")
    return lm_from_dict(d["lm"], tokenizer, str(path))
