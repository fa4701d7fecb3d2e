"""The search methods: encoder output -> hypotheses, one small function per method.

Each method is a function in ``SEARCHES`` with one signature; adding a method is one entry
(and its name in :data:`s2s_media.methods.DECODING_METHODS`). Several methods can share one
encoder pass (``evaluate --decoding all``). :class:`s2s_media.inference.pipeline.Searcher`
is what user-facing code calls: it owns the task prefix, the language model and these checks.
"""
from __future__ import annotations

from typing import Callable


from s2s_media.arrays import to_numpy
from s2s_media.config import DecodeConfig
from s2s_media.decoding.beam_search import beam_search
from s2s_media.decoding.context import Context
from s2s_media.decoding.ctc import ctc_greedy, ctc_prefix_beam_search_batch
from s2s_media.decoding.native import native_nbest_batch
from s2s_media.decoding.rescoring import attention_rescoring_ranked
from s2s_media.decoding.timing import hypothesis_confidences
from s2s_media.decoding.types import CTCHyp, Decoded
from s2s_media.errors import UserError
from s2s_media.methods import DECODING_METHODS


# (model (a Seq2SeqModel or its ONNX stand-in), memory (B, T, D), mask (B, T), decoder prefix, options, fused
#  LM or None, *, context=None (hotwords, a grammar), nbest=1 (hypotheses wanted)) -> B results; with nbest > 1 each result holds
#  its n best in ``alternatives``
SearchFn = Callable[..., list[Decoded]]


def _need_ctc(model, method: str) -> None:
    if model.ctc is None:
        raise UserError(f"--decoding {method}: this model has no CTC head (ctc_weight 0); use --decoding attention")


def _decoded(ranked: list[CTCHyp], nbest: int) -> Decoded:
    """The best of a ranked CTC list as a :class:`Decoded`, with the ``nbest`` best as alternatives when
    more than one is asked for: scores are what the list was ranked by, confidences their share of
    the whole list's probability (:func:`~s2s_media.decoding.timing.hypothesis_confidences`)."""
    if not ranked:
        return Decoded([], float("-inf"))
    alts = []
    if nbest > 1:
        conf = hypothesis_confidences([h.total for h in ranked])
        alts = [Decoded(h.tokens, h.total, h.frames, h.probs, confidence=c) for h, c in zip(ranked[:nbest], conf)]
    best = ranked[0]
    return Decoded(best.tokens, best.score, best.frames, best.probs, alts)


def search_ctc_greedy(model, memory, mask, prefix, cfg, lm=None, *, context=None, nbest=1) -> list[Decoded]:
    """Best path: one hypothesis (hotwords, a grammar and alternatives need a beam search)."""
    _need_ctc(model, "ctc_greedy")
    return [_decoded([h], nbest) for h in ctc_greedy(model.ctc(memory), mask.sum(1))]


# the CTC prefix beam search implementations (``decode.ctc_search``): same arguments, same results
CTC_SEARCHES = {"python": ctc_prefix_beam_search_batch, "native": native_nbest_batch}


def ctc_search_for(cfg: DecodeConfig, context: Context | None) -> str:
    """The prefix search implementation to run: ``decode.ctc_search``, except that hotwords and grammars
    always run in the Python search. flashlight's beam cannot also keep the prefixes the unbiased search
    would keep, so partial matches crowd them out: +5.4 points of distractor WER against +0.0 in Python
    (docs/benchmarks.md)."""
    return "python" if context is not None else cfg.ctc_search


def _ctc_nbest(model, memory, mask, cfg, lm, context=None):
    return CTC_SEARCHES[ctc_search_for(cfg, context)](model.ctc(memory), to_numpy(mask.sum(1)), beam=cfg.beam,
                                        blank_skip=cfg.blank_skip, lm=lm, token_floor=cfg.token_floor or None,
                                        context=context)


def search_ctc_prefix_beam(model, memory, mask, prefix, cfg, lm=None, *, context=None, nbest=1) -> list[Decoded]:
    _need_ctc(model, "ctc_prefix_beam")
    return [_decoded(n, nbest) for n in _ctc_nbest(model, memory, mask, cfg, lm, context)]


def search_attention(model, memory, mask, prefix, cfg, lm=None, *, context=None, nbest=1) -> list[Decoded]:
    """The attention decoder alone (the language model and hotwords are fused into the CTC searches only)."""
    if context is not None:
        raise UserError("--decoding attention: hotwords and phrase lists need a CTC search; use --decoding "
                        "rescoring or ctc_prefix_beam")
    hyps = beam_search(model.decoder, memory, mask, prefix, beam=cfg.beam, max_len=lambda t: t + 10,
                       length_penalty=cfg.length_penalty, nbest=None if nbest > 1 else 1)
    out = []
    for h in hyps:
        if not h:
            out.append(Decoded([], float("-inf")))
            continue
        conf = hypothesis_confidences([x.score for x in h])
        alts = [Decoded(x.tokens, x.score, confidence=c) for x, c in zip(h[:nbest], conf)] if nbest > 1 else []
        out.append(Decoded(h[0].tokens, h[0].score, alternatives=alts))
    return out


def search_rescoring(model, memory, mask, prefix, cfg, lm=None, *, context=None, nbest=1) -> list[Decoded]:
    _need_ctc(model, "rescoring")
    lists = _ctc_nbest(model, memory, mask, cfg, lm, context)
    if cfg.rescore_nbest > 0:
        lists = [n[:max(cfg.rescore_nbest, nbest)] for n in lists]
    return [_decoded(r, nbest) for r in attention_rescoring_ranked(model.decoder, memory, mask, lists, prefix,
                                                                   cfg.ctc_weight)]


SEARCHES: dict[str, SearchFn] = {
    "ctc_greedy": search_ctc_greedy,
    "ctc_prefix_beam": search_ctc_prefix_beam,
    "attention": search_attention,
    "rescoring": search_rescoring,
}
assert tuple(SEARCHES) == DECODING_METHODS, "SEARCHES and s2s_media.methods.DECODING_METHODS differ"
CTC_METHODS = tuple(m for m in SEARCHES if m != "attention")   # the methods that need a CTC head


def parse_methods(spec: str) -> list[str]:
    """``"rescoring"``, ``"ctc_greedy,attention"`` or ``"all"`` -> a list of method names."""
    methods = list(SEARCHES) if spec == "all" else [m.strip() for m in spec.split(",") if m.strip()]
    for m in methods:
        if m not in SEARCHES:
            raise UserError(f"--decoding {m}: unknown method; choose from {', '.join(SEARCHES)} or all")
    return methods
