"""Build a model from a Config, or rebuild model + tokenizer + config from a checkpoint dict."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from s2s_media.config import Config, DecodeConfig, config_from_dict
from s2s_media.errors import UserError
from s2s_media.lm import LMFusion, NgramLM
from s2s_media.models.seq2seq import Seq2SeqModel
from s2s_media.text.tokenizer import Tokenizer, tokenizer_from_dict


@dataclass
class LoadedModel:
    model: Seq2SeqModel
    tokenizer: Tokenizer
    config: Config
    meta: dict
    lm: NgramLM | None = None       # a language model stored with the checkpoint

    def fusion(self, decode: DecodeConfig) -> LMFusion | None:
        """The language model fused into the CTC searches under ``decode``, or None (none stored, or weight 0)."""
        if self.lm is None or decode.lm_weight == 0:
            return None
        return LMFusion(self.lm, decode.lm_weight, decode.lm_bonus)


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
