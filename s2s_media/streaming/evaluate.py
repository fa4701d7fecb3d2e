"""Streaming against offline decoding of the same audio: the texts and both WERs on a manifest.

Offline here means the toolkit's own evaluation path (:func:`~s2s_media.decoding.recognizer.decode_batch`)
over the whole utterance with the streaming settings: the same chunk mask (``chunk_size``,
``num_left_chunks``), beam, and rescoring or not. The difference between the two WERs is what
streaming itself costs: endpoints that split utterances, the left-context cap, and the encoder reset
at each endpoint. With endpointing disabled and utterances shorter than the cap, the texts are equal.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from s2s_media.audio import SAMPLE_RATE, LogMel
from s2s_media.data.manifest import read_manifest
from s2s_media.decoding.recognizer import Decoded, decode_batch
from s2s_media.errors import UserError
from s2s_media.metrics import ErrorRate, wer
from s2s_media.streaming.recognizer import StreamingRecognizer


@lru_cache(maxsize=4)
def _logmel(n_mels: int) -> LogMel:
    return LogMel(n_mels)


def offline_decode(recognizer: StreamingRecognizer, wav: np.ndarray) -> Decoded:
    """Decode ``wav (samples,)`` (16 kHz) whole, as ``evaluate`` would with the recognizer's settings:
    CTC prefix beam search (+ attention rescoring when ``rescore``), with its language model if any,
    over ``encode`` with the chunk mask."""
    cfg = recognizer.config
    method = "rescoring" if cfg.rescore else "ctc_prefix_beam"
    dcfg = dataclasses.replace(recognizer.decode, method=method, chunk_size=cfg.chunk_size,
                               left_chunks=cfg.num_left_chunks)
    feats = _logmel(recognizer.n_mels)(torch.from_numpy(np.asarray(wav, np.float32))[None]).to(recognizer.device)
    lengths = torch.tensor([feats.size(1)], device=recognizer.device)
    return decode_batch(recognizer.model, feats, lengths, recognizer.prefix, [method], dcfg,
                        recognizer.lm)[method][0]


@dataclass
class StreamingEval:
    """Scores of one manifest, decoded streaming and offline."""

    utterances: int
    audio_seconds: float
    streaming: ErrorRate
    offline: ErrorRate
    identical: int                      # utterances whose streaming and offline texts are equal
    streaming_seconds: float            # wall time of all streaming decodes
    offline_seconds: float
    rows: list[dict] = field(default_factory=list)   # per utterance: id, ref, streaming, offline

    def summary(self) -> dict:
        return {"utterances": self.utterances, "audio_seconds": round(self.audio_seconds, 2),
                "streaming_wer": self.streaming.rate, "offline_wer": self.offline.rate,
                "identical": self.identical,
                "streaming_rtf": self.streaming_seconds / max(self.audio_seconds, 1e-9),
                "offline_rtf": self.offline_seconds / max(self.audio_seconds, 1e-9)}


def evaluate_manifest(recognizer: StreamingRecognizer, manifest: str | Path, chunk_samples: int = 1600,
                      limit: int = 0) -> StreamingEval:
    """Decode every entry of a JSONL manifest (the first ``limit`` when > 0) streaming, fed in pieces of
    ``chunk_samples`` (all finals joined), and offline; score both against the references."""
    records = read_manifest(manifest)
    records = records[:limit] if limit > 0 else records
    if not records:
        raise UserError(f"{manifest}: the manifest has no entries to evaluate")
    rows, audio_s, stream_s, offline_s = [], 0.0, 0.0, 0.0
    for r in records:
        wav = r.load()
        audio_s += wav.size / SAMPLE_RATE
        t0 = time.perf_counter()
        finals = recognizer.transcribe_stream(wav, chunk_samples)
        t1 = time.perf_counter()
        offline = recognizer.tokenizer.decode(offline_decode(recognizer, wav).tokens)
        t2 = time.perf_counter()
        stream_s, offline_s = stream_s + t1 - t0, offline_s + t2 - t1
        rows.append({"id": r.id, "ref": r.text, "streaming": " ".join(f["text"] for f in finals if f["text"]),
                     "offline": offline})
    refs = [row["ref"] for row in rows]
    return StreamingEval(len(rows), audio_s, wer(refs, [row["streaming"] for row in rows]),
                         wer(refs, [row["offline"] for row in rows]),
                         sum(row["streaming"] == row["offline"] for row in rows), stream_s, offline_s, rows)
