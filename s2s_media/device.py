"""Which device to run on: ``--device {auto,cpu,cuda}`` for every command."""
from __future__ import annotations

import os

import torch

from s2s_media.errors import UserError

DEVICES = ("auto", "cpu", "cuda")


def pick_device(choice: str = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU. Under torchrun each rank takes its LOCAL_RANK GPU."""
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is visible; use --device auto or cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
