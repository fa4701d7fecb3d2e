"""Deprecated path: moved to s2s_media.inference.captioner (kept for one release)."""
from s2s_media._deprecated import moved

__getattr__ = moved(__name__, "s2s_media.inference.captioner", "s2s_media.inference.inputs",
                    "s2s_media.inference.evaluate", "s2s_media.decoding.timing", "s2s_media.inference.checkpoint")


def default_model_path():
    """Deprecated: ``s2s_media.inference.checkpoint.bundled_model_path("caption")``."""
    return __getattr__("bundled_model_path")("caption")
