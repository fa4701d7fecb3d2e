"""Recognition over a loaded model: features -> encoder -> one or more search methods.

Each method is a small function in ``SEARCHES`` with one signature; adding a method is one
entry. Several methods can share one encoder pass (``evaluate --decoding all``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from s2s_media.config import DecodeConfig
from s2s_media.decoding.beam_search import beam_search
from s2s_media.decoding.ctc import ctc_greedy, ctc_prefix_beam_search_batch
from s2s_media.decoding.rescoring import attention_rescoring
from s2s_media.errors import UserError
from s2s_media.lm import LMFusion
from s2s_media.models.seq2seq import Seq2SeqModel


@dataclass
class Decoded:
    """One utterance's result: unit ids, score, and (CTC methods) each token's frame and posterior."""
    tokens: list[int]
    score: float
    frames: list[int] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)


# (model, memory (B, T, D), mask (B, T), decoder prefix, options, fused LM or None) -> B results
SearchFn = Callable[[Seq2SeqModel, torch.Tensor, torch.Tensor, list[int], DecodeConfig, LMFusion | None],
                    list[Decoded]]


def _need_ctc(model: Seq2SeqModel, method: str) -> None:
    if model.ctc is None:
        raise UserError(f"--decoding {method}: this model has no CTC head (ctc_weight 0); use --decoding attention")


def search_ctc_greedy(model, memory, mask, prefix, cfg, lm=None) -> list[Decoded]:
    _need_ctc(model, "ctc_greedy")
    return [Decoded(h.tokens, h.score, h.frames, h.probs) for h in ctc_greedy(model.ctc(memory), mask.sum(1))]


def _ctc_nbest(model, memory, mask, cfg, lm):
    return ctc_prefix_beam_search_batch(model.ctc(memory), mask.sum(1), beam=cfg.beam, blank_skip=cfg.blank_skip,
                                        lm=lm, token_floor=cfg.token_floor or None)


def search_ctc_prefix_beam(model, memory, mask, prefix, cfg, lm=None) -> list[Decoded]:
    _need_ctc(model, "ctc_prefix_beam")
    nbest = _ctc_nbest(model, memory, mask, cfg, lm)
    return [Decoded(n[0].tokens, n[0].score, n[0].frames, n[0].probs) if n else Decoded([], float("-inf"))
            for n in nbest]


def search_attention(model, memory, mask, prefix, cfg, lm=None) -> list[Decoded]:
    """The attention decoder alone (the language model is fused into the CTC searches only)."""
    hyps = beam_search(model.decoder, memory, mask, prefix, beam=cfg.beam, max_len=lambda t: t + 10,
                       length_penalty=cfg.length_penalty, nbest=1)
    return [Decoded(h[0].tokens, h[0].score) if h else Decoded([], float("-inf")) for h in hyps]


def search_rescoring(model, memory, mask, prefix, cfg, lm=None) -> list[Decoded]:
    _need_ctc(model, "rescoring")
    nbest = _ctc_nbest(model, memory, mask, cfg, lm)
    if cfg.rescore_nbest > 0:
        nbest = [n[:cfg.rescore_nbest] for n in nbest]
    best = attention_rescoring(model.decoder, memory, mask, nbest, prefix, cfg.ctc_weight)
    return [Decoded(h.tokens, h.score, h.frames, h.probs) for h in best]


SEARCHES: dict[str, SearchFn] = {
    "ctc_greedy": search_ctc_greedy,
    "ctc_prefix_beam": search_ctc_prefix_beam,
    "attention": search_attention,
    "rescoring": search_rescoring,
}


def parse_methods(spec: str) -> list[str]:
    """``"rescoring"``, ``"ctc_greedy,attention"`` or ``"all"`` -> a list of method names."""
    methods = list(SEARCHES) if spec == "all" else [m.strip() for m in spec.split(",") if m.strip()]
    for m in methods:
        if m not in SEARCHES:
            raise UserError(f"--decoding {m}: unknown method; choose from {', '.join(SEARCHES)} or all")
    return methods


@torch.inference_mode()
def decode_batch(model: Seq2SeqModel, feats: torch.Tensor, lengths: torch.Tensor, prefix: list[int],
                 methods: list[str], cfg: DecodeConfig, lm: LMFusion | None = None) -> dict[str, list[Decoded]]:
    """feats: (B, T, F), lengths: (B,) on the model's device -> per method, B results."""
    memory, mask = model.encode(feats, lengths, chunk_size=cfg.chunk_size, left_chunks=cfg.left_chunks)
    return {m: SEARCHES[m](model, memory, mask, prefix, cfg, lm) for m in methods}


def iterate_batches(loader, device) -> Iterator[tuple[dict, torch.Tensor, torch.Tensor]]:
    """Move collated batches to ``device``; batches whose items all failed yield no tensors."""
    for batch in loader:
        if batch["ids"]:
            yield batch, batch["feats"].to(device), batch["lengths"].to(device)
        else:
            yield batch, None, None
