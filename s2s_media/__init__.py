"""s2s-media: streaming speech-to-text and image captioning on one shared attention decoder.

``load_model(path)`` loads a checkpoint as a :class:`~s2s_media.api.Model` that can do what
its ``model.modalities`` say: ``transcribe(path_or_array, **opts)`` for ``audio`` (the record
``s2s-media transcribe`` writes), ``caption(path_or_image, beam=...)`` for ``image`` (the record
``s2s-media caption`` writes). Without a path it loads the bundled default model of ``task``:
``load_model()`` the speech model ``s2s_media/assets/asr_default.pt``,
``load_model(task="caption")`` the captioning model ``s2s_media/assets/caption_default.pt``
(a clear error when the install does not include it).
"""

__version__ = "0.1.0"


def load_model(path=None, device: str = "auto", task: str | None = None, runtime: str = "auto", threads: int = 0):
    """The model at ``path`` on ``device`` (``auto``, ``cpu`` or ``cuda``) as a :class:`~s2s_media.api.Model`.

    task: ``"asr"`` or ``"caption"``. Without ``path`` it picks the bundled default model
    (``asr`` when ``task`` is None too); with a path it checks the model can do that task.
    Asking a model for a modality it lacks (``caption`` on a speech-only model) raises
    :class:`~s2s_media.errors.UserError`.
    runtime: ``auto`` (an ONNX model directory from ``s2s-media export --format onnx`` runs on onnxruntime, a
    checkpoint on torch), ``onnx`` or ``torch``; threads: onnxruntime's intra-op threads (0: every core).
    """
    # imported here, not at the top: importing any submodule (s2s_media.errors, ...) runs this file first,
    # and loading the API would pull every layer, and torch, into each of them
    from s2s_media.api import load
    return load(path, device, task, runtime, threads)


__all__ = ["__version__", "load_model"]
