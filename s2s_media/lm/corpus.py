"""Deprecated path: moved to s2s_media.training.lm s2s_media.lm.files (kept for one release)."""
from s2s_media._deprecated import moved

__getattr__ = moved(__name__, "s2s_media.training.lm", "s2s_media.lm.files")
