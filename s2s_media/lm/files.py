"""Language model files and entries, checked against the model's tokenizer.

An LM file (``LM.pt``, from ``s2s-media lm``) is a plain dict (``torch.load(weights_only=True)``): ``version``,
``kind``, ``lm`` (:meth:`NgramLM.to_dict`), ``tokenizer`` (the dict of the tokenizer it was trained with)
and ``meta``. ``s2s-media export --lm`` stores its ``lm`` entry inside a model checkpoint, where
:func:`lm_from_dict` reads it back.

``LM.npz`` is the same n-gram in numpy's format, what an ONNX model directory ships (read without torch):
the tables as arrays ``t{k}.{name}`` and a JSON ``header`` (``kind``, ``version``, the n-gram's sizes, the
sha256 of its tokenizer's dict and ``meta``).
"""
from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from s2s_media.errors import UserError
from s2s_media.extras import needs_train
from s2s_media.lm.ngram import NgramLM
from s2s_media.text.tokenizer import Tokenizer

LM_FILE_VERSION = 1
NPZ = ".npz"


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
    from s2s_media.checkpoint_io import save_checkpoint     # torch's format; the train extra writes LM files
    return save_checkpoint({"kind": "ngram", "lm": lm.to_dict(), "tokenizer": tokenizer.to_dict(), "meta": meta},
                           path)


def tokenizer_digest(tokenizer: Tokenizer) -> str:
    """The sha256 of a tokenizer's dict, what ``LM.npz`` records of the tokenizer it was trained with."""
    return hashlib.sha256(repr(sorted(tokenizer.to_dict().items())).encode("utf-8")).hexdigest()


def save_lm_npz(path: str | Path, lm: NgramLM, tokenizer: Tokenizer, meta: dict) -> Path:
    """Write ``lm`` (over ``tokenizer``'s units) as ``LM.npz`` (see the module docstring)."""
    d = lm.to_dict()
    header = {"kind": "ngram", "version": LM_FILE_VERSION, "format": d["format"], "order": d["order"],
              "vocab_size": d["vocab_size"], "bos": d["bos"], "eos": d["eos"], "tables": len(d["tables"]),
              "tokenizer_sha256": tokenizer_digest(tokenizer), "meta": meta}
    arrays = {f"t{k}.{name}": v for k, table in enumerate(d["tables"]) for name, v in table.items()}
    with open(path, "wb") as f:
        np.savez(f, header=np.frombuffer(json.dumps(header).encode("utf-8"), np.uint8), **arrays)
    return Path(path)


def load_lm_npz(path: Path, tokenizer: Tokenizer) -> NgramLM:
    """The n-gram of ``LM.npz``, checked to be over ``tokenizer``'s units."""
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(z["header"].tobytes().decode("utf-8"))
            tables = [{name: z[f"t{k}.{name}"] for name in ("keys", "gamma", "ptr", "words", "a")}
                      for k in range(header["tables"])]
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
        raise UserError(f"{path}: not a readable language model file ({type(e).__name__}: {e}); write it again "
                        "(s2s-media export --format onnx)") from None
    if header.get("kind") != "ngram" or header.get("version", 0) > LM_FILE_VERSION:
        raise UserError(f"{path}: not an s2s-media language model of a version this s2s-media reads; write it "
                        "again with this version (s2s-media export --format onnx)")
    if header.get("tokenizer_sha256") != tokenizer_digest(tokenizer):
        raise UserError(f"{path}: trained on another tokenizer than the model's; export the model with its own LM "
                        "(s2s-media export --format onnx --lm LM.pt, the LM trained with this model's tokenizer)")
    d = {k: header[k] for k in ("format", "order", "vocab_size", "bos", "eos")}
    return lm_from_dict({**d, "tables": tables}, tokenizer, str(path))


def load_lm_file(path: str | Path) -> dict:
    """The dict of an LM file written by :func:`save_lm_file` (checked, not yet built)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: language model file not found (make one with s2s-media lm)")
    try:
        import torch
    except ImportError:
        raise needs_train(f"{path} (a torch LM file)") from None
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
    """The n-gram of LM file ``path`` (``LM.pt`` or ``LM.npz``), checked to be over ``tokenizer``'s units."""
    if Path(path).suffix == NPZ:
        if not Path(path).is_file():
            raise UserError(f"{path}: language model file not found (make one with s2s-media lm)")
        return load_lm_npz(Path(path), tokenizer)
    d = load_lm_file(path)
    if d.get("tokenizer") != tokenizer.to_dict():
        raise UserError(f"{path}: trained on another tokenizer than the model's; retrain it with "
                        "s2s-media lm --tokenizer <the model's checkpoint>")
    return lm_from_dict(d["lm"], tokenizer, str(path))
