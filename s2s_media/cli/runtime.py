"""The ``--runtime`` and ``--threads`` options shared by ``transcribe`` and ``serve``."""
from __future__ import annotations

RUNTIMES = ("auto", "torch", "onnx")   # s2s_media.inference.loader.RUNTIMES, without importing torch


def add_runtime_arguments(p) -> None:
    p.add_argument("--runtime", default="auto", choices=RUNTIMES,
                   help="what runs the model: auto (onnxruntime for an ONNX model directory from export --format "
                        "onnx, torch for a checkpoint), onnx (a checkpoint is exported to ONNX once and cached in "
                        "~/.cache/s2s-media/onnx) or torch (default: %(default)s)")
    p.add_argument("--threads", type=int, default=0,
                   help="onnxruntime threads per model (default 0: every core); torch runs use torch's setting")
