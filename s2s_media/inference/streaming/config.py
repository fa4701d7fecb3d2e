"""Typed options of the streaming recognizer, fillable from YAML like :mod:`s2s_media.config`.

>>> cfg = StreamingConfig.from_dict({"chunk_size": 8, "endpoint": {"rule1_min_trailing_silence": 0.8}})
"""
from __future__ import annotations

from dataclasses import dataclass, field

from s2s_media.frontend.vad import VAD_METHODS
from s2s_media.typed import from_dict
from s2s_media.errors import ConfigError

ENDPOINT_VADS = (*VAD_METHODS, "ctc")   # what judges silence: a voice activity detector, or the CTC blank


@dataclass
class EndpointConfig:
    """When an open segment ends (the three rules of WeNet's CTC endpointer, sherpa's defaults).

    ``vad`` judges which encoder frames are silence. ``silero`` and ``energy`` run that voice activity
    detector (:mod:`s2s_media.frontend.vad`) over the stream's audio: a frame is silence when no
    10 ms frame in it is speech. ``auto`` is silero when its package is installed, else energy.
    ``ctc`` uses the CTC blank posterior of each encoder frame: a frame is silence when its blank
    probability exceeds ``blank_threshold``. CTC is peaky, so inside words most frames are blank
    too; what marks a pause is that no token spike interrupts the run. 0.8 is WeNet's value: frames
    the model is unsure about count as speech. Set a time very large to disable a rule.
    """

    enabled: bool = True                     # false: a segment ends only when the input does
    vad: str = "auto"                        # auto | silero | energy | ctc (see ENDPOINT_VADS)
    blank_threshold: float = 0.8             # with vad ctc
    rule1_min_trailing_silence: float = 1.2  # rule 1: this much silence after decoded text ends the segment
    rule2_min_trailing_silence: float = 5.0  # rule 2: this much silence ends it, text or not
    rule3_max_utterance: float = 20.0        # rule 3: a segment this long ends, whatever it holds

    def validate(self, where: str = "endpoint") -> None:
        """Raise :class:`~s2s_media.errors.ConfigError` naming the first bad field."""
        if self.vad not in ENDPOINT_VADS:
            raise ConfigError(f"{where}.vad: must be one of {', '.join(ENDPOINT_VADS)}, got {self.vad!r}")
        if not 0.0 < self.blank_threshold < 1.0:
            raise ConfigError(f"{where}.blank_threshold: must be a probability in (0, 1), got {self.blank_threshold!r}")
        for key in ("rule1_min_trailing_silence", "rule2_min_trailing_silence", "rule3_max_utterance"):
            value = getattr(self, key)
            if not value > 0.0:
                raise ConfigError(f"{where}.{key}: must be > 0 seconds, got {value!r}")


@dataclass
class StreamingConfig:
    chunk_size: int = 8                 # encoder frames per chunk (x4 subsampling of 10 ms: 40 ms each); 320 ms:
                                        # the smallest meeting 16 real-time sessions on 2 cores (docs/benchmarks.md)
    num_left_chunks: int = -1           # chunks of left context the encoder sees; -1 = all (up to max_left_chunks)
    max_left_chunks: int = 64           # memory cap on the left context when num_left_chunks is -1 (20 s at 8)
    beam: int | None = None             # CTC prefix beam; None = the model's decode.beam
    rescore: bool = True                # attention rescoring of the CTC n-best at each endpoint
    ctc_weight: float | None = None     # CTC share of the rescoring score; None = the model's decode.ctc_weight
    lm_weight: float | None = None      # weight of the model's language model (0 = off); None = decode.lm_weight
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)

    @classmethod
    def from_dict(cls, data: dict | None, where: str = "streaming") -> StreamingConfig:
        """Build and validate from a mapping (e.g. a YAML block); unknown keys raise ConfigError."""
        cfg = from_dict(cls, data, where)
        cfg.validate(where)
        return cfg

    @property
    def max_cache_frames(self) -> int:
        """Left-context frames kept per stream: ``chunk_size`` x the effective number of left chunks."""
        left = self.num_left_chunks if self.num_left_chunks >= 0 else self.max_left_chunks
        return self.chunk_size * left

    def validate(self, where: str = "streaming") -> None:
        """Raise :class:`~s2s_media.errors.ConfigError` naming the first bad field."""
        def bad(name: str, need: str, value) -> ConfigError:
            return ConfigError(f"{where}.{name}: must be {need}, got {value!r}")
        if self.chunk_size < 1:
            raise bad("chunk_size", ">= 1", self.chunk_size)
        if self.num_left_chunks < -1:
            raise bad("num_left_chunks", ">= 0, or -1 for all", self.num_left_chunks)
        if self.max_left_chunks < 1:
            raise bad("max_left_chunks", ">= 1", self.max_left_chunks)
        if self.beam is not None and self.beam < 1:
            raise bad("beam", ">= 1", self.beam)
        if self.ctc_weight is not None and not 0.0 <= self.ctc_weight <= 1.0:
            raise bad("ctc_weight", "within [0, 1]", self.ctc_weight)
        if self.lm_weight is not None and self.lm_weight < 0:
            raise bad("lm_weight", ">= 0", self.lm_weight)
        self.endpoint.validate(f"{where}.endpoint")
