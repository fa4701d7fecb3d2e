"""Which runtime runs a model: a checkpoint file with torch, an ONNX model directory with onnxruntime.

:func:`load_any` is what ``transcribe``, ``serve`` and :func:`s2s_media.load_model` call. ``runtime``:

- ``auto``: an ONNX directory (``s2s-media export --format onnx``) runs on onnxruntime, a checkpoint on torch;
- ``onnx``: a checkpoint runs on onnxruntime too, exported once into
  :func:`~s2s_media.inference.onnx_export.cached_onnx_dir`;
- ``torch``: a checkpoint file only (:func:`~s2s_media.inference.checkpoint.load_model_file`).

An ONNX directory loads without torch; a checkpoint needs it (the ``train`` extra), and its modules are imported
only then, so a runtime install gets one line saying so.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from s2s_media.decoding.timing import ConfidenceCalibration
from s2s_media.errors import UserError
from s2s_media.extras import is_train_module, needs_train
from s2s_media.inference.loaded import LoadedModel
from s2s_media.inference.onnx_model import load_onnx_model

RUNTIMES = ("auto", "torch", "onnx")


def uses_onnx(path: str | Path, runtime: str = "auto") -> bool:
    """Whether :func:`load_any` runs ``path`` with onnxruntime (CPU only)."""
    return runtime == "onnx" or (runtime == "auto" and Path(path).is_dir())


def load_any(path: str | Path, quantize: bool = True, lm: str | Path | None = None, runtime: str = "auto",
             threads: int = 0) -> LoadedModel:
    """The model at ``path`` on the chosen runtime (see the module docstring). ``quantize`` and ``lm`` as for
    :func:`load_model_file`; ``threads``: onnxruntime's intra-op threads (0: its default, every core)."""
    if runtime not in RUNTIMES:
        raise UserError(f"--runtime {runtime}: choose from {', '.join(RUNTIMES)}")
    path = Path(path)
    if path.is_dir() and runtime == "torch":
        raise UserError(f"{path}: is a directory (an ONNX export?); --runtime torch needs a checkpoint file (.pt); "
                        "use --runtime onnx or auto")
    if uses_onnx(path, runtime):
        directory = path if path.is_dir() else _torch_side("onnx_export", path).cached_onnx_dir(path)
        loaded = load_onnx_model(directory, lm=lm, threads=threads)
        loaded.calibration = ConfidenceCalibration.read(path)     # beside the file or in the directory given
        return loaded
    return _torch_side("checkpoint", path).load_model_file(path, quantize=quantize, lm=lm)


def load_on_device(path: str | Path, device: str = "auto", runtime: str = "auto", threads: int = 0):
    """``(loaded, device)``: the model at ``path`` for ``device`` (``auto``, ``cpu`` or ``cuda``). An ONNX model
    runs on the CPU (``"cpu"``, no torch); a checkpoint on :func:`~s2s_media.device.pick_device`'s device, with
    its int8 layers quantised on the CPU."""
    if uses_onnx(path, runtime):
        if device not in ("auto", "cpu"):
            raise UserError(f"--device {device}: the ONNX runtime runs on the CPU; use --device cpu or --runtime torch")
        return load_any(path, runtime=runtime, threads=threads), "cpu"
    _torch_side("checkpoint", path)          # a checkpoint needs torch: said here, naming the file
    from s2s_media.device import pick_device
    dev = pick_device(device)
    return load_any(path, quantize=dev.type == "cpu", runtime=runtime, threads=threads), dev


def _torch_side(module: str, path: Path):
    """``s2s_media.inference.MODULE`` (torch code), or the one-line error of a runtime install."""
    try:
        return importlib.import_module(f"s2s_media.inference.{module}")
    except ModuleNotFoundError as e:
        if not is_train_module(e):
            raise
        raise needs_train(f"{path}: a checkpoint file") from None
