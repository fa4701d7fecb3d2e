"""Incremental front-end: streaming resampling and log-mels equal to the offline ones.

:class:`StreamResampler` uses soxr's streaming resampler with the filter ``audio.resample``
uses (soxr HQ), so audio resampled piece by piece equals audio resampled whole.

:class:`StreamingLogMel` emits :func:`~s2s_media.frontend.logmel_np.log_mel` frames (numpy, what the torch
``LogMel`` computes) as soon as their windows are complete, equal to ``log_mel`` over the whole waveform (up to
float rounding of the mel matmul, ~1e-6). ``log_mel`` is a centred STFT: frame ``i`` covers samples
``[160 i - 200, 160 i + 200)``, reflected at both ends. The start is handled exactly: frames 0 and 1
are computed from the first samples with ``LogMel``'s own reflection. The end is only known when
the input is: frames whose windows reach past the samples received so far wait for more audio
or for :meth:`StreamingLogMel.finish`, which reflects the real end like ``LogMel`` does. Each call
recomputes at most two earlier frames (a frame is only taken where ``LogMel`` over the piece
sees no artificial edge); nothing older is kept.
"""
from __future__ import annotations

import numpy as np
import soxr

from s2s_media.frontend.audio import HOP_LENGTH, N_FFT, N_MELS, SAMPLE_RATE, num_frames
from s2s_media.frontend.logmel_np import log_mel


class StreamResampler:
    """Resample a stream of pieces from ``in_rate`` to ``out_rate``; pieces in, pieces out.

    ``__call__(samples: (n,) float32) -> (m,) float32`` (the filter delays output a little);
    :meth:`flush` returns the rest at the end of the input.
    """

    def __init__(self, in_rate: int, out_rate: int = SAMPLE_RATE):
        self.in_rate, self.out_rate = in_rate, out_rate
        self._soxr = None
        if in_rate != out_rate:
            self._soxr = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        if self._soxr is None:
            return samples
        return self._soxr.resample_chunk(samples, last=False)

    def flush(self) -> np.ndarray:
        if self._soxr is None:
            return np.zeros(0, np.float32)
        return self._soxr.resample_chunk(np.zeros(0, np.float32), last=True)


class StreamingLogMel:
    """:func:`~s2s_media.frontend.logmel_np.log_mel` over a waveform that arrives in pieces.

    ``accept(samples: (n,)) -> (frames, n_mels)`` float32: the frames completed by these samples;
    ``finish() -> (frames, n_mels)``: the last frames, once the input has ended. Concatenated,
    they equal ``log_mel(whole)``.
    """

    def __init__(self, n_mels: int = N_MELS):
        self.n_mels = n_mels
        self._buf = np.zeros(0, np.float32)   # samples from _buf_start on
        self._buf_start = 0
        self.samples = 0                      # samples accepted
        self.frames = 0                       # frames emitted

    @staticmethod
    def ready_frames(num_samples: int, final: bool = False) -> int:
        """Frames computable from ``num_samples`` samples: all of ``LogMel``'s when ``final``, else
        those whose window (and, for frame 0, its start reflection) lies inside the samples."""
        if final:
            return num_frames(num_samples) if num_samples > 0 else 0
        half = N_FFT // 2
        return (num_samples - half - 1) // HOP_LENGTH + 1 if num_samples > half else 0

    def accept(self, samples: np.ndarray) -> np.ndarray:
        """samples: (n,) float32 at 16 kHz -> (frames, n_mels) newly complete frames."""
        if samples.size:
            self._buf = np.concatenate([self._buf, samples.astype(np.float32, copy=False)])
            self.samples += samples.size
        return self._emit(self.ready_frames(self.samples), final=False)

    def finish(self) -> np.ndarray:
        """(frames, n_mels): the frames that needed the end of the input."""
        return self._emit(self.ready_frames(self.samples, final=True), final=True)

    def _emit(self, upto: int, final: bool) -> np.ndarray:
        first = self.frames
        if upto <= first:
            return np.zeros((0, self.n_mels), np.float32)
        # Run log_mel over a piece starting at frame ``first - skip``: the piece's own start reflection
        # only touches its first two frames, which are either the waveform's real start or skipped.
        skip = min(first, 2)
        start = (first - skip) * HOP_LENGTH
        end = self.samples if final else (upto - 1) * HOP_LENGTH + N_FFT // 2 + 1
        piece = self._buf[start - self._buf_start:end - self._buf_start]
        feats = log_mel(piece, self.n_mels)[skip:skip + upto - first]
        self.frames = upto
        keep = max(0, (upto - 2) * HOP_LENGTH)           # where the next piece starts
        self._buf = self._buf[keep - self._buf_start:]
        self._buf_start = keep
        return feats

    @property
    def buffered_samples(self) -> int:
        return self._buf.size
