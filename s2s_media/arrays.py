"""numpy helpers of the inference path, which runs on numpy whatever runs the model.

Features, padded batches, CTC posteriors, streaming memory and masks are numpy arrays between the model calls;
a torch model converts at its own boundary (:meth:`~s2s_media.models.seq2seq.Seq2SeqModel.as_input`), an
ONNX model needs no conversion. :func:`to_numpy` takes either kind back. Nothing here imports torch.
"""
from __future__ import annotations

import sys

import numpy as np


def to_numpy(x) -> np.ndarray:
    """A numpy array of ``x``: a numpy array (as is), a torch tensor (detached, on the CPU) or a list."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach"):            # a torch tensor (torch is imported, since the tensor exists)
        return x.detach().cpu().numpy()
    return np.asarray(x)


def like(ref, array: np.ndarray):
    """``array`` as the kind of ``ref``: numpy stays numpy; for a torch tensor ``ref``, a tensor on its device
    (dtype kept)."""
    if isinstance(ref, np.ndarray):
        return array
    return sys.modules["torch"].from_numpy(np.ascontiguousarray(array)).to(ref.device)


def take_rows(state, index: np.ndarray):
    """Rows ``index (n,)`` along the first axis of every array in ``state`` (an array, or a nested list, tuple or
    dict of them; numpy arrays or tensors, each indexed as its own kind); anything else is kept as is."""
    if isinstance(state, np.ndarray):
        return state[index]
    if hasattr(state, "index_select"):          # a torch tensor
        return state.index_select(0, like(state, np.asarray(index, np.int64)))
    if isinstance(state, dict):
        return {k: take_rows(v, index) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(take_rows(v, index) for v in state)
    return state


def lengths_to_mask(lengths: np.ndarray, max_len: int | None = None) -> np.ndarray:
    """``lengths (B,)`` -> ``(B, max_len)`` bool, True at valid positions."""
    lengths = np.asarray(lengths)
    n = int(lengths.max()) if max_len is None and lengths.size else (max_len or 0)
    return np.arange(n)[None, :] < lengths[:, None]


def pad_batch(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``arrays[i]: (T_i, ...)`` -> zero-padded ``(B, max T, ...)`` and ``lengths (B,)`` int64."""
    lengths = np.array([a.shape[0] for a in arrays], np.int64)
    out = np.zeros((len(arrays), int(lengths.max()) if arrays else 0) + arrays[0].shape[1:], arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, :a.shape[0]] = a
    return out, lengths


def topk(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest values of the last axis and their indices, largest first (as ``torch.topk``)."""
    k = min(k, x.shape[-1])
    idx = np.argpartition(-x, k - 1, axis=-1)[..., :k] if k < x.shape[-1] else np.broadcast_to(
        np.arange(x.shape[-1]), x.shape).copy()
    vals = np.take_along_axis(x, idx, -1)
    order = np.argsort(-vals, axis=-1, kind="stable")
    return np.take_along_axis(vals, order, -1), np.take_along_axis(idx, order, -1)


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Log-softmax along ``axis`` in the array's float type."""
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
