"""Deprecated path: moved to s2s_media.inference.transcriber, inputs, sharding, checkpoint and
s2s_media.decoding.timing (kept for one release)."""
from s2s_media._deprecated import moved

__getattr__ = moved(__name__, "s2s_media.inference.transcriber", "s2s_media.inference.inputs",
                    "s2s_media.inference.sharding", "s2s_media.decoding.timing", "s2s_media.inference.checkpoint",
                    "s2s_media.api")


def default_model_path():
    """Deprecated: ``s2s_media.inference.checkpoint.bundled_model_path("asr")``."""
    return __getattr__("bundled_model_path")("asr")


def load_speech_model(path=None, device: str = "auto"):
    """Deprecated: ``s2s_media.load_model(path, device, task="asr")``."""
    return __getattr__("load")(path, device, task="asr")


def encoder_frame_shift(model) -> float:
    """Deprecated: ``model.encoders["audio"].frame_shift``."""
    return model.encoders["audio"].frame_shift
