"""Evaluation in one home: decode a manifest with a :class:`~s2s_media.inference.pipeline.Searcher`
and score it. :func:`evaluate` takes the task as a parameter:

- ``asr``: WER/CER per decoding method over an audio manifest, every method on one encoder pass
  (:func:`evaluate_asr`, what ``s2s-media evaluate`` runs);
- ``caption``: BLEU-1..4, ROUGE-L, CIDEr-D (and METEOR) over a caption manifest (:func:`evaluate_captions`);
- ``streaming``: streaming against offline decoding of the same audio (:func:`evaluate_streaming`).
  Offline here is the same Searcher over the whole utterance with the streaming settings: the
  same chunk mask (``chunk_size``, ``num_left_chunks``), beam, language model, and rescoring or
  not. The difference between the two WERs is what streaming itself costs: endpoints that split
  utterances, the left-context cap, and the encoder reset at each endpoint. With endpointing
  disabled and utterances shorter than the cap, the texts are equal.

Progress is drawn on stderr only, and only when stderr is a terminal (:mod:`s2s_media.progress`).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from s2s_media.caption_metrics import score_captions
from s2s_media.data.dataset import eval_loader
from s2s_media.data.manifest import AudioRecord, check_language, read_manifest
from s2s_media.data.voice_family import voice_groups
from s2s_media.decoding.types import Decoded
from s2s_media.errors import UserError
from s2s_media.frontend.audio import SAMPLE_RATE
from s2s_media.frontend.logmel_np import log_mel
from s2s_media.inference.captioner import Captioner
from s2s_media.inference.checkpoint import LoadedModel
from s2s_media.inference.inputs import Item
from s2s_media.inference.pipeline import Searcher
from s2s_media.inference.streaming.recognizer import StreamingRecognizer
from s2s_media.metrics import ErrorRate, cer, headline_metric, wer
from s2s_media.progress import progress_bar

log = logging.getLogger("s2s_media.evaluate")
TASKS = ("asr", "caption", "streaming")


def evaluate(task: str, *args, **kwargs):
    """Evaluate ``task`` (``asr``, ``caption`` or ``streaming``): :func:`evaluate_asr`,
    :func:`evaluate_captions` or :func:`evaluate_streaming` with the same arguments."""
    if task not in TASKS:
        raise UserError(f"evaluate: unknown task {task!r}; choose from {', '.join(TASKS)}")
    return {"asr": evaluate_asr, "caption": evaluate_captions, "streaming": evaluate_streaming}[task](*args, **kwargs)


# --------------------------------------------------------------------------- asr
def iterate_batches(loader, device) -> Iterator[tuple[dict, torch.Tensor | None, torch.Tensor | None]]:
    """Move collated batches to ``device``; batches whose items all failed yield no tensors."""
    for batch in loader:
        if batch["ids"]:
            yield batch, batch["feats"].to(device), batch["lengths"].to(device)
        else:
            yield batch, None, None


def phrase_counts(text: str, phrase: str) -> int:
    """Occurrences of ``phrase`` as whole words in ``text`` (both normalised)."""
    words, target = text.split(), phrase.split()
    n = len(target)
    return sum(words[i:i + n] == target for i in range(len(words) - n + 1)) if n else 0


def hotword_recall(refs: list[str], hyps: list[str], phrases: list[str]) -> dict:
    """How many occurrences of the hotword ``phrases`` in the references the hypotheses have too
    (per utterance, up to the reference's count): ``{"recall", "hits", "total", "false_alarms"}``,
    false alarms being occurrences in a hypothesis beyond its reference's."""
    hits = total = false_alarms = 0
    for ref, hyp in zip(refs, hyps):
        for p in phrases:
            r, h = phrase_counts(ref, p), phrase_counts(hyp, p)
            total += r
            hits += min(r, h)
            false_alarms += max(0, h - r)
    return {"recall": hits / total if total else 0.0, "hits": hits, "total": total, "false_alarms": false_alarms}


def evaluate_asr(loaded: LoadedModel, searcher: Searcher, records: list[AudioRecord], out_dir: str | Path,
                 device: torch.device | str = "cpu", workers: int = 1, where: str = "manifest",
                 hotwords: list[str] | tuple[str, ...] = ()) -> dict:
    """Decode audio manifest ``records`` with every method of ``searcher`` and score WER/CER.

    References and hypotheses are normalised by the model's ``tokenizer.language``; records marked with
    another language are refused (``where`` names the manifest in that one-line error). ``headline`` in
    the summary names the metric to report first: ``cer`` for a language written without spaces.

    Writes ``OUT/<method>.jsonl`` (``{"id", "ref", "hyp", "score"}`` per utterance). Returns the summary
    ``{"language", "headline", "utterances", "skipped", "audio_seconds", "wall_seconds", "rtf", "beam", "lm", "scores": {method:
    {"wer", "cer", "words", "substitutions", "deletions", "insertions"}}, "by_group": {method: {group:
    {"wer", "cer", "utterances", "words"}}}}``, with the jiwer results under ``"rates"`` (not JSON);
    ``utterances`` 0 when nothing could be decoded. Groups are the synthetic corpus's voice families
    and its natural-voice part (:func:`~s2s_media.data.voice_family.voice_groups` of each record's
    speaker); empty for a corpus of other speakers. With ``hotwords`` (the normalised phrases the
    searcher is biased toward) the summary adds ``"hotwords": {method: hotword_recall(...)}``.
    """
    methods, dcfg = searcher.methods, searcher.decode
    language = loaded.config.tokenizer.language
    check_language(records, language, where)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    loader = eval_loader(records, loaded.tokenizer, loaded.config.model.n_mels, dcfg.batch_seconds, workers,
                         language=language)
    files = {m: open(out_dir / f"{m}.jsonl", "w") for m in methods}
    refs: list[str] = []
    groups: list[list[str]] = []
    speaker = {r.id: r.speaker for r in records}
    hyps: dict[str, list[str]] = {m: [] for m in methods}
    audio_s, skipped, start = 0.0, 0, time.time()
    try:
        bar = progress_bar(total=len(records), unit="utt", desc="decoding")
        for batch, feats, lengths in iterate_batches(loader, device):
            for bad in batch["bad"]:
                skipped += 1
                log.warning("skipping %s: %s", bad.id, bad.reason)
            bar.update(len(batch["ids"]) + len(batch["bad"]))
            if feats is None:
                continue
            audio_s += batch["seconds"]
            results = searcher.decode_batch(feats, lengths)
            refs.extend(batch["texts"])
            groups.extend(voice_groups(speaker.get(uid)) for uid in batch["ids"])
            for m in methods:
                for uid, ref, r in zip(batch["ids"], batch["texts"], results[m]):
                    text = loaded.tokenizer.decode(r.tokens)
                    hyps[m].append(text)
                    files[m].write(json.dumps({"id": uid, "ref": ref, "hyp": text, "score": r.score}) + "\n")
                files[m].flush()
        bar.close()
    finally:
        for f in files.values():
            f.close()
    elapsed = time.time() - start
    scores, rates = {}, {}
    if refs:
        for m in methods:
            w, c = wer(refs, hyps[m], language=language), cer(refs, hyps[m], language=language)
            rates[m] = (w, c)
            scores[m] = {"wer": w.rate, "cer": c.rate, "words": w.ref_len, "chars": c.ref_len,
                         "substitutions": w.substitutions, "deletions": w.deletions, "insertions": w.insertions}
    by_group = {m: score_groups(refs, hyps[m], groups, language) for m in methods} if any(groups) else {}
    lm = searcher.lm
    extra = {"hotwords": {m: hotword_recall(refs, hyps[m], list(hotwords)) for m in methods}} if hotwords else {}
    return {**extra, "language": language, "headline": headline_metric(language), "utterances": len(refs), "skipped": skipped, "audio_seconds": audio_s, "wall_seconds": elapsed,
            "rtf": elapsed / max(audio_s, 1e-9), "beam": dcfg.beam,
            "lm": {"weight": dcfg.lm_weight, "bonus": dcfg.lm_bonus} if lm is not None else None,
            "scores": scores, "by_group": by_group, "rates": rates}


def score_groups(refs: list[str], hyps: list[str], groups: list[list[str]], language: str = "en") -> dict[str, dict]:
    """WER/CER of each group: ``{group: {"wer", "cer", "utterances", "words"}}``, groups sorted by name.
    ``groups[i]`` lists the groups of utterance ``i`` (one utterance may count in several)."""
    members: dict[str, list[int]] = {}
    for i, gs in enumerate(groups):
        for g in gs:
            members.setdefault(g, []).append(i)
    out = {}
    for g in sorted(members):
        r, h = [refs[i] for i in members[g]], [hyps[i] for i in members[g]]
        w = wer(r, h, language=language)
        out[g] = {"wer": w.rate, "cer": cer(r, h, language=language).rate, "utterances": len(r), "words": w.ref_len}
    return out


# --------------------------------------------------------------------------- captions
def evaluate_captions(captioner: Captioner, records: list, out_path: str | Path | None = None,
                      use_meteor: bool | None = None) -> dict:
    """Caption the images of caption-manifest ``records`` and score them against their references.

    records: :class:`~s2s_media.data.captions.CaptionRecord` (``id``, ``image``, ``captions``).
    out_path: where to write one line per image, ``{"id", "image", "caption", "score", "refs"}`` (or
        ``{"id", "image", "error"}``); None writes nothing.
    use_meteor: as :func:`s2s_media.caption_metrics.score_captions`.
    Returns ``{"images": scored, "skipped": failed, "errors": [...], "scores": {metric: value}}``;
    images that fail are left out of the scores. References are the manifest's captions as written,
    PTB-tokenised with the candidates (coco-caption's protocol).
    """
    refs = {r.id: list(r.captions) for r in records}
    images = {r.id: r.image for r in records}
    items = [Item(r.image, r.id, id=r.id) for r in records]
    candidates: dict[str, str] = {}
    errors: list[str] = []
    out = None
    if out_path is not None:
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        out = open(out_path, "w", encoding="utf-8")
    try:
        for done in progress_bar(captioner.run(items), total=len(items), unit="img", desc="captioning"):
            rec, key = done.record, done.item.id
            if "error" in rec:
                errors.append(rec["error"])
                row = {"id": key, "image": images[key], "error": rec["error"]}
            else:
                candidates[key] = rec["caption"]
                row = {"id": key, "image": images[key], "caption": rec["caption"], "score": rec["score"],
                       "refs": refs[key]}
            if out is not None:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                out.flush()
    finally:
        if out is not None:
            out.close()
    if not candidates:
        raise UserError(f"no image could be captioned ({len(errors)} failed; first: {errors[0] if errors else '-'})")
    scores = score_captions(candidates, {k: refs[k] for k in candidates}, use_meteor=use_meteor)
    return {"images": len(candidates), "skipped": len(errors), "errors": errors, "scores": scores}


# --------------------------------------------------------------------------- streaming
def offline_decode(recognizer: StreamingRecognizer, wav: np.ndarray) -> Decoded:
    """Decode ``wav (samples,)`` (16 kHz) whole with the recognizer's own :class:`Searcher`: CTC prefix
    beam search (+ attention rescoring when ``rescore``), with its language model if any, over
    ``encode`` with the chunk mask."""
    feats = log_mel(wav, recognizer.n_mels)[None]            # the streaming front-end's features, numpy
    lengths = np.array([feats.shape[1]])
    searcher = recognizer.searcher
    return searcher.decode_batch(feats, lengths)[searcher.method][0]


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


def evaluate_streaming(recognizer: StreamingRecognizer, manifest: str | Path, chunk_samples: int = 1600,
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


evaluate_manifest = evaluate_streaming   # its name in s2s_media.streaming
