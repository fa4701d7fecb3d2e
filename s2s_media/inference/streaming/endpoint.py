"""Endpoint detection: WeNet's ``CtcEndpoint`` rules (sherpa's defaults), with silence judged by a
voice activity detector or by the CTC blank posteriors.

:class:`Endpointer` follows one stream: ``accept_audio`` with its 16 kHz audio as it arrives (a
VAD scores it), ``update`` with each decoded chunk's per-frame blank probabilities, then ``detect``
says which rule (if any) ends the open segment now; ``reset`` starts the next segment. Rules are
checked in order and the first that holds is returned; see
:class:`~s2s_media.inference.streaming.config.EndpointConfig`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from s2s_media.frontend.vad import StreamVad, VadConfig, make_vad
from s2s_media.inference.streaming.config import EndpointConfig

_EPS = 1e-9   # frames x shift in floating point: 30 x 0.04 s must count as 1.2 s


def endpoint_rule(cfg: EndpointConfig, utterance_s: float, trailing_silence_s: float, decoded: bool) -> str | None:
    """Which rule ends a segment of ``utterance_s`` seconds whose last ``trailing_silence_s`` are
    silence; ``decoded``: its best hypothesis has text. Returns ``"rule1"``..``"rule3"`` or None."""
    if not cfg.enabled:
        return None
    if decoded and trailing_silence_s + _EPS >= cfg.rule1_min_trailing_silence:
        return "rule1"
    if trailing_silence_s + _EPS >= cfg.rule2_min_trailing_silence:
        return "rule2"
    if utterance_s + _EPS >= cfg.rule3_max_utterance:
        return "rule3"
    return None


class Endpointer:
    """Frame counts of one stream's open segment.

    frame_shift: seconds per encoder frame (40 ms for the ×4 attention encoders).
    """

    def __init__(self, cfg: EndpointConfig, frame_shift: float):
        self.cfg, self.frame_shift = cfg, frame_shift
        self.vad = None if cfg.vad == "ctc" or not cfg.enabled else StreamVad(make_vad(VadConfig(cfg.vad)))
        self.reset()

    def reset(self) -> None:
        """A new segment starts: no frames yet."""
        self.frames = 0
        self.trailing_silence_frames = 0

    def accept_audio(self, samples: np.ndarray) -> None:
        """The stream's next audio, ``(n,)`` float32 at 16 kHz (what the VAD judges)."""
        if self.vad is not None:
            self.vad.accept(samples)

    def finish_audio(self) -> None:
        """The stream's audio has ended."""
        if self.vad is not None:
            self.vad.finish()

    def update(self, blank_probs: Sequence[float], start_s: float) -> None:
        """Consume the next frames: their blank probabilities (probabilities, not logs) and the time
        of the first, in seconds from the start of the stream."""
        if self.vad is None:
            silent = [p > self.cfg.blank_threshold for p in blank_probs]
        else:
            silent = self.vad.silent(start_s, len(blank_probs), self.frame_shift)
        for s in silent:
            self.trailing_silence_frames = self.trailing_silence_frames + 1 if s else 0
        self.frames += len(blank_probs)

    def detect(self, decoded: bool) -> str | None:
        """The rule that ends the segment now, or None. ``decoded``: the best hypothesis has text."""
        return endpoint_rule(self.cfg, self.frames * self.frame_shift,
                             self.trailing_silence_frames * self.frame_shift, decoded)
