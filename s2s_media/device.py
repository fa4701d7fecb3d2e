"""Which device to run on: ``--device {auto,cpu,cuda}`` for every command."""
from __future__ import annotations

import os

from s2s_media.errors import UserError

DEVICES = ("auto", "cpu", "cuda")


def pick_device(choice: str = "auto"):
    """``auto`` -> CUDA when present, else CPU, as a ``torch.device``. Under torchrun each rank takes its
    LOCAL_RANK GPU. torch is imported here, not with the module: the options (:data:`DEVICES`) are read by
    commands that run without torch (ONNX models run on the CPU)."""
    import torch
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is visible; use --device auto or cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
