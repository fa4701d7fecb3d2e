"""The user-facing model: one loaded checkpoint that transcribes and/or captions.

A checkpoint's ``model.modalities`` say what it can do: ``audio`` gives ``transcribe``,
``image`` gives ``caption``; a model trained on both does both with one shared decoder.
:func:`load` (what :func:`s2s_media.load_model` calls) reads plain and exported checkpoints
alike; without a path it takes the bundled default model of ``task`` (``asr`` or ``caption``).
Transcribing an ONNX model directory needs no torch; captioning does (the captioner is imported when used).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from s2s_media.arrays import to_numpy
from s2s_media.errors import AudioError, UserError
from s2s_media.frontend.audio import SAMPLE_RATE, resample, to_mono
from s2s_media.inference.loaded import TASKS, LoadedModel, bundled_model_path
from s2s_media.inference.loader import load_on_device
from s2s_media.inference.inputs import Item, discover, discover_images
from s2s_media.inference.transcriber import TranscribeOptions, Transcriber

MODALITY_ACTIONS = {"audio": "transcribe audio", "image": "caption images"}


class Model:
    """A loaded checkpoint on a device, what :func:`s2s_media.load_model` returns.

    Speech (``"audio"`` in :attr:`modalities`): ``transcribe(path_or_array)`` gives the record
    ``s2s-media transcribe`` writes; ``transcribe_files(paths)`` runs the batched pipeline of
    :mod:`s2s_media.inference.transcriber`. Images (``"image"``): ``caption(path_or_image)`` gives
    ``{"path", "caption", "score"}``; ``caption_files(paths)`` runs :mod:`s2s_media.inference.captioner`.
    Asking a model for a modality it was not trained on raises :class:`UserError`.
    """

    def __init__(self, loaded: LoadedModel, device):
        self.loaded, self.device = loaded, device
        self.model = loaded.model.to(device)

    @property
    def tokenizer(self):
        return self.loaded.tokenizer

    @property
    def config(self):
        return self.loaded.config

    @property
    def modalities(self) -> list[str]:
        """The inputs this model reads: ``["audio"]``, ``["image"]`` or both."""
        return list(self.model.encoders)

    def require(self, modality: str) -> None:
        """UserError unless the model has an encoder for ``modality``."""
        if modality not in self.model.encoders:
            can = " and ".join(MODALITY_ACTIONS[m] for m in self.modalities)
            raise UserError(f"this model cannot {MODALITY_ACTIONS[modality]}: it was trained to {can} only "
                            f"(model.modalities {self.modalities}); load a checkpoint trained with "
                            f"'{modality}' in model.modalities")

    # ---- speech
    def transcriber(self, options=None, **opts):
        """A :class:`~s2s_media.inference.transcriber.Transcriber`; ``opts`` are
        :class:`~s2s_media.inference.transcriber.TranscribeOptions` fields (overriding ``options``)."""
        self.require("audio")
        try:
            options = dataclasses.replace(options or TranscribeOptions(), **opts)
        except TypeError as e:
            raise TypeError(f"{e}; options are {[f.name for f in dataclasses.fields(TranscribeOptions)]}") from None
        return Transcriber(self.loaded, options)

    def transcribe(self, audio, sample_rate: int | None = None, **opts) -> dict:
        """Transcribe one recording: a path, or samples ``(samples,)`` / ``(samples, channels)`` at
        ``sample_rate`` (default 16 kHz). Returns the record (see :mod:`s2s_media.inference.transcriber`),
        capitals and ``. , ? !`` restored unless ``punctuation=False``; an unreadable file raises
        :class:`~s2s_media.errors.AudioError`."""
        tr = self.transcriber(**{"workers": 0, **opts})
        if isinstance(audio, (str, Path)):
            prep = tr.prepare(Item(str(audio), Path(audio).stem))
            if prep.error:
                raise AudioError(prep.error)
            return tr.transcribe_prepared(prep)
        wav = to_numpy(audio)
        wav = resample(to_mono(wav.astype(np.float32)), sample_rate or SAMPLE_RATE)
        if wav.size == 0:
            raise AudioError("transcribe: the audio array is empty; pass at least one sample")
        return tr.transcribe_array(wav)

    def transcribe_files(self, paths: Iterable[str | Path], recursive: bool = False, **opts) -> Iterator[dict]:
        """Records for every file found in ``paths`` (files, folders, manifests), in sorted order."""
        for _, rec in self.transcriber(**opts).run(discover(paths, recursive)):
            yield rec

    # ---- images
    def captioner(self, options=None, **opts):
        """A :class:`~s2s_media.inference.captioner.Captioner`; ``opts`` are
        :class:`~s2s_media.inference.captioner.CaptionOptions` fields (``beam``, ``max_len``, ``batch_size``,
        ``workers``, ``attention``), overriding ``options``."""
        self.require("image")
        from s2s_media.inference.captioner import Captioner, replace_options   # torch's (the train extra)
        return Captioner(self.loaded, self.device, replace_options(options, **opts))

    def caption(self, image, attention: bool = False, **opts) -> dict:
        """Caption one image: a path, a PIL image, an array ``(H, W[, 3|4])`` or a tensor ``(3, H, W)``.

        Returns ``{"path", "caption", "score"}`` (``path`` None for in-memory images); with
        ``attention=True`` also ``"words"`` and ``"attention"``, a float32 array ``(n_words, h, w)``
        (see :class:`~s2s_media.inference.captioner.AttentionMaps`). An unreadable file raises
        :class:`~s2s_media.errors.ImageError`.
        """
        from s2s_media.inference.captioner import as_pil
        done = self.captioner(**{"workers": 0, "batch_size": 1, **opts, "attention": attention}).caption_one(
            as_pil(image))
        if done.maps is not None:
            return {**done.record, "words": done.maps.words, "attention": done.maps.weights}
        return done.record

    def caption_files(self, paths: Iterable[str | Path], recursive: bool = False, **opts) -> Iterator[dict]:
        """Records for every image found in ``paths`` (files, folders), in sorted order; bad files give
        ``{"path", "error"}``."""
        for done in self.captioner(**opts).run(discover_images(paths, recursive)):
            yield done.record


def load(path: str | Path | None = None, device: str = "auto", task: str | None = None, runtime: str = "auto",
         threads: int = 0) -> Model:
    """Load a checkpoint on ``device`` (auto/cpu/cuda) as a :class:`Model`.

    path: a checkpoint from train, average or export; None takes the bundled default of ``task``
        (``asr`` when ``task`` is None too; its ONNX form with ``runtime="onnx"`` or where torch is missing).
    task: ``asr`` or ``caption``: with a path, checks that the model can do it (UserError if not).
    Exported checkpoints (``s2s-media export``: fp16 storage, optional dynamic int8) are restored
    transparently; int8 applies on the CPU only.
    runtime: ``auto`` runs an ONNX model directory (``s2s-media export --format onnx``) with onnxruntime on the
    CPU and a checkpoint with torch; ``onnx`` runs a checkpoint with onnxruntime too (exported once, cached);
    ``torch`` (see :mod:`s2s_media.inference.loader`). threads: onnxruntime's (0: all cores).
    """
    if task is not None and task not in TASKS:
        raise UserError(f"task {task!r}: unknown; choose from {', '.join(TASKS)}")
    path = Path(path) if path is not None else bundled_model_path(task or "asr", runtime)
    model = Model(*load_on_device(path, device, runtime, threads))
    if task is not None:
        model.require(TASKS[task])
    return model
