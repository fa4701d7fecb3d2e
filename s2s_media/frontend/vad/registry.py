"""Detectors by name: ``auto`` is Silero when its package is installed, else the energy detector."""
from __future__ import annotations

from s2s_media.frontend.vad import silero
from s2s_media.frontend.vad.base import Vad, VadConfig
from s2s_media.frontend.vad.energy import EnergyVad
from s2s_media.frontend.vad.silero import SileroVad

VADS: dict[str, type[Vad]] = {"silero": SileroVad, "energy": EnergyVad}


def resolve(method: str) -> str:
    """The detector ``method`` stands for: ``auto`` becomes ``silero`` or, without it, ``energy``."""
    if method == "auto":
        return "silero" if silero.available() else "energy"
    return method


def make_vad(cfg: VadConfig = VadConfig()) -> Vad:
    """The detector ``cfg.method`` names (UserError naming the package when Silero is asked for but missing)."""
    return VADS[resolve(cfg.method)](cfg)
