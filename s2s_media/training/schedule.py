"""Learning-rate schedules as LambdaLR multipliers of ``optim.lr``."""
from __future__ import annotations

import math
from typing import Callable

from s2s_media.config import OptimConfig


def noam(warmup: int) -> Callable[[int], float]:
    """Linear warmup to the peak at ``warmup``, then decay ∝ step^-0.5 (peak multiplier 1)."""
    warmup = max(1, warmup)
    return lambda step: min((step + 1) / warmup, math.sqrt(warmup / (step + 1)))


def cosine(warmup: int, total: int, floor: float) -> Callable[[int], float]:
    """Linear warmup, then half a cosine from 1 down to ``floor`` at ``total`` steps."""
    warmup = max(1, warmup)

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return f


def make_schedule(cfg: OptimConfig, total_steps: int) -> Callable[[int], float]:
    table = {
        "noam": lambda: noam(cfg.warmup_steps),
        "cosine": lambda: cosine(cfg.warmup_steps, total_steps, cfg.min_lr / cfg.lr),
        "constant": lambda: (lambda step: min(1.0, (step + 1) / max(1, cfg.warmup_steps))),
    }
    return table[cfg.scheduler]()
