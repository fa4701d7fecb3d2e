"""What a search returns."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Decoded:
    """One utterance's result: unit ids, score, and (CTC methods) each token's frame and posterior."""
    tokens: list[int]
    score: float
    frames: list[int] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)
