"""A small punctuation and casing tagger: dilated convolutions over word embeddings.

Each word of a normalised transcript gets two labels (:mod:`s2s_media.text.punctuation`): the mark
after it and its case. A word is its embedding plus the embedding of its hashed suffix (so unknown
words keep a hint of their kind); residual dilated 1-D convolutions give every word a window of
``1 + (kernel - 1) * sum(dilations)`` words, enough to see a question's first word from its last.
Convolutions rather than an RNN: training and inference run in parallel over the words, which keeps
the CPU cost far below the speech decoder's.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from s2s_media.errors import ConfigError, UserError
from s2s_media.text.punctuation import CASES, MARKS, WordVocab
from s2s_media.typed import from_dict, to_dict

KIND = "punctuation"          # the ``kind`` entry of a punctuation model file


@dataclass
class PunctuationModelConfig:
    dim: int = 128                       # embedding and convolution channels
    kernel: int = 3                      # convolution width, in words (odd)
    dilations: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 1])   # one residual block each
    dropout: float = 0.1

    def __post_init__(self):
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"kernel {self.kernel}: must be odd and positive")
        if self.dim < 1 or not self.dilations or min(self.dilations) < 1:
            raise ValueError("dim and every dilation must be positive, with at least one block")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout {self.dropout}: must be in [0, 1)")


class _Block(nn.Module):
    """``x + conv(norm(x))``, with padded positions kept at zero (so a batch equals its sequences alone)."""

    def __init__(self, dim: int, kernel: int, dilation: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv1d(dim, 2 * dim, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x: (B, T, dim)``, ``mask: (B, T, 1)`` float -> ``(B, T, dim)``."""
        h = self.conv((self.norm(x) * mask).transpose(1, 2)).transpose(1, 2)
        h = nn.functional.glu(h, dim=-1)
        return (x + self.drop(h)) * mask


class PunctuationModel(nn.Module):
    """Word ids and suffix ids ``(B, T)`` -> mark logits ``(B, T, len(MARKS))`` and case logits
    ``(B, T, len(CASES))``. Id 0 pads in both inputs."""

    def __init__(self, cfg: PunctuationModelConfig, vocab_size: int, suffix_buckets: int):
        super().__init__()
        self.cfg = cfg
        self.words = nn.Embedding(vocab_size, cfg.dim, padding_idx=0)
        self.suffixes = nn.Embedding(suffix_buckets, cfg.dim, padding_idx=0)
        self.blocks = nn.ModuleList(_Block(cfg.dim, cfg.kernel, d, cfg.dropout) for d in cfg.dilations)
        self.norm = nn.LayerNorm(cfg.dim)
        self.marks = nn.Linear(cfg.dim, len(MARKS))
        self.cases = nn.Linear(cfg.dim, len(CASES))

    def forward(self, ids: torch.Tensor, suffixes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = (ids != 0).unsqueeze(-1).to(self.words.weight.dtype)
        x = (self.words(ids) + self.suffixes(suffixes)) * mask
        for block in self.blocks:
            x = block(x, mask)
        x = self.norm(x)
        return self.marks(x), self.cases(x)

    @torch.inference_mode()
    def tag(self, ids: np.ndarray, suffixes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`forward` on numpy ``(B, T)`` int64 ids -> mark and case logits, numpy: what
        :class:`~s2s_media.inference.punctuation.Punctuator` calls (the ONNX tagger has the same method)."""
        marks, cases = self(torch.from_numpy(ids), torch.from_numpy(suffixes))
        return marks.float().numpy(), cases.float().numpy()


def to_checkpoint(model: PunctuationModel, vocab: WordVocab, forms: dict[str, str], meta: dict) -> dict:
    """The plain dict a punctuation model file holds: ``kind``, ``model`` (the state dict, float
    weights as float16), ``config``, ``vocab`` (:meth:`WordVocab.to_dict`), ``forms`` (words cased
    their own way) and ``meta``."""
    state = {k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items()}
    return {"kind": KIND, "model": state, "config": to_dict(model.cfg), "vocab": vocab.to_dict(),
            "forms": dict(forms), "meta": dict(meta)}


def from_checkpoint(ckpt: dict, where: str = "punctuation model") -> tuple[PunctuationModel, WordVocab, dict, dict]:
    """``(model in eval mode, vocab, forms, meta)`` from :func:`to_checkpoint`'s dict; UserError naming ``where``."""
    if ckpt.get("kind") != KIND:
        raise UserError(f"{where}: not a punctuation model (kind {ckpt.get('kind')!r}); "
                        "make one with 's2s-media punctuation train'")
    try:
        cfg = from_dict(PunctuationModelConfig, ckpt["config"], "config")
        vocab = WordVocab.from_dict(ckpt["vocab"])
        model = PunctuationModel(cfg, len(vocab), vocab.suffix_buckets)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()})
    except (KeyError, TypeError, ConfigError, RuntimeError) as e:
        reason = (str(e).strip().splitlines() or [""])[0][:160]
        raise UserError(f"{where}: unusable punctuation model ({type(e).__name__}: {reason})") from None
    return model.eval(), vocab, dict(ckpt.get("forms", {})), dict(ckpt.get("meta", {}))
