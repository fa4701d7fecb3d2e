"""The one loader: a checkpoint file -> model, tokenizer, config and language model, ready to decode.

Every user-facing path loads through :func:`load_model_file`, one way down:

1. read the plain dict (:func:`s2s_media.checkpoint_io.load_checkpoint`: ``weights_only``, format version);
2. an exported checkpoint (``s2s-media export``) has its weights restored to float32 first, and
   its ``nn.Linear`` layers dynamically quantised to int8 when the file asks for it and ``quantize``;
3. the model is built from the stored config and tokenizer, and its weights loaded;
4. a language model attaches last: the one stored in the checkpoint, or an LM file given in its place;
   so does a word-confidence calibration stored beside the file
   (:class:`~s2s_media.decoding.timing.ConfidenceCalibration`, ``MODEL.calibration.json``).

Without a path, :func:`~s2s_media.inference.loaded.bundled_model_path` names the bundled default of a task
(``s2s_media/assets/asr_default.pt``, ``caption_default.pt``).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch.ao.quantization import quantize_dynamic

from s2s_media.checkpoint_io import float_state, load_checkpoint
from s2s_media.config import config_from_dict
from s2s_media.decoding.timing import ConfidenceCalibration
from s2s_media.errors import UserError
from s2s_media.inference.loaded import BUNDLED, TASKS, LoadedModel, bundled_model_path  # noqa: F401 - re-exported
from s2s_media.lm.files import lm_for_model, lm_from_dict
from s2s_media.models.seq2seq import Seq2SeqModel
from s2s_media.text.tokenizer import tokenizer_from_dict

WEIGHT_FORMATS = ("int8", "float16")            # how an exported checkpoint stores its weights


def model_from_checkpoint(ckpt: dict, where: str = "checkpoint") -> LoadedModel:
    """``ckpt`` as returned by :func:`s2s_media.training.checkpoint.load_checkpoint`; model in eval mode."""
    try:
        cfg = config_from_dict(ckpt["config"])
        tokenizer = tokenizer_from_dict(ckpt["tokenizer"])
    except (KeyError, ValueError, UserError) as e:
        raise UserError(f"{where}: config or tokenizer entry is unusable ({e})") from None
    model = Seq2SeqModel(cfg.model, tokenizer.vocab_size)
    try:
        missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    except RuntimeError as e:  # strict=False still raises on shape mismatches
        reason = str(e).splitlines()[1:2] or [str(e)]  # the first "size mismatch for ..." line
        raise UserError(f"{where}: weights do not match the model in its config ({reason[0].strip()})") from None
    if missing or unexpected:
        raise UserError(f"{where}: weights do not match the model in its config "
                        f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.eval()
    lm = lm_from_dict(ckpt["lm"], tokenizer, where) if ckpt.get("lm") is not None else None
    return LoadedModel(model, tokenizer, cfg, ckpt.get("meta", {}), lm)


def load_model_file(path, quantize: bool = True, lm: str | Path | None = None) -> LoadedModel:
    """The model of any checkpoint file: from train, average or export. Exported checkpoints are
    restored (int8/fp16 storage back to float; dynamic int8 Linear layers when the file asks for it
    and ``quantize``, which only the CPU runs). ``lm``: an LM file (``s2s-media lm``) used instead of
    the language model stored in the checkpoint, if any. ONNX model directories load through
    :func:`s2s_media.inference.loader.load_any`."""
    ckpt = load_checkpoint(path)
    loaded = restore_exported(ckpt, str(path), quantize=quantize) if "export" in ckpt \
        else model_from_checkpoint(ckpt, str(path))
    if lm is not None:
        loaded.lm = lm_for_model(lm, loaded.tokenizer)
    loaded.calibration = ConfidenceCalibration.read(path)
    return loaded


def restore_exported(ckpt: dict, where: str, quantize: bool = True) -> LoadedModel:
    """Rebuild a model from an exported checkpoint dict; dynamic int8 when asked by the file and ``quantize``."""
    export = ckpt.get("export") or {}
    if export.get("weights") not in WEIGHT_FORMATS:
        raise UserError(f"{where}: unknown export format {export!r}; re-export it with this s2s-media")
    loaded = model_from_checkpoint({**ckpt, "model": float_state(ckpt)}, where)
    if quantize and export.get("quantize") == "dynamic_int8":
        loaded.model = quantize_linear(loaded.model)
        loaded.batch_dependent = True     # one activation scale per batch: see LoadedModel.batch_dependent
    return loaded


def quantize_linear(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantisation of every ``nn.Linear`` (CPU inference)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        return quantize_dynamic(model.eval(), {torch.nn.Linear}, dtype=torch.qint8)
