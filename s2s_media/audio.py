"""Deprecated path: moved to s2s_media.frontend.audio and s2s_media.frontend.logmel (kept for one release)."""
from s2s_media._deprecated import moved

__getattr__ = moved(__name__, "s2s_media.frontend.audio", "s2s_media.frontend.logmel")
