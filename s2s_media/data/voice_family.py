"""The voice family of a synthetic-corpus speaker id, for WER per family.

Speaker ids are ``engine:voice`` with an optional ``+vtl<factor>`` when the utterance's formants
were moved (a perturbed speaker), e.g. ``espeak:en-gb+f3``, ``piper:joe``, ``hibari:heart+vtl0.89``.
"""
from __future__ import annotations

FAMILIES = ("espeak-ng", "flite", "festival", "piper", "hibari", "perturbed")
NATURAL_ENGINES = ("piper", "hibari")      # neural voices: the natural-sounding part
PERTURBED_MARK = "+vtl"
_ENGINE_FAMILY = {"espeak": "espeak-ng", "flite": "flite", "festival": "festival", "piper": "piper", "hibari": "hibari"}


def voice_family(speaker: str) -> str:
    """``"hibari:heart" -> "hibari"``, ``"espeak:en-us+f3" -> "espeak-ng"``, any ``+vtl`` -> ``"perturbed"``.

    An id of no known engine (e.g. a real corpus's speaker) gives ``"other"``.
    """
    if PERTURBED_MARK in speaker:
        return "perturbed"
    return _ENGINE_FAMILY.get(speaker.partition(":")[0], "other")


def is_natural_voice(speaker: str) -> bool:
    """True for the neural voices (Piper, hibari), perturbed or not: the natural-voice part of a split."""
    return speaker.partition(":")[0] in NATURAL_ENGINES


def perturbation(speaker: str) -> float:
    """The vocal-tract factor of a perturbed speaker id (1.0 when unperturbed)."""
    _, mark, factor = speaker.partition(PERTURBED_MARK)
    return float(factor) if mark else 1.0


NATURAL_UNSEEN = "natural (unseen speakers)"


def voice_groups(speaker: str | None) -> list[str]:
    """The groups an utterance is scored in besides the whole set: its family, and
    :data:`NATURAL_UNSEEN` for a neural voice with moved formants (dev and test draw vocal-tract
    factors that train never uses, so these are speakers the model never heard). ``[]`` for a
    speaker of no known engine (a real corpus) or none."""
    if not speaker:
        return []
    family = voice_family(speaker)
    if family == "other":
        return []
    return [family, NATURAL_UNSEEN] if is_natural_voice(speaker) and perturbation(speaker) != 1.0 else [family]
