"""Plain-dict checkpoint files: written atomically (temp file, fsync, rename, fsync of the folder),
read with ``weights_only=True``.

A checkpoint holds ``version``, ``model`` (the state_dict), ``config`` (the full Config as
builtins), ``tokenizer`` (its dict), ``cmvn`` (mean/std lists) and ``meta``; resume
checkpoints add ``optimizer``, ``scheduler``, ``scaler``, ``sampler``, ``rng`` and
``trainer`` state. No modules are pickled, so checkpoints survive refactors.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from s2s_media.errors import UserError

CHECKPOINT_VERSION = 1


def _tensors(obj):
    """``obj`` with every numpy array (e.g. an n-gram's tables) as a tensor: ``weights_only`` loads tensors."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, dict):
        return {k: _tensors(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and any(isinstance(v, (np.ndarray, dict, list, tuple)) for v in obj):
        return type(obj)(_tensors(v) for v in obj)
    return obj


def save_checkpoint(obj: dict, path: str | Path) -> Path:
    """Write ``obj`` to ``path`` via a temp file and rename: a crash never leaves a broken file. numpy arrays
    in ``obj`` are stored as tensors."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.tmp*"):  # left by a process killed mid-write
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(_tensors({"version": CHECKPOINT_VERSION, **obj}), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def fsync_dir(folder: Path) -> None:
    """Make the renames done in ``folder`` durable: without this a power loss can undo a rename
    that already returned. A no-op where a directory cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass                          # some filesystems refuse fsync on a directory
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint dict safely (``weights_only=True``) and check its format version."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt/foreign files get one clear line
        reason = str(e).strip().splitlines()[0][:120] if str(e).strip() else "empty or truncated file"
        raise UserError(f"{path}: not a readable s2s-media checkpoint ({type(e).__name__}: {reason})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "version" not in ckpt:
        raise UserError(f"{path}: not an s2s-media checkpoint (missing 'model' or 'version')")
    if ckpt["version"] > CHECKPOINT_VERSION:
        raise UserError(f"{path}: checkpoint format {ckpt['version']} is newer than this s2s-media "
                        f"(reads up to {CHECKPOINT_VERSION}); upgrade s2s-media")
    return ckpt


def float_state(ckpt: dict) -> dict:
    """The float32 ``state_dict`` of a training or an exported checkpoint (``s2s-media export``):
    int8 rows times their per-row ``scales``, float16 tensors back to float32, the rest as stored."""
    scales = ckpt.get("scales", {})
    out = {}
    for k, v in ckpt["model"].items():
        if k in scales:
            out[k] = v.float() * scales[k][:, None]
        elif v.is_floating_point():
            out[k] = v.float()
        else:
            out[k] = v
    return out
