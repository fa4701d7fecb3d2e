"""Speech decisions of a live stream, for endpointing (the server's ``vad`` choice).

:class:`StreamVad` scores audio as it arrives (the detector's :class:`~s2s_media.frontend.vad.base.Scorer`)
and decides each 10 ms frame causally: speech when its score is above ``on``, or above ``off``
while the frame before was speech. Thresholds are the detector's for the last ``history_s``
seconds of scores (fixed for Silero; following the stream's noise floor for the energy detector).
:meth:`StreamVad.silent` answers for frames of another grid (the encoder's 40 ms).
"""
from __future__ import annotations

import numpy as np

from s2s_media.frontend.vad.base import FRAME_S, Vad


class StreamVad:
    """One stream's speech decisions. ``vad``: the detector; ``history_s``: seconds of scores the thresholds see."""

    def __init__(self, vad: Vad, history_s: float = 30.0):
        self.vad = vad
        self._scorer = vad.scorer()
        self._history = np.zeros(0, np.float32)
        self._keep = int(history_s / FRAME_S)
        self._in_speech = False
        self._speech = np.zeros(0, bool)        # decisions from frame self._offset on
        self._offset = 0

    @property
    def frames(self) -> int:
        """10 ms frames decided so far."""
        return self._offset + self._speech.size

    def accept(self, samples: np.ndarray) -> None:
        """More audio, ``(n,)`` float32 at 16 kHz."""
        self._decide(self._scorer.accept(samples))

    def finish(self) -> None:
        """The end of the input: the last frames are decided."""
        self._decide(self._scorer.finish())

    def _decide(self, scores: np.ndarray) -> None:
        if not scores.size:
            return
        self._history = np.concatenate([self._history, scores])[-self._keep:]
        th = self.vad.thresholds(self._history)
        out = np.zeros(scores.size, bool)
        if th is not None:
            on, off = th
            for i, s in enumerate(scores.tolist()):
                self._in_speech = s > on or (self._in_speech and s > off)
                out[i] = self._in_speech
        else:
            self._in_speech = False
        self._speech = np.concatenate([self._speech, out])

    def silent(self, start_s: float, n: int, shift_s: float) -> list[bool]:
        """For ``n`` frames of ``shift_s`` seconds from ``start_s``: True where no 10 ms frame in it is
        speech. A frame not decided yet (the detector's look-ahead) takes the last decision, and is
        speech before any. Earlier decisions are dropped: ask in order."""
        out = []
        for j in range(n):
            a = int(round((start_s + j * shift_s) / FRAME_S))
            b = max(a + 1, int(round((start_s + (j + 1) * shift_s) / FRAME_S)))
            if b > self.frames:
                out.append(self.frames > 0 and not self._in_speech)
                continue
            out.append(not self._speech[max(a - self._offset, 0):b - self._offset].any())
        drop = min(int(round(start_s / FRAME_S)), self.frames) - self._offset
        if drop > 0:
            self._speech, self._offset = self._speech[drop:], self._offset + drop
        return out
