"""Deprecated path: moved to s2s_media.frontend.augment (kept for one release).

A package rather than ``augment.py``, so that git still sees ``s2s_media/augment.py`` renamed to
``s2s_media/frontend/augment.py`` when branches that edit it are merged.
"""
from s2s_media._deprecated import moved

__getattr__ = moved(__name__, "s2s_media.frontend.augment")
