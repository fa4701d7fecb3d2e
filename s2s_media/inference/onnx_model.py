"""An ONNX model directory behind the interfaces the pipelines read, so they run it unchanged, without torch.

:func:`load_onnx_model` returns a :class:`~s2s_media.inference.loaded.LoadedModel` whose ``model`` is an
:class:`OnnxSeq2Seq`: the parts of :class:`~s2s_media.models.seq2seq.Seq2SeqModel` that the
:class:`~s2s_media.inference.pipeline.Searcher`, the transcriber and the streaming recogniser use
(``encode``, ``encoders["audio"]`` with its streaming interface, ``ctc``, ``decoder`` for rescoring,
``as_input``, ``inference_mode``), each a thin adapter over
:class:`~s2s_media.inference.onnx_runtime.OnnxSpeechModel`, numpy in and out. The searches are the same code as
with torch weights.

The attention decoder is the teacher-forced graph; its step-wise form (``--decoding attention``,
:func:`~s2s_media.decoding.beam_search.beam_search`) feeds it each hypothesis' tokens so far and keeps the
last position's log-probabilities: no cache, so a step costs the whole prefix (quadratic in the output length,
fine for sentences; long files run in ``decode.batch_seconds`` pieces anyway).
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from s2s_media.arrays import lengths_to_mask, log_softmax, to_numpy
from s2s_media.config import config_from_dict
from s2s_media.errors import UserError
from s2s_media.inference.loaded import LoadedModel
from s2s_media.inference.onnx_runtime import ChunkCache, OnnxSpeechModel
from s2s_media.lm.files import lm_for_model


class OnnxAudioEncoder:
    """What decoding and streaming read of :class:`~s2s_media.models.seq2seq.AudioEncoder`, run by ONNX."""

    name = "onnx"

    def __init__(self, runtime: OnnxSpeechModel):
        self.runtime = runtime
        self.stride, self.right_context = runtime.stride, runtime.right_context
        self.frame_shift, self.output_dim = runtime.frame_shift, runtime.d_model

    def __call__(self, feats: np.ndarray, lengths: np.ndarray, chunk_size: int = 0, left_chunks: int = -1):
        """Log-mels ``(B, T, F)``, ``lengths (B,)`` -> memory ``(B, T', d)``, mask ``(B, T')`` bool."""
        out, out_lengths = self.runtime.encode(feats, lengths, chunk_size, left_chunks)
        return out, lengths_to_mask(out_lengths, out.shape[1])

    def check_streamable(self) -> None:
        """Exported encoders are streamable (the export checks it)."""

    def normalise(self, feats: np.ndarray) -> np.ndarray:
        return self.runtime.normalise(feats)

    def init_cache(self, batch: int, device=None) -> ChunkCache:
        return self.runtime.init_cache(batch)

    def forward_chunk(self, feats: np.ndarray, lengths: np.ndarray, cache: ChunkCache, max_cache_frames: int = -1):
        return self.runtime.forward_chunk(feats, lengths, cache, max_cache_frames)


class OnnxCTC:
    """``memory (B, T, d) -> log_probs (B, T, V)`` through ``ctc.onnx``."""

    def __init__(self, runtime: OnnxSpeechModel):
        self.runtime = runtime

    def __call__(self, memory: np.ndarray) -> np.ndarray:
        return self.runtime.ctc_log_probs(memory)


class OnnxDecoder:
    """The attention decoder through ``decoder.onnx``: teacher-forced (:meth:`~s2s_media.models.decoder.Decoder.forward`,
    what attention rescoring calls) and step by step (``init_state``/``step``, what the attention beam search
    calls). The state of a step is the tokens fed so far, ``(N, U)`` int64."""


    def __init__(self, runtime: OnnxSpeechModel):
        self.runtime = runtime
        self.vocab_size, self.d_model = runtime.vocab_size, runtime.d_model

    def __call__(self, tokens, memory, memory_mask, return_attention: bool = False, memory_index=None):
        if return_attention:
            raise UserError("the ONNX runtime's decoder gives no attention weights; use --runtime torch")
        return self.runtime.decoder_logits(tokens, memory, memory_mask, memory_index)

    def init_state(self, memory: np.ndarray, memory_mask: np.ndarray) -> np.ndarray:
        """No tokens yet for each of ``memory``'s ``N`` rows: ``(N, 0)``."""
        return np.zeros((memory.shape[0], 0), np.int64)

    def step(self, tokens: np.ndarray, state: np.ndarray, memory: np.ndarray, memory_mask: np.ndarray):
        """Feed ``tokens (N,)`` after ``state (N, U)``: ``(log_probs (N, V), state (N, U + 1), None)`` (no
        attention weights), row ``i`` over memory row ``i`` of ``memory (N, T, d)``, ``memory_mask (N, T)``."""
        state = np.concatenate([state, np.asarray(tokens, np.int64)[:, None]], axis=1)
        logits = self.runtime.decoder_logits(state, memory, memory_mask)[:, -1]
        return log_softmax(logits.astype(np.float32)), state, None


class OnnxSeq2Seq:
    """The ONNX stand-in for :class:`~s2s_media.models.seq2seq.Seq2SeqModel` (speech only, CPU)."""

    def __init__(self, runtime: OnnxSpeechModel):
        self.runtime = runtime
        self.encoders = {"audio": OnnxAudioEncoder(runtime)}
        self.ctc, self.decoder = OnnxCTC(runtime), OnnxDecoder(runtime)
        self.vocab_size = runtime.vocab_size

    def encode(self, x: np.ndarray, lengths: np.ndarray | None = None, modality: str = "audio",
               chunk_size: int = 0, left_chunks: int = -1):
        if modality != "audio":
            raise UserError(f"this model has no {modality} encoder (an ONNX export holds the speech model only)")
        return self.encoders["audio"](x, lengths, chunk_size, left_chunks)

    @staticmethod
    def as_input(x) -> np.ndarray | None:
        """Inputs are numpy (a tensor from a torch caller becomes one); None stays None."""
        return None if x is None else to_numpy(x)

    @staticmethod
    def inference_mode():
        return contextlib.nullcontext()

    def to(self, device) -> OnnxSeq2Seq:
        if str(device).split(":")[0] != "cpu":
            raise UserError(f"--device {device}: the ONNX runtime runs on the CPU; use --device cpu or --runtime torch")
        return self

    def eval(self) -> OnnxSeq2Seq:
        return self


def load_onnx_model(directory: str | Path, lm: str | Path | None = None, threads: int = 1) -> LoadedModel:
    """An ONNX directory as a :class:`LoadedModel`; ``lm``: an LM file used in place of the shipped one."""
    runtime = OnnxSpeechModel(directory, threads)
    manifest = runtime.manifest
    cfg = config_from_dict(manifest["config"], components=False)
    lm_file = lm if lm is not None else runtime.lm_path
    model_lm = lm_for_model(lm_file, runtime.tokenizer) if lm_file is not None else None
    # int8 MatMulNBits quantise activations per block at run time: batched with other utterances (padded
    # shapes), 14 of 320 test files got another text than alone, so such models decode row by row
    return LoadedModel(OnnxSeq2Seq(runtime), runtime.tokenizer, cfg, manifest.get("meta", {}), model_lm,
                       punctuation=runtime.punctuation_path, runtime="onnx",
                       batch_dependent=manifest.get("weights") == "int8")
