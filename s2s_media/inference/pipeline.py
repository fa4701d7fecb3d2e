"""The one encode-then-search core: a :class:`Searcher` built once from a model and one resolved
:class:`~s2s_media.config.DecodeConfig`.

Every user-facing path decodes through a Searcher: :class:`~s2s_media.inference.transcriber.Transcriber`,
evaluation (:mod:`s2s_media.inference.evaluate`), the streaming recogniser (incremental mode),
the captioner and ``scripts/tune_lm.py``. The Searcher owns the task prefix, the language model
fusion and the checks (known method, CTC head, beam), so no two paths can decode differently
with the same settings: streaming and offline decoding share it.

Batch mode: :meth:`Searcher.encode` then :meth:`Searcher.search` (or :meth:`Searcher.decode_batch`
for both, every method on one encoder pass). Incremental mode: :meth:`Searcher.ctc_stream` gives
a CTC prefix search to advance chunk by chunk, :meth:`Searcher.rescore` re-ranks its n-best with
the attention decoder at an endpoint. Captions: :meth:`Searcher.caption`.

Inputs may be numpy arrays (the transcriber and the streaming recogniser pass numpy; the model turns them into
its own kind, :meth:`~s2s_media.models.seq2seq.Seq2SeqModel.as_input`) or tensors on the model's device
(evaluation). The attention beam search runs either model's decoder (its bookkeeping is numpy).
"""
from __future__ import annotations

from collections.abc import Sequence

from s2s_media.config import DecodeConfig
from s2s_media.decoding.beam_search import beam_search
from s2s_media.decoding.context import Context
from s2s_media.decoding.ctc import CTCPrefixBeamSearch
from s2s_media.decoding.native import NativeCTCSearch
from s2s_media.decoding.rescoring import RescoredHyp, attention_rescoring_ranked
from s2s_media.decoding.search import CTC_METHODS, SEARCHES, ctc_search_for
from s2s_media.decoding.timing import ctc_align
from s2s_media.decoding.types import CTCHyp, Decoded
from s2s_media.errors import UserError
from s2s_media.inference.loaded import LoadedModel
from s2s_media.text.tokenizer import task_prefix


BIASABLE_METHODS = ("ctc_prefix_beam", "rescoring")     # the methods a context (hotwords, a grammar) acts in


def check_methods(methods: Sequence[str]) -> list[str]:
    """UserError unless every name is a decoding method."""
    for m in methods:
        if m not in SEARCHES:
            raise UserError(f"--decoding {m}: unknown method; choose from {', '.join(SEARCHES)}")
    return list(methods)


class Searcher:
    """Encode then search with one model and one resolved decoding configuration.

    loaded: the model (on its device already), tokenizer and language model.
    decode: the settings every search uses: the model's ``decode`` block with the run's overrides
        applied once (``DecodeConfig.override``).
    task: ``asr`` or ``caption``: the decoder prefix (:func:`~s2s_media.text.tokenizer.task_prefix`).
    methods: the search methods :meth:`decode_batch` runs; default ``[decode.method]``.
    context: hotwords or a phrase grammar (:mod:`s2s_media.decoding.context`) for the CTC prefix
        searches (``ctc_prefix_beam``, ``rescoring``); the other methods refuse one.
    nbest: hypotheses each result keeps in ``alternatives`` (1: none).
    """

    def __init__(self, loaded: LoadedModel, decode: DecodeConfig, task: str = "asr",
                 methods: Sequence[str] | None = None, context: Context | None = None, nbest: int = 1):
        self.model, self.tokenizer, self.decode = loaded.model, loaded.tokenizer, decode
        self.task = task
        self.methods = check_methods(methods if methods is not None else [decode.method])
        if task == "asr":
            needs_ctc = [m for m in self.methods if m in CTC_METHODS]
            if needs_ctc and self.model.ctc is None:
                raise UserError(f"--decoding {needs_ctc[0]}: this model has no CTC head (ctc_weight 0); "
                                "use --decoding attention")
        if decode.beam < 1:
            raise UserError(f"--beam {decode.beam}: must be at least 1")
        if context is not None:
            unbiased = [m for m in self.methods if m not in BIASABLE_METHODS]
            if unbiased:
                raise UserError(f"--decoding {unbiased[0]}: hotwords and phrase lists work in the CTC prefix searches "
                                f"only; use --decoding {' or '.join(BIASABLE_METHODS)}")
        if nbest < 1:
            raise UserError(f"--alternatives {nbest}: must be at least 1")
        self.context, self.nbest = context, nbest
        self.prefix = task_prefix(self.tokenizer, task)
        self.lm = loaded.fusion(decode)
        self.row_by_row = loaded.batch_dependent      # decode_batch decodes each row alone

    @property
    def method(self) -> str:
        """The first (usually the only) method."""
        return self.methods[0]

    # ---- batch mode
    def encode(self, x, lengths=None):
        """Audio ``x (B, T, F)``, ``lengths (B,)`` -> memory ``(B, T', d)``, mask ``(B, T')``, in chunks when
        ``decode.chunk_size`` is set; images ``x (B, 3, H, W)`` -> memory ``(B, h*w, d)``. Numpy inputs become
        the model's kind; the outputs are the model's kind."""
        if self.task == "caption":
            return self.model.encode(self.model.as_input(x), None, modality="image")
        return self.model.encode(self.model.as_input(x), self.model.as_input(lengths),
                                 chunk_size=self.decode.chunk_size, left_chunks=self.decode.left_chunks)

    def search(self, memory, mask, method: str | None = None) -> list[Decoded]:
        """One method (default :attr:`method`) over encoder output: B results."""
        return SEARCHES[method or self.method](self.model, memory, mask, self.prefix, self.decode, self.lm,
                                               context=self.context, nbest=self.nbest)

    def decode_batch(self, feats, lengths, align: bool = False) -> dict[str, list[Decoded]]:
        """feats: (B, T, F), lengths: (B,) -> per method, B results (one encoder pass). ``align``: results
        without frames get them (:meth:`add_frames`).

        A row's result never depends on the rest of the batch. For a model whose quantisation makes it
        so (``LoadedModel.batch_dependent``: one activation scale per batch), each row is decoded alone,
        unpadded (docs/benchmarks.md: the cost in speed)."""
        if self.row_by_row and (len(feats) > 1 or feats.shape[1] > int(lengths[0])):
            rows = [self.decode_batch(feats[i:i + 1, :int(lengths[i])], lengths[i:i + 1], align)
                    for i in range(len(feats))]
            return {m: [r[m][0] for r in rows] for m in self.methods}
        with self.model.inference_mode():
            memory, mask = self.encode(feats, lengths)
            results = {m: self.search(memory, mask, m) for m in self.methods}
            if align:
                for hyps in results.values():
                    self.add_frames(memory, mask, hyps)
            return results

    def add_frames(self, memory, mask, hyps: list[Decoded]) -> None:
        """Give hypotheses without frames (attention) their tokens' peak frames and posteriors by forced
        alignment to the CTC posteriors, when the model has a CTC head (see :mod:`s2s_media.decoding.timing`)."""
        if self.model.ctc is None or all(not h.tokens or len(h.frames) == len(h.tokens) for h in hyps):
            return
        log_probs = None
        for j, h in enumerate(hyps):
            if h.tokens and len(h.frames) != len(h.tokens):
                if log_probs is None:
                    log_probs = self.model.ctc(memory)
                aligned = ctc_align(log_probs[j, : int(mask[j].sum())], h.tokens)
                if aligned is not None:
                    h.frames, h.probs = aligned

    # ---- incremental (streaming) mode
    def ctc_stream(self, context: Context | None = None) -> CTCPrefixBeamSearch | NativeCTCSearch:
        """A CTC prefix beam search to advance chunk by chunk, with this searcher's implementation
        (``decode.ctc_search``), beam, pruning and LM, and ``context`` (default: the searcher's)."""
        d = self.decode
        context = context if context is not None else self.context
        options = dict(blank_skip=d.blank_skip, lm=self.lm, token_floor=d.token_floor or None, context=context)
        if ctc_search_for(d, context) == "native":
            return NativeCTCSearch(self.tokenizer.vocab_size, d.beam, **options)
        return CTCPrefixBeamSearch(d.beam, **options)

    def rescore(self, memory, mask, nbests: list[list[CTCHyp]], keep: int = 1) -> list[list[RescoredHyp]]:
        """Re-rank each CTC n-best (its best ``decode.rescore_nbest``, at least ``keep``; 0 = all) with the
        attention decoder; per utterance its hypotheses best first. memory (B, T, d), mask (B, T)."""
        if self.decode.rescore_nbest > 0:
            nbests = [n[:max(self.decode.rescore_nbest, keep)] for n in nbests]
        with self.model.inference_mode():
            return attention_rescoring_ranked(self.model.decoder, self.model.as_input(memory),
                                              self.model.as_input(mask), nbests, self.prefix, self.decode.ctc_weight)

    # ---- captions
    def caption(self, memory, mask, attention: bool = False) -> list:
        """Attention beam search of at most ``decode.caption_max_len`` tokens; per image its best
        :class:`~s2s_media.decoding.beam_search.Hypothesis` (with its cross-attention when ``attention``)."""
        d = self.decode
        return beam_search(self.model.decoder, memory, mask, self.prefix, beam=d.beam, max_len=d.caption_max_len,
                           length_penalty=d.length_penalty, return_attention=attention, nbest=1)
