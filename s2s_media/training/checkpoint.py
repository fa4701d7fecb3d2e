"""Checkpoints in training: saving, resuming and averaging.

The file format (plain dicts, atomic writes, safe reads) is :mod:`s2s_media.checkpoint_io`;
``save_checkpoint``, ``load_checkpoint`` and ``float_state`` are re-exported here for training code.
"""
from __future__ import annotations

from pathlib import Path

import torch

from s2s_media.checkpoint_io import CHECKPOINT_VERSION, float_state, load_checkpoint, save_checkpoint
from s2s_media.errors import UserError

__all__ = ["CHECKPOINT_VERSION", "float_state", "load_checkpoint", "save_checkpoint", "average_state_dicts"]


def average_state_dicts(paths: list[str | Path]) -> dict:
    """Element-wise mean of the model weights of several checkpoints (integer buffers from the last)."""
    if not paths:
        raise UserError("no checkpoints to average")
    avg: dict[str, torch.Tensor] = {}
    for p in paths:
        sd = load_checkpoint(p)["model"]
        for k, v in sd.items():
            if k not in avg:
                avg[k] = v.clone().double() if v.is_floating_point() else v.clone()
            elif v.is_floating_point():
                avg[k] += v.double()
            else:
                avg[k] = v.clone()
    return {k: (v / len(paths)).to(torch.float32) if v.is_floating_point() else v for k, v in avg.items()}
