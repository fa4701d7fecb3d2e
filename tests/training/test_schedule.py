"""Learning-rate schedules (LambdaLR multipliers): noam, cosine, constant."""
import math

import pytest

from s2s_media.config import OptimConfig
from s2s_media.training.schedule import cosine, make_schedule, noam


def lrs(cfg: OptimConfig, total: int, steps: int) -> list[float]:
    """The learning rate of optimizer steps 0..steps-1: LambdaLR multiplies ``lr`` by ``f(k)`` at step k."""
    f = make_schedule(cfg, total)
    return [cfg.lr * f(k) for k in range(steps)]


def test_noam_warms_up_to_the_peak_then_decays():
    cfg = OptimConfig(lr=2e-3, scheduler="noam", warmup_steps=100)
    lr = lrs(cfg, total=1000, steps=1000)
    peak = max(range(len(lr)), key=lr.__getitem__)
    assert peak == 99                                     # the 100th step, i.e. after warmup_steps updates
    assert lr[peak] == pytest.approx(2e-3)                # peak multiplier is exactly 1
    assert lr[0] == pytest.approx(2e-3 / 100)
    assert lr[49] == pytest.approx(1e-3)                  # linear warmup
    assert all(a < b for a, b in zip(lr[:99], lr[1:100]))
    assert all(a > b for a, b in zip(lr[99:-1], lr[100:]))
    assert lr[399] == pytest.approx(2e-3 * 0.5)           # step^-0.5: 4x the warmup -> half the peak
    f = noam(100)
    assert f(899) / f(224) == pytest.approx(math.sqrt(225 / 900))


def test_noam_with_zero_warmup_does_not_divide_by_zero():
    f = noam(0)
    assert f(0) == 1.0 and f(3) == pytest.approx(0.5)


def test_cosine_reaches_the_floor_at_total():
    cfg = OptimConfig(lr=1e-3, min_lr=1e-5, scheduler="cosine", warmup_steps=10)
    lr = lrs(cfg, total=110, steps=130)
    assert lr[9] == pytest.approx(1e-3)                   # end of warmup: the peak
    assert max(lr) == pytest.approx(1e-3)
    assert lr[60] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)    # half way: the midpoint
    assert lr[110] == pytest.approx(1e-5)                 # the floor, min_lr, at total
    assert all(x == pytest.approx(1e-5) for x in lr[110:])  # and it stays there
    assert all(a >= b for a, b in zip(lr[10:110], lr[11:111]))
    assert min(lr) == pytest.approx(1e-5)
    assert cosine(0, 10, 0.0)(10) == pytest.approx(0.0)


def test_constant_after_warmup():
    cfg = OptimConfig(lr=5e-4, scheduler="constant", warmup_steps=4)
    lr = lrs(cfg, total=100, steps=50)
    assert lr[:4] == pytest.approx([1.25e-4, 2.5e-4, 3.75e-4, 5e-4])
    assert lr[3:] == pytest.approx([5e-4] * 47)
    assert lrs(OptimConfig(lr=5e-4, scheduler="constant", warmup_steps=0), 100, 3) == pytest.approx([5e-4] * 3)
