"""Deprecated path: the loader moved to s2s_media.inference.checkpoint, ``lm_from_dict`` to
s2s_media.lm.files and ``param_count`` to s2s_media.models.seq2seq (kept for one release)."""
from s2s_media._deprecated import moved

__getattr__ = moved(__name__, "s2s_media.inference.checkpoint", "s2s_media.lm.files", "s2s_media.models.seq2seq")
