"""What needs the ``train`` extra: torch is not part of the base (runtime) install.

The runtime install (``pip install s2s-media``) runs ONNX model directories: ``transcribe``, ``serve``,
``stream`` and ``mic``. Training, export, evaluation, captioning and torch checkpoints need
``pip install "s2s-media[train]"``; reaching them without it is one :class:`UserError` line.
"""
from __future__ import annotations

from s2s_media.errors import UserError

TRAIN_EXTRA = 'pip install "s2s-media[train]"'
TRAIN_MODULES = ("torch", "torchaudio", "torchvision", "librosa", "jiwer", "matplotlib", "tensorboard", "scipy",
                 "onnx", "onnxscript")


def needs_train(what: str) -> UserError:
    """The error for ``what`` (e.g. ``"s2s-media train"``, ``"a torch checkpoint"``) run without the train extra."""
    return UserError(f"{what} needs the train extra (torch), which this runtime install lacks: {TRAIN_EXTRA}; "
                     "the runtime runs ONNX model directories (s2s-media export --format onnx)")


def is_train_module(e: ModuleNotFoundError) -> bool:
    """Whether ``e`` is a missing train-extra module."""
    return (e.name or "").split(".")[0] in TRAIN_MODULES
