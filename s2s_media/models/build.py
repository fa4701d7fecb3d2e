"""Build a model from a Config, or rebuild model + tokenizer + config from a checkpoint dict."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from s2s_media.config import Config, config_from_dict
from s2s_media.errors import UserError
from s2s_media.models.seq2seq import Seq2SeqModel
from s2s_media.text.tokenizer import Tokenizer, tokenizer_from_dict


@dataclass
class LoadedModel:
    model: Seq2SeqModel
    tokenizer: Tokenizer
    config: Config
    meta: dict


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
    return LoadedModel(model, tokenizer, cfg, ckpt.get("meta", {}))


def load_model_file(path, quantize: bool = True) -> LoadedModel:
    """The model of any checkpoint file: from train, average or export. Exported checkpoints are
    restored (int8/fp16 storage back to float; dynamic int8 Linear layers when the file asks for it
    and ``quantize``, which only the CPU runs)."""
    from s2s_media.training.checkpoint import load_checkpoint
    ckpt = load_checkpoint(path)
    if "export" in ckpt:
        from s2s_media.export import restore_exported
        return restore_exported(ckpt, str(path), quantize=quantize)
    return model_from_checkpoint(ckpt, str(path))


def param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
