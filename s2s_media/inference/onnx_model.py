"""An ONNX model directory behind the interfaces the torch pipelines read, so they run it unchanged.

:func:`load_onnx_model` returns a :class:`~s2s_media.inference.checkpoint.LoadedModel` whose ``model`` is an
:class:`OnnxSeq2Seq`: the parts of :class:`~s2s_media.models.seq2seq.Seq2SeqModel` that the
:class:`~s2s_media.inference.pipeline.Searcher`, the transcriber and the streaming recogniser use
(``encode``, ``encoders["audio"]`` with its streaming interface, ``ctc``, ``decoder`` for rescoring), each a
thin adapter over :class:`~s2s_media.inference.onnx_runtime.OnnxSpeechModel`: tensors become numpy arrays at
the call and come back with ``torch.from_numpy``. The searches are the same code as with torch weights.

The attention decoder runs teacher-forced only (rescoring); ``--decoding attention`` needs step-wise
decoding, which the ONNX directory does not hold: a clear error.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from s2s_media.config import config_from_dict
from s2s_media.errors import UserError
from s2s_media.inference.checkpoint import LoadedModel
from s2s_media.inference.onnx_runtime import ChunkCache, OnnxSpeechModel
from s2s_media.lm.files import lm_for_model
from s2s_media.models.attention_encoder import EncoderCache
from s2s_media.models.layers import lengths_to_mask


NOT_INCREMENTAL = ("--decoding attention: the ONNX runtime runs the attention decoder for rescoring only; use "
                   "--decoding rescoring (or ctc_prefix_beam, ctc_greedy), or --runtime torch")


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


def _to_numpy_cache(cache: EncoderCache) -> ChunkCache:
    inner = _to_numpy_cache(cache.inner) if cache.inner is not None else None
    return ChunkCache(_np(cache.offset), _np(cache.lengths), [_np(k) for k in cache.keys],
                      [_np(v) for v in cache.values], [_np(c) for c in cache.conv], inner)


def _to_torch_cache(cache: ChunkCache) -> EncoderCache:
    inner = _to_torch_cache(cache.inner) if cache.inner is not None else None
    t = torch.from_numpy
    return EncoderCache(t(cache.offset), t(cache.lengths), [t(k) for k in cache.keys], [t(v) for v in cache.values],
                        [t(c) for c in cache.conv], inner)


class OnnxAudioEncoder:
    """What decoding and streaming read of :class:`~s2s_media.models.seq2seq.AudioEncoder`, run by ONNX."""

    name = "onnx"

    def __init__(self, runtime: OnnxSpeechModel):
        self.runtime = runtime
        self.stride, self.right_context = runtime.stride, runtime.right_context
        self.frame_shift, self.output_dim = runtime.frame_shift, runtime.d_model

    def __call__(self, feats: torch.Tensor, lengths: torch.Tensor, chunk_size: int = 0, left_chunks: int = -1):
        """Log-mels ``(B, T, F)``, ``lengths (B,)`` -> memory ``(B, T', d)``, mask ``(B, T')``."""
        out, out_lengths = self.runtime.encode(_np(feats), _np(lengths), chunk_size, left_chunks)
        return torch.from_numpy(out), lengths_to_mask(torch.from_numpy(out_lengths), out.shape[1])

    def check_streamable(self) -> None:
        """Exported encoders are streamable (the export checks it)."""

    def normalise(self, feats: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.runtime.normalise(_np(feats)))

    def init_cache(self, batch: int, device=None) -> EncoderCache:
        return _to_torch_cache(self.runtime.init_cache(batch))

    def forward_chunk(self, feats: torch.Tensor, lengths: torch.Tensor, cache: EncoderCache,
                      max_cache_frames: int = -1):
        out, out_lengths, new = self.runtime.forward_chunk(_np(feats), _np(lengths), _to_numpy_cache(cache),
                                                           max_cache_frames)
        return torch.from_numpy(out), torch.from_numpy(out_lengths), _to_torch_cache(new)


class OnnxCTC:
    """``memory (B, T, d) -> log_probs (B, T, V)`` through ``ctc.onnx``."""

    def __init__(self, runtime: OnnxSpeechModel):
        self.runtime = runtime

    def __call__(self, memory: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.runtime.ctc_log_probs(_np(memory)))


class OnnxDecoder:
    """The teacher-forced attention decoder (:meth:`~s2s_media.models.decoder.Decoder.forward`) through
    ``decoder.onnx``: what attention rescoring calls."""

    incremental = False

    def __init__(self, runtime: OnnxSpeechModel):
        self.runtime = runtime
        self.vocab_size, self.d_model = runtime.vocab_size, runtime.d_model

    def __call__(self, tokens, memory, memory_mask, return_attention: bool = False, memory_index=None):
        if return_attention:
            raise UserError("the ONNX runtime's decoder gives no attention weights; use --runtime torch")
        index = None if memory_index is None else _np(memory_index)
        return torch.from_numpy(self.runtime.decoder_logits(_np(tokens), _np(memory), _np(memory_mask), index))

    def init_state(self, memory, memory_mask):
        raise UserError(NOT_INCREMENTAL)


class OnnxSeq2Seq:
    """The ONNX stand-in for :class:`~s2s_media.models.seq2seq.Seq2SeqModel` (speech only, CPU)."""

    def __init__(self, runtime: OnnxSpeechModel):
        self.runtime = runtime
        self.encoders = {"audio": OnnxAudioEncoder(runtime)}
        self.ctc, self.decoder = OnnxCTC(runtime), OnnxDecoder(runtime)
        self.vocab_size = runtime.vocab_size

    def encode(self, x: torch.Tensor, lengths: torch.Tensor | None = None, modality: str = "audio",
               chunk_size: int = 0, left_chunks: int = -1):
        if modality != "audio":
            raise UserError(f"this model has no {modality} encoder (an ONNX export holds the speech model only)")
        return self.encoders["audio"](x, lengths, chunk_size, left_chunks)

    def to(self, device) -> OnnxSeq2Seq:
        if torch.device(device).type != "cpu":
            raise UserError(f"--device {device}: the ONNX runtime runs on the CPU; use --device cpu or --runtime torch")
        return self

    def eval(self) -> OnnxSeq2Seq:
        return self


def load_onnx_model(directory: str | Path, lm: str | Path | None = None, threads: int = 1) -> LoadedModel:
    """An ONNX directory as a :class:`LoadedModel`; ``lm``: an LM file used in place of the shipped one."""
    runtime = OnnxSpeechModel(directory, threads)
    manifest = runtime.manifest
    cfg = config_from_dict(manifest["config"])
    lm_file = lm if lm is not None else runtime.lm_path
    model_lm = lm_for_model(lm_file, runtime.tokenizer) if lm_file is not None else None
    return LoadedModel(OnnxSeq2Seq(runtime), runtime.tokenizer, cfg, manifest.get("meta", {}), model_lm)
