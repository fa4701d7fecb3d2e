"""Captions of a horizontally flipped image: the words that name a side swap sides."""
from __future__ import annotations

import re

_MIRROR = {"left": "right", "right": "left", "leftmost": "rightmost", "rightmost": "leftmost",
           "lefthand": "righthand", "righthand": "lefthand"}
_MIRROR_RE = re.compile(r"\b(" + "|".join(_MIRROR) + r")\b")


def mirror_caption(text: str) -> str:
    """The caption of the horizontally flipped image: ``left`` <-> ``right`` (whole words, lower case).

    ``right`` in the sense of "correct" is swapped too; captions rarely use it.
    """
    return _MIRROR_RE.sub(lambda m: _MIRROR[m.group(1)], text)
