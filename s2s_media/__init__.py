"""s2s-media: streaming speech-to-text and image captioning on one shared attention decoder.

``load_model()`` loads the bundled default ASR model, ``load_model(path)`` a checkpoint; the
returned :class:`~s2s_media.transcribe.SpeechModel` has ``transcribe(path_or_array, **opts)``,
which returns the same record as ``s2s-media transcribe``.
"""

__version__ = "0.1.0"


def load_model(path=None, device: str = "auto"):
    """The model at ``path`` (default: the bundled ``s2s_media/assets/asr_default.pt``) on ``device``
    (``auto``, ``cpu`` or ``cuda``), as a :class:`~s2s_media.transcribe.SpeechModel`."""
    from s2s_media.transcribe import load_speech_model
    return load_speech_model(path, device)


__all__ = ["__version__", "load_model"]
