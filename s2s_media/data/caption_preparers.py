"""Deprecated path: moved to s2s_media.data.preparers.caption (kept for one release)."""
from s2s_media._deprecated import moved

__getattr__ = moved(__name__, "s2s_media.data.preparers.caption")
