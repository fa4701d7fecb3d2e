"""Export a checkpoint for inference: smaller storage, optional dynamic int8 on the CPU.

An exported checkpoint is still a plain dict (``torch.load(weights_only=True)``): the usual
``config``, ``tokenizer``, ``cmvn`` and ``meta``, the weights in a compact form, and an
``export`` entry saying how to restore them:

- ``weights: "int8"``: every float matrix (2-D, at least ``MIN_QUANT`` elements) is stored as
  int8 with one float32 scale per row (symmetric), in ``model`` and ``scales``; the rest (convolutions,
  biases, norms, CMVN) in float16, float32 for small tensors. About 4x smaller than float32.
- ``weights: "float16"``: every large float tensor in float16; about 2x smaller.
- ``quantize: "dynamic_int8"`` (or None): after restoring float32 weights,
  :func:`s2s_media.inference.checkpoint.load_model_file` runs ``torch.ao.quantization.quantize_dynamic`` on the model's
  ``nn.Linear`` layers (int8 matmuls, activations quantized on the fly). CPU only; on a GPU the
  float32 model runs.

Restoring never needs the original checkpoint. Measure before adopting: dynamic int8 speeds up
the Linear layers (most of a Conformer's time at small batch) and costs a little accuracy.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from s2s_media.checkpoint_io import load_checkpoint, save_checkpoint
from s2s_media.config import apply_overrides
from s2s_media.errors import UserError
from s2s_media.inference.checkpoint import WEIGHT_FORMATS, model_from_checkpoint
from s2s_media.lm.files import lm_for_model

MIN_QUANT = 4096      # smaller matrices are not worth an int8 copy
SMALL = 1024          # tensors this small stay float32


def _compress(state: dict, weights: str) -> tuple[dict, dict]:
    """state_dict -> (compressed state_dict, per-row scales of the int8 matrices)."""
    out, scales = {}, {}
    for k, v in state.items():
        if not v.is_floating_point() or v.numel() < SMALL:
            out[k] = v
        elif weights == "int8" and v.dim() == 2 and v.numel() >= MIN_QUANT:
            scale = v.abs().amax(dim=1).clamp_min(1e-12) / 127.0
            out[k] = torch.round(v / scale[:, None]).clamp(-127, 127).to(torch.int8)
            scales[k] = scale.float()
        else:
            out[k] = v.half()
    return out, scales


def export_checkpoint(src: str | Path, dst: str | Path, weights: str = "int8", quantize: bool = True,
                      decode: list[str] = (), lm: str | Path | None = None) -> dict:
    """Write an exported copy of checkpoint ``src`` to ``dst``; returns a summary with both sizes.

    decode: ``decode.KEY=VALUE`` overrides of the decoding defaults stored with the model (e.g.
    ``decode.beam=4``): what ``transcribe``, ``evaluate`` and ``serve`` use unless told otherwise.
    lm: an LM file (``s2s-media lm``) to store with the model; it is then fused into its CTC searches.
    """
    if weights not in WEIGHT_FORMATS:
        raise UserError(f"--weights {weights}: choose from {', '.join(WEIGHT_FORMATS)}")
    ckpt = load_checkpoint(src)
    if "export" in ckpt:
        raise UserError(f"{src}: is already an exported checkpoint; export the original training checkpoint")
    for item in decode:
        if not item.startswith("decode."):
            raise UserError(f"--set {item}: export only changes decoding defaults (decode.KEY=VALUE, "
                            "e.g. decode.beam=4)")
    if decode:
        ckpt["config"] = apply_overrides(copy.deepcopy(ckpt["config"]), list(decode))
    loaded = model_from_checkpoint(ckpt, str(src))  # fail now, with the usual message, if it does not load
    if lm is not None:
        ckpt["lm"] = lm_for_model(lm, loaded.tokenizer).to_dict()
    state, scales = _compress(ckpt["model"], weights)
    keep = {k: ckpt[k] for k in ("version", "config", "tokenizer", "cmvn", "meta", "lm") if k in ckpt}
    out = {**keep, "model": state, "scales": scales,
           "export": {"weights": weights, "quantize": "dynamic_int8" if quantize else None}}
    save_checkpoint(out, dst)
    return {"src": str(src), "dst": str(dst), "src_bytes": Path(src).stat().st_size,
            "dst_bytes": Path(dst).stat().st_size, "lm": "lm" in out, **out["export"]}
