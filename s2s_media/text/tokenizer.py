"""Tokenizers behind one interface: characters, words and SentencePiece BPE.

Every tokenizer reserves the same special ids, so CTC, the decoder and the search agree:
``0 <blank>``, ``1 <unk>``, ``2 <sos>``, ``3 <eos>``, then task tokens (``<asr>``,
``<caption>``, ...), then the ordinary units. A tokenizer serialises to a plain dict
(stored in checkpoints, loadable with ``weights_only=True``).
"""
from __future__ import annotations

import abc
import collections
import io
import os
import tempfile
from typing import Iterable

BLANK, UNK, SOS, EOS = 0, 1, 2, 3
SPECIALS = ["<blank>", "<unk>", "<sos>", "<eos>"]
IGNORE_ID = -1  # padding value for targets, ignored by the losses


class Tokenizer(abc.ABC):
    """Maps normalised text to ids and back. ``units`` excludes the special and task tokens."""

    kind: str

    def __init__(self, units: list[str], tasks: Iterable[str] = ()):
        self.tasks = list(tasks)
        self.itos: list[str] = SPECIALS + [f"<{t}>" for t in self.tasks] + list(units)
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self.num_reserved = len(SPECIALS) + len(self.tasks)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def task_id(self, task: str) -> int:
        """Id of a task token such as ``asr`` or ``caption``."""
        if task not in self.tasks:
            raise KeyError(f"task '{task}' not in this tokenizer's tasks {self.tasks}")
        return self.stoi[f"<{task}>"]

    def prefix(self, task: str | None = None) -> list[int]:
        """The decoder's start sequence: ``[<sos>]``, plus the task token when the tokenizer has tasks."""
        if not self.tasks:
            return [SOS]
        return [SOS, self.task_id(task or self.tasks[0])]

    @abc.abstractmethod
    def encode(self, text: str) -> list[int]:
        """Normalised text -> unit ids (no specials)."""

    @abc.abstractmethod
    def decode(self, ids: Iterable[int]) -> str:
        """Unit ids -> text; special and task ids are dropped."""

    def to_dict(self) -> dict:
        return {"kind": self.kind, "units": self.itos[self.num_reserved:], "tasks": self.tasks}

    def _units(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids if self.num_reserved <= i < len(self.itos)]


class CharTokenizer(Tokenizer):
    """Characters (Unicode code points of any script); the space is the visible unit ``▁``."""

    kind = "char"

    @classmethod
    def train(cls, texts: Iterable[str], tasks: Iterable[str] = ()) -> "CharTokenizer":
        chars = sorted({c for t in texts for c in t.replace(" ", "▁")})
        return cls(chars, tasks)

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(c, UNK) for c in text.replace(" ", "▁")]

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join("".join(self._units(ids)).replace("▁", " ").split())


class WordTokenizer(Tokenizer):
    """Whole words with a minimum frequency; rarer words become ``<unk>`` (captioning)."""

    kind = "word"

    @classmethod
    def train(cls, texts: Iterable[str], tasks: Iterable[str] = (), min_freq: int = 1) -> "WordTokenizer":
        counts = collections.Counter(w for t in texts for w in t.split())
        words = sorted(w for w, c in counts.items() if c >= min_freq)
        return cls(words, tasks)

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(w, UNK) for w in text.split()]

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self._units(ids))


class SentencePieceTokenizer(Tokenizer):
    """SentencePiece (BPE or unigram). The serialised model proto travels inside the dict."""

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes, tasks: Iterable[str] = ()):
        import sentencepiece as spm
        self.model_proto = bytes(model_proto)
        self.sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        pieces = [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())]
        # sentencepiece's own id 0 is <unk>; we keep our reserved ids and map pieces after them
        units = [p for i, p in enumerate(pieces) if not self.sp.is_unknown(i) and not self.sp.is_control(i)]
        super().__init__(units, tasks)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 256, model_type: str = "bpe",
              tasks: Iterable[str] = (), character_coverage: float = 1.0) -> "SentencePieceTokenizer":
        """Fit on normalised ``texts``. ``character_coverage``: the share of characters given their own
        piece (1.0 keeps every one; 0.9995 for Chinese and Japanese, see
        :attr:`s2s_media.text.language.Language.character_coverage`); the rest map to ``<unk>``."""
        import sentencepiece as spm
        texts = [t for t in texts if t]
        model = io.BytesIO()
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
            f.write("\n".join(texts))
            name = f.name
        try:
            spm.SentencePieceTrainer.train(
                input=name, model_writer=model, vocab_size=vocab_size, model_type=model_type,
                character_coverage=character_coverage, bos_id=-1, eos_id=-1, unk_id=0, pad_id=-1,
                hard_vocab_limit=False, minloglevel=2, num_threads=1)
        finally:
            os.unlink(name)
        return cls(model.getvalue(), tasks)

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(p, UNK) for p in self.sp.encode(text, out_type=str)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode_pieces(self._units(ids)).strip()

    def to_dict(self) -> dict:
        return {"kind": self.kind, "model_proto": self.model_proto, "tasks": self.tasks}


_KINDS = {"char": CharTokenizer, "word": WordTokenizer, "sentencepiece": SentencePieceTokenizer}


def tokenizer_from_dict(d: dict) -> Tokenizer:
    """Inverse of :meth:`Tokenizer.to_dict`."""
    kind = d.get("kind")
    if kind not in _KINDS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; expected one of {sorted(_KINDS)}")
    if kind == "sentencepiece":
        return SentencePieceTokenizer(d["model_proto"], d.get("tasks", ()))
    return _KINDS[kind](list(d["units"]), d.get("tasks", ()))


def task_prefix(tokenizer: Tokenizer, task: str) -> list[int]:
    """The decoder start sequence for ``task`` (``asr`` or ``caption``): ``<sos>`` and the task's token.

    A speech tokenizer trained without task tokens (a single-task model) starts with ``<sos>``
    alone when asked for ``asr``; any other missing task raises, as :meth:`Tokenizer.prefix` does.
    """
    return tokenizer.prefix(task if task in tokenizer.tasks or task != "asr" else None)
