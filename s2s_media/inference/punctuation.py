"""Restoring punctuation and casing on final transcripts: :class:`Punctuator`.

``Punctuator.load(path)`` reads a punctuation model file (``s2s-media punctuation train``;
``None`` takes the bundled ``s2s_media/assets/punct_default.pt``, or its ONNX form ``punct_default.onnx``
without torch), and ``restore(words)`` maps each
normalised word to exactly one written word (``["is", "it", "you"] -> ["Is", "it", "you?"]``), so
whatever is attached to a word (times, confidence) stays with it. Only ASCII case changes and one
mark is added: :func:`s2s_media.text.punctuation.strip_word` gives every input word back.

A model file is a plain dict read with ``weights_only=True``
(:func:`s2s_media.models.punctuation.to_checkpoint` says what it holds), run by torch, or
``punctuation.onnx`` (what ``s2s-media export --format onnx`` ships in an ONNX model directory,
:class:`~s2s_media.inference.onnx_runtime.OnnxTagger`), run without torch. Either is a *tagger*:
``tag(ids, suffixes)`` on numpy arrays.
"""
from __future__ import annotations

import dataclasses
import functools
from importlib import resources
from pathlib import Path

import numpy as np

from s2s_media.errors import UserError
from s2s_media.extras import is_train_module, needs_train
from s2s_media.inference.events import Final
from s2s_media.inference.loaded import torch_importable
from s2s_media.inference.onnx_runtime import OnnxTagger
from s2s_media.text.punctuation import NORMALISED_WORD, LabelScores, WordVocab, apply_labels, labels_from_text
from s2s_media.text.tokenizer import Tokenizer

BUNDLED_PUNCTUATION = "assets/punct_default.pt"    # inside the package, beside asr_default.pt
BUNDLED_PUNCTUATION_ONNX = "assets/punct_default.onnx"   # its ONNX form (scripts/export_bundled_onnx.py)


def bundled_punctuation_path(onnx: bool | None = None) -> Path:
    """The bundled punctuation model: its ONNX form when ``onnx`` (what a speech model on the ONNX runtime
    takes, so that torch stays unimported, and what the bundled model's ONNX form shares), the torch file when
    not; ``None``: the ONNX form only where torch cannot be imported. UserError when this install lacks it."""
    onnx = not torch_importable() if onnx is None else onnx
    name = BUNDLED_PUNCTUATION_ONNX if onnx else BUNDLED_PUNCTUATION
    path = Path(str(resources.files("s2s_media").joinpath(name)))
    if not path.is_file():
        raise UserError(f"no bundled punctuation model: {path} is missing from this install; pass one "
                        "(--punctuation-model FILE) or turn punctuation off (--no-punctuation)")
    return path


def writes_normalised_english(tokenizer: Tokenizer) -> bool:
    """True when every unit of an ASR tokenizer is lower-case ``a-z'`` (and the word separator):
    the transcripts the punctuation model was trained for."""
    units = tokenizer.itos[tokenizer.num_reserved:]
    return bool(units) and all(NORMALISED_WORD.fullmatch(u.replace("\u2581", "") or "a") for u in units)


class Punctuator:
    """A punctuation and casing model ready to restore transcripts (CPU, one thread is plenty).

    model: a tagger, ``tag(ids (B, T), suffixes (B, T)) -> (mark logits, case logits)`` on numpy
    (a torch :class:`~s2s_media.models.punctuation.PunctuationModel` in eval mode, or an
    :class:`~s2s_media.inference.onnx_runtime.OnnxTagger`).
    """

    def __init__(self, model, vocab: WordVocab, forms: dict[str, str], meta: dict | None = None):
        self.model, self.vocab, self.forms, self.meta = model, vocab, forms, meta or {}

    @classmethod
    def load(cls, path: str | Path | None = None) -> Punctuator:
        """From a model file (``.pt`` with torch, ``.onnx`` without); ``None`` loads the bundled default."""
        path = bundled_punctuation_path() if path is None else Path(path)
        if path.suffix == ".onnx":
            tagger = OnnxTagger(path)
            info = tagger.info
            return cls(tagger, WordVocab.from_dict(info["vocab"]), dict(info["forms"]), dict(info["meta"]))
        try:
            from s2s_media.checkpoint_io import load_checkpoint
            from s2s_media.models.punctuation import from_checkpoint
        except ModuleNotFoundError as e:
            if not is_train_module(e):
                raise
            raise needs_train(f"{path} (a torch punctuation model)") from None
        return cls(*from_checkpoint(load_checkpoint(path), str(path)))

    @classmethod
    def load_cached(cls, path: str | Path | None = None) -> Punctuator:
        """:meth:`load`, once per file and process: transcribers share the (read-only) model."""
        resolved = bundled_punctuation_path() if path is None else Path(path)
        return _load_cached(str(resolved.resolve()), resolved.stat().st_mtime_ns if resolved.is_file() else 0)

    def labels(self, words: list[str]) -> tuple[list[int], list[int]]:
        """``(marks, cases)`` label ids for ``words`` (see :mod:`s2s_media.text.punctuation`)."""
        if not words:
            return [], []
        ids, sufs = self.vocab.encode(words)
        marks, cases = self.model.tag(np.array([ids], np.int64), np.array([sufs], np.int64))
        return marks[0].argmax(-1).tolist(), cases[0].argmax(-1).tolist()

    def restore(self, words: list[str]) -> list[str]:
        """One written word per input word: ASCII case restored and a mark (``. , ? !``) added where due."""
        marks, cases = self.labels(list(words))
        return apply_labels(list(words), marks, cases, self.forms)

    def restore_text(self, text: str) -> str:
        """A normalised transcript as written text (``"hi there how are you" -> "Hi there, how are you?"``)."""
        return " ".join(self.restore(text.split()))

    def restore_final(self, final: Final) -> Final:
        """A streaming recogniser's final as written text: its words restored one for one, so each
        keeps its times and confidence; the text is the written words joined. A final whose word list
        is not its text's words (never expected) has the two restored separately."""
        plain = final.text.split()
        written = self.restore(plain)
        spoken = [w.word for w in final.words]
        forms = written if spoken == plain else self.restore(spoken)
        return dataclasses.replace(final, text=" ".join(written), words=[
            dataclasses.replace(w, word=new) for w, new in zip(final.words, forms, strict=True)])


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int) -> Punctuator:      # mtime: a rewritten file is read again
    return Punctuator.load(path)


def score_texts(punctuator: Punctuator, texts: list[str]) -> LabelScores:
    """Per-mark F1 and casing accuracy of ``punctuator`` on written ``texts``, each restored whole
    from its normalised words (texts whose words cannot be labelled are skipped)."""
    scores = LabelScores()
    for text in texts:
        words, marks, cases, _ = labels_from_text(text)
        if words:
            scores.add(marks, cases, *punctuator.labels(words))
    return scores
