"""What a loader returns, whatever runs the model: :class:`LoadedModel` (torch-free), and where the bundled
models are.

:func:`s2s_media.inference.checkpoint.load_model_file` builds one from a checkpoint (torch),
:func:`s2s_media.inference.onnx_model.load_onnx_model` from an ONNX model directory (numpy and onnxruntime).
"""
from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from s2s_media.config import Config, DecodeConfig
from s2s_media.decoding.timing import ConfidenceCalibration
from s2s_media.errors import UserError
from s2s_media.lm import LMFusion, NgramLM
from s2s_media.text.tokenizer import Tokenizer

BUNDLED = {"asr": "assets/asr_default.pt", "caption": "assets/caption_default.pt"}   # inside the package
# the bundled models' ONNX form (scripts/export_bundled_onnx.py makes it from the .pt), for a runtime install
BUNDLED_ONNX = {"asr": "assets/asr_default.onnx"}
TASKS = {"asr": "audio", "caption": "image"}    # task -> the modality it needs


@dataclass
class LoadedModel:
    model: object                   # a Seq2SeqModel (torch) or an OnnxSeq2Seq
    tokenizer: Tokenizer
    config: Config
    meta: dict
    lm: NgramLM | None = None       # a language model stored with the checkpoint
    calibration: ConfidenceCalibration | None = None   # of word confidences, stored beside the checkpoint
    punctuation: Path | None = None  # a punctuation model shipped with the model (an ONNX directory's)
    batch_dependent: bool = False   # a row's result can depend on its batch neighbours (dynamic int8 takes one
                                    # activation scale per batch): the Searcher then decodes rows one at a time
    runtime: str = "torch"          # what runs the model: torch or onnx

    def fusion(self, decode: DecodeConfig) -> LMFusion | None:
        """The language model fused into the CTC searches under ``decode``, or None (none stored, or weight 0)."""
        if self.lm is None or decode.lm_weight == 0:
            return None
        return LMFusion(self.lm, decode.lm_weight, decode.lm_bonus)



@functools.cache
def torch_importable() -> bool:
    """Whether torch can be imported here (the ``train`` extra is installed); torch itself is not imported."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def bundled_model_path(task: str = "asr", runtime: str = "auto") -> Path:
    """The bundled default model of ``task`` (``asr`` or ``caption``); UserError when not installed.

    For ``asr`` the form ``runtime`` runs: the checkpoint (``asr_default.pt``) with ``torch``, and with ``auto``
    when torch is importable; the ONNX directory (``asr_default.onnx/``) with ``onnx``, and with ``auto`` in a
    runtime install (no torch).
    """
    if task not in BUNDLED:
        raise UserError(f"task {task!r}: unknown; choose from {', '.join(BUNDLED)}")
    onnx = task in BUNDLED_ONNX and (runtime == "onnx" or (runtime == "auto" and not torch_importable()))
    path = Path(str(resources.files("s2s_media").joinpath(BUNDLED_ONNX[task] if onnx else BUNDLED[task])))
    if onnx and not (path / "manifest.json").is_file():
        raise UserError(f"no bundled ONNX model: {path} is missing from this install; pass a model "
                        "(--model DIR, or load_model(path)) or reinstall s2s-media")
    if not onnx and not path.is_file():
        if task == "asr":
            raise UserError(f"no bundled model: {path} is missing from this install; pass a checkpoint "
                            "(--model CKPT, or load_model(path)) or reinstall s2s-media")
        raise UserError(f"no bundled caption model: {path} is missing from this install; pass a captioning "
                        "checkpoint (--model CKPT, or load_model(path)) trained with model.modalities [image]")
    return path
