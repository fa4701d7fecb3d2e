"""Endpoint detection from CTC blank posteriors (WeNet's ``CtcEndpoint``, sherpa's rules).

:class:`Endpointer` follows one open segment: ``update`` with each decoded chunk's per-frame
blank probabilities, then ``detect`` says which rule (if any) ends the segment now. Rules are
checked in order and the first that holds is returned; see
:class:`~s2s_media.inference.streaming.config.EndpointConfig`.
"""
from __future__ import annotations

from collections.abc import Sequence

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
    """Frame counts of one open segment.

    frame_shift: seconds per encoder frame (40 ms for the ×4 attention encoders).
    """

    def __init__(self, cfg: EndpointConfig, frame_shift: float):
        self.cfg, self.frame_shift = cfg, frame_shift
        self.reset()

    def reset(self) -> None:
        """A new segment starts: no frames yet."""
        self.frames = 0
        self.trailing_silence_frames = 0

    def update(self, blank_probs: Sequence[float]) -> None:
        """Consume the next frames' blank probabilities (probabilities, not logs)."""
        threshold = self.cfg.blank_threshold
        for p in blank_probs:
            self.trailing_silence_frames = self.trailing_silence_frames + 1 if p > threshold else 0
        self.frames += len(blank_probs)

    def detect(self, decoded: bool) -> str | None:
        """The rule that ends the segment now, or None. ``decoded``: the best hypothesis has text."""
        return endpoint_rule(self.cfg, self.frames * self.frame_shift,
                             self.trailing_silence_frames * self.frame_shift, decoded)
