"""Silero VAD: a small learned detector, run with ONNX Runtime (no torch at inference).

The model is the one the ``silero-vad`` package ships (``silero_vad/data/silero_vad_16k_sequence.onnx``,
an LSTM over 32 ms windows of 512 samples, each preceded by the previous window's last 64
samples). It gives one speech probability per window; a 10 ms frame takes the probability of the
window holding its centre sample. The sequence form scores many windows per call and carries the
LSTM state ``(h, c)`` between calls, so a stream scored piece by piece gets the probabilities the
whole recording gets.
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from s2s_media.errors import UserError
from s2s_media.frontend.audio import HOP_LENGTH
from s2s_media.frontend.vad.base import Scorer, Vad, VadConfig, num_frames

WINDOW, CONTEXT = 512, 64            # samples per probability, and of the previous window it sees
MODEL_FILE = "silero_vad_16k_sequence.onnx"
MAX_WINDOWS = 512                    # windows per ONNX call (16 s): bounds the call's memory


def _model_file() -> Path | None:
    """The shipped model file, or None when silero-vad (6.2.2 or later) or onnxruntime is missing.
    Found without importing ``silero_vad`` (whose ``__init__`` imports torch)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations or importlib.util.find_spec("onnxruntime") is None:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / MODEL_FILE
    return path if path.is_file() else None


def available() -> bool:
    """The model and ONNX Runtime are installed."""
    return _model_file() is not None


@lru_cache(maxsize=1)
def _session():
    """The ONNX Runtime session of the shipped model (one per process; ``run`` is thread-safe)."""
    path = _model_file() if available() else None   # available(): what tests replace
    if path is None:
        raise UserError(f"vad silero: the Silero VAD model ({MODEL_FILE}) is not installed; "
                        "pip install 'silero-vad>=6.2.2' onnxruntime (or choose the energy VAD)")
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class SileroScorer(Scorer):
    """Probabilities of one stream's windows, turned into 10 ms frame scores as they become known."""

    def __init__(self):
        self._session = _session()
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._buf = np.zeros(CONTEXT, np.float32)   # the previous window's tail, then samples not yet scored
        self._probs = np.zeros(0, np.float32)       # of windows whose frames are not all emitted
        self._first = 0                             # window index of self._probs[0]
        self._next = 0                              # the next 10 ms frame to emit
        self._samples = 0

    def _score(self, windows: int) -> None:
        """Run the model over the next ``windows`` whole windows of the buffer."""
        for w0 in range(0, windows, MAX_WINDOWS):
            n = min(MAX_WINDOWS, windows - w0)
            frames = self._buf[CONTEXT: CONTEXT + n * WINDOW].reshape(n, WINDOW)
            tails = np.concatenate([self._buf[None, :CONTEXT], frames[:-1, -CONTEXT:]])
            probs, self._h, self._c = self._session.run(
                None, {"input": np.concatenate([tails, frames], axis=1), "h": self._h, "c": self._c})
            self._probs = np.concatenate([self._probs, probs.astype(np.float32)])
            self._buf = self._buf[n * WINDOW:]

    def _emit(self, upto: int) -> np.ndarray:
        """Scores of frames ``[next, upto)``, whose windows are scored; drops windows no longer needed."""
        frames = np.arange(self._next, upto)
        # a last frame centred on the very end of the audio takes the last window
        out = self._probs[np.minimum(frames * HOP_LENGTH // WINDOW - self._first, len(self._probs) - 1)]
        self._next = max(self._next, upto)
        # keep the window of the next frame, and the last window (a frame at the very end takes it)
        keep = max(self._first, min(self._next * HOP_LENGTH // WINDOW, self._first + len(self._probs) - 1))
        self._probs, self._first = self._probs[keep - self._first:], keep
        return out

    def accept(self, samples: np.ndarray) -> np.ndarray:
        self._buf = np.concatenate([self._buf, np.asarray(samples, np.float32)])
        self._samples += len(samples)
        self._score((len(self._buf) - CONTEXT) // WINDOW)
        scored = (self._first + len(self._probs)) * WINDOW      # samples covered by scored windows
        return self._emit(min(num_frames(self._samples), (scored - 1) // HOP_LENGTH + 1) if scored else 0)

    def finish(self) -> np.ndarray:
        rest = len(self._buf) - CONTEXT
        if rest > 0:
            self._buf = np.concatenate([self._buf, np.zeros(WINDOW - rest, np.float32)])
            self._score(1)
        if self._first + len(self._probs) == 0:   # no audio at all: no window to take a score from
            return np.zeros(max(num_frames(self._samples) - self._next, 0), np.float32)
        return self._emit(num_frames(self._samples))


class SileroVad(Vad):
    """Speech where Silero's probability rises above ``on_probability`` (ends below ``off_probability``)."""

    name = "silero"

    def __init__(self, cfg: VadConfig = VadConfig()):
        super().__init__(cfg)
        _session()                                 # a missing model is reported now, not mid-run

    def scores(self, wav: np.ndarray) -> np.ndarray:
        scorer = SileroScorer()
        return np.concatenate([scorer.accept(np.asarray(wav, np.float32)), scorer.finish()])

    def thresholds(self, scores: np.ndarray) -> tuple[float, float] | None:
        return self.cfg.on_probability, self.cfg.off_probability

    def scorer(self) -> Scorer:
        return SileroScorer()
