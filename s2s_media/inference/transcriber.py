"""Batch transcription: audio files, folders and manifests -> records with word timestamps.

The flow, one responsibility per step:

1. :func:`~s2s_media.inference.inputs.discover` turns the command-line paths into a sorted list of :class:`Item`: audio
   files, the audio files of folders (``recursive`` descends), and the entries of JSONL
   manifests. Anything unusable (a missing path, a folder without audio, a format we cannot
   decode) becomes an item that carries its error, so it gets an error record in order.
2. :meth:`Transcriber.prepare` (in ``workers`` threads) loads an item at 16 kHz mono, cuts it
   into segments and computes each segment's log-mels. A recording no longer than
   ``vad.max_segment_s`` is decoded whole, exactly as ``evaluate`` does (unless it is silent
   throughout); a longer one is split on silence by :mod:`s2s_media.frontend.vad` (``vad.method``:
   Silero VAD, or the energy detector).
3. Segments of consecutive files wait in one queue; once it holds ``batch_seconds`` of audio
   they are sorted by length and decoded in padded batches (one encoder pass, then the search
   method of the run's :class:`~s2s_media.inference.pipeline.Searcher`). A segment's text never
   depends on its batch: a dynamically quantised model (the bundled one on a CPU) takes one
   activation scale per batch, so the Searcher decodes its segments one at a time.
4. A file's record is built once all its segments are decoded; records come out in input order.
   Its text, segment texts and words are then written with capitals and ``. , ? !``
   (:mod:`s2s_media.inference.punctuation`, one written word per word: times stay put), unless
   ``options.punctuation`` is off or the model does not write normalised English.

Timestamps and confidences are :mod:`s2s_media.decoding.timing`'s; items come from
:mod:`s2s_media.inference.inputs`, sharding is :mod:`s2s_media.inference.sharding`.

Records: ``{"path", "text", "duration", "words": [{"word", "start", "end", "confidence"}],
"segments": [{"start", "end", "text"}]}``, ``"id"`` added for manifest entries (whose times count
from the entry's ``offset``); a failure is ``{"path", "error"}``. Times are seconds (3 decimals).

Hotwords (``options.hotwords``) bias the CTC prefix search toward their phrases
(:mod:`s2s_media.decoding.context`); phrases the model cannot spell are left out, each named in
:attr:`Transcriber.warnings`. With ``options.alternatives`` N > 1, every segment gets
``"alternatives": [{"text", "confidence"}]``, its N best hypotheses (the first is its text), and
the record the same list for the whole recording: the k-th alternative joins every segment's k-th
(or its last, when it has fewer), with the product of their confidences.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from s2s_media.arrays import pad_batch
from s2s_media.data.sampler import make_batches
from s2s_media.decoding.context import MAX_HOTWORDS, Hotword, as_hotwords, compile_hotwords
from s2s_media.decoding.timing import tokens_to_words
from s2s_media.decoding.types import Decoded
from s2s_media.errors import UserError
from s2s_media.frontend.audio import HOP_LENGTH, SAMPLE_RATE, load_audio
from s2s_media.frontend.logmel_np import log_mel
from s2s_media.frontend.vad import Segment, VadConfig, make_vad, segment
from s2s_media.inference.loaded import LoadedModel
from s2s_media.inference.inputs import Item
from s2s_media.inference.pipeline import Searcher
from s2s_media.inference.punctuation import Punctuator, bundled_punctuation_path, writes_normalised_english
from s2s_media.parallel import ordered_map

MIN_DECODE_S = 0.1                        # shorter segments give no encoder frames: empty text


# --------------------------------------------------------------------------- options
@dataclass(frozen=True)
class TranscribeOptions:
    decoding: str | None = None         # one of s2s_media.methods.DECODING_METHODS; None = the model's
    beam: int | None = None             # beam size; None = the model's decode.beam
    ctc_weight: float | None = None     # CTC share of the rescoring score; None = the model's
    lm_weight: float | None = None      # weight of the model's language model (0 = off); None = the model's
    batch_seconds: float | None = None  # padded seconds of audio per decoding batch; None = the model's
    chunk_size: int = 0                 # encoder chunk in frames after subsampling; 0 = full context
    workers: int = 1                    # threads loading audio and computing features (0 = the main thread)
    vad: VadConfig = field(default_factory=VadConfig)  # segmentation of long recordings
    punctuation: bool = True            # restore capitals and . , ? ! in the results (models writing normalised English)
    punctuation_model: str | None = None  # its file; None = the bundled s2s_media/assets/punct_default.pt
    hotwords: tuple[Hotword | str | tuple[str, float], ...] = ()   # phrases to favour: Hotword, "phrase[:boost]"
                                        # or (phrase, boost); boost per token, default decoding.context.DEFAULT_BOOST
    max_hotwords: int = MAX_HOTWORDS    # a longer hotword list is an error (0: no limit)
    alternatives: int = 0               # > 1: each segment and record lists this many best hypotheses


def punctuator_for(options: TranscribeOptions, loaded: LoadedModel) -> Punctuator | None:
    """The punctuation model ``options`` ask for: their file, else the one shipped with the speech model (an
    ONNX directory's), else the bundled one when the speech model writes normalised English (lower-case
    ``a-z'``: its ONNX form for a model on the ONNX runtime); None when off or for other vocabularies."""
    if not options.punctuation:
        return None
    if options.punctuation_model is not None:
        return Punctuator.load_cached(options.punctuation_model)
    if loaded.punctuation is not None:
        return Punctuator.load_cached(loaded.punctuation)
    if not writes_normalised_english(loaded.tokenizer):
        return None
    return Punctuator.load_cached(bundled_punctuation_path(onnx=loaded.runtime == "onnx"))


def punctuate(punctuator: Punctuator, words: list[dict], segments: list[dict]) -> None:
    """Restore the written form of a record's segment texts and word dicts in place, word for word, so
    every word keeps its times and confidence. The whole record is one text (sentences run across
    segments); the word dicts take the same written words when they are the same words."""
    plain = [s["text"].split() for s in segments]
    flat = [w for p in plain for w in p]
    written = punctuator.restore(flat)
    k = 0
    for seg, p in zip(segments, plain):
        seg["text"] = " ".join(written[k:k + len(p)])
        k += len(p)
    if [w["word"] for w in words] != flat:          # never expected; restore the word list on its own
        written = punctuator.restore([w["word"] for w in words])
    for w, new in zip(words, written, strict=True):
        w["word"] = new


# --------------------------------------------------------------------------- reading
def read_audio(item: Item) -> np.ndarray | str:
    """An item's audio ``(samples,)`` float32 at 16 kHz mono, or a one-line error naming the file (never raises)."""
    if item.error:
        return item.error
    try:
        return load_audio(item.path, offset=item.offset, duration=item.duration)
    except UserError as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 - one bad file never stops the run
        return f"{item.path}: cannot read audio ({type(e).__name__}: {e})"


# --------------------------------------------------------------------------- transcriber
@dataclass
class Prepared:
    """An item loaded and cut: ``feats[i]: (T_i, n_mels)`` are the log-mels of ``segments[i]``."""

    item: Item
    duration: float = 0.0
    segments: list[Segment] = field(default_factory=list)
    feats: list[np.ndarray] = field(default_factory=list)
    error: str | None = None


class _Job:
    """A prepared file waiting for its segments' results."""

    def __init__(self, prep: Prepared):
        self.prep = prep
        self.results: list[Decoded | None] = [None] * len(prep.segments)
        self.missing = len(prep.segments)


class Transcriber:
    """Turns items (or arrays) into records with one model and one set of options."""

    def __init__(self, loaded: LoadedModel, options: TranscribeOptions = TranscribeOptions()):
        """loaded: the model, on the device it runs on (numpy batches go to it through ``model.as_input``)."""
        self.loaded, self.options = loaded, options
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        dcfg = loaded.config.decode.override(method=options.decoding, chunk_size=options.chunk_size, beam=options.beam,
                                             ctc_weight=options.ctc_weight, batch_seconds=options.batch_seconds,
                                             lm_weight=options.lm_weight)
        self.warnings: list[str] = []      # hotwords left out, one line each
        context = None
        if options.hotwords:
            compiled = compile_hotwords(self.tokenizer, as_hotwords(options.hotwords), loaded.config.tokenizer.language,
                                        max_hotwords=options.max_hotwords)
            context, self.warnings = compiled.context, compiled.skipped
        if options.alternatives < 0:
            raise UserError(f"--alternatives {options.alternatives}: must be 0 (none) or more")
        self.searcher = Searcher(loaded, dcfg, task="asr", context=context, nbest=max(1, options.alternatives))
        self.method, self.dcfg, self.lm, self.prefix = self.searcher.method, dcfg, self.searcher.lm, self.searcher.prefix
        if self.dcfg.batch_seconds <= 0:
            raise UserError(f"--batch-seconds {self.dcfg.batch_seconds}: must be positive")
        self.shift = self.model.encoders["audio"].frame_shift
        self.n_mels = loaded.config.model.n_mels
        self.punctuator = punctuator_for(options, loaded)
        self.vad = make_vad(options.vad)   # a missing Silero model is reported here, before any file

    # ---- preparing
    def _cut(self, wav: np.ndarray) -> list[Segment]:
        """Segments of ``wav: (samples,)``: the whole of a short recording, else split on silence."""
        parts = segment(wav, self.options.vad, self.vad)
        if parts and len(wav) <= self.options.vad.max_segment_s * SAMPLE_RATE:
            return [Segment(0, len(wav))]
        return parts

    def prepare_array(self, item: Item, wav: np.ndarray) -> Prepared:
        """``wav: (samples,)`` float32 at 16 kHz -> segments and their log-mels."""
        segs = self._cut(wav)
        feats = [log_mel(wav[s.start:s.end], self.n_mels) for s in segs]
        return Prepared(item, len(wav) / SAMPLE_RATE, segs, feats)

    def prepare_read(self, item: Item, wav: np.ndarray | str) -> Prepared:
        """What :func:`read_audio` gave for ``item`` -> segments and log-mels, or the item's error."""
        return Prepared(item, error=wav) if isinstance(wav, str) else self.prepare_array(item, wav)

    def prepare(self, item: Item) -> Prepared:
        """Load and cut one item; a failure is returned in ``error``, never raised."""
        return self.prepare_read(item, read_audio(item))

    def _prepared(self, items: Iterable[Item]) -> Iterator[Prepared]:
        workers = self.options.workers
        return ordered_map(self.prepare, items, workers, 2 * workers)

    # ---- decoding
    def decode(self, feats: list[np.ndarray]) -> list[Decoded]:
        """Decode segments in one padded batch. ``feats[i]: (T_i, n_mels)``.

        Every result has ``frames``/``probs`` for its tokens when they can be had (see the module
        docstring); results of segments shorter than ``MIN_DECODE_S`` are empty.
        """
        min_frames = int(MIN_DECODE_S * SAMPLE_RATE / HOP_LENGTH)
        out: list[Decoded] = [Decoded([], 0.0) for _ in feats]
        todo = [i for i, f in enumerate(feats) if f.shape[0] > min_frames]
        if not todo:
            return out
        x, lengths = pad_batch([feats[i] for i in todo])
        hyps = self.searcher.decode_batch(x, lengths, align=True)[self.method]
        for i, h in zip(todo, hyps):
            out[i] = h
        return out

    def _decode_safely(self, feats: list[np.ndarray]) -> list[Decoded | Exception]:
        """:meth:`decode`, retrying one by one when a batch fails, so one bad segment fails only its file."""
        try:
            return self.decode(feats)
        except Exception as e:  # noqa: BLE001 - e.g. out of memory on a GPU
            if len(feats) == 1:
                return [e]
            return [r for f in feats for r in self._decode_safely([f])]

    def _decode_queue(self, queue: list[tuple[_Job, int]]) -> None:
        """Decode queued segments in batches of at most ``batch_seconds`` padded audio, shortest first."""
        seconds = [job.prep.segments[k].seconds for job, k in queue]
        for batch in make_batches(seconds, self.dcfg.batch_seconds, max_batch_size=256, num_buckets=1):
            results = self._decode_safely([queue[j][0].prep.feats[queue[j][1]] for j in batch])
            for j, r in zip(batch, results):
                job, k = queue[j]
                if isinstance(r, Exception):
                    reason = (str(r).strip().splitlines() or [""])[0][:200]
                    job.prep.error = job.prep.error or (f"{job.prep.item.path}: decoding failed "
                                                        f"({type(r).__name__}: {reason})")
                    r = Decoded([], float("-inf"))
                job.results[k] = r
                job.missing -= 1
                job.prep.feats[k] = None  # free the features as soon as they are decoded

    # ---- records
    def words(self, d: Decoded, seg: Segment) -> list[dict]:
        """Word dicts with absolute times for one decoded segment (see :func:`tokens_to_words`)."""
        return tokens_to_words(self.tokenizer, d, self.shift, seg.start / SAMPLE_RATE, seg.end / SAMPLE_RATE,
                               self.loaded.calibration)

    def record(self, prep: Prepared, results: list[Decoded]) -> dict:
        """The output record of one prepared item whose segments are decoded."""
        item = prep.item
        head = {"path": item.path, **({"id": item.id} if item.id is not None else {})}
        if prep.error:
            return {**head, "error": prep.error}
        words, segments = [], []
        for seg, d in zip(prep.segments, results):
            seg_words = self.words(d, seg)
            text = self.tokenizer.decode(d.tokens)
            words += seg_words
            segments.append({"start": round(seg.start / SAMPLE_RATE, 3), "end": round(seg.end / SAMPLE_RATE, 3),
                             "text": text})
        if self.punctuator is not None:
            punctuate(self.punctuator, words, segments)
        text = " ".join(s["text"] for s in segments if s["text"])
        rec = {**head, "text": text, "duration": round(prep.duration, 3), "words": words, "segments": segments}
        if self.options.alternatives > 1:
            rec["alternatives"] = self._alternatives(segments, results)
        return rec

    def _alternatives(self, segments: list[dict], results: list[Decoded]) -> list[dict]:
        """Each segment's alternatives (into its dict) and the record's (see the module docstring)."""
        per_segment = []
        for seg, d in zip(segments, results):
            alts = d.alternatives or [Decoded(d.tokens, d.score, confidence=1.0 if d.tokens else None)]
            texts = [self.tokenizer.decode(a.tokens) for a in alts]
            if self.punctuator is not None:
                texts = [" ".join(self.punctuator.restore(t.split())) for t in texts]
            seg["alternatives"] = [{"text": t, "confidence": None if a.confidence is None else round(a.confidence, 4)}
                                   for t, a in zip(texts, alts)]
            per_segment.append(seg["alternatives"])
        out = []
        for k in range(max((len(a) for a in per_segment), default=0)):
            picked = [a[min(k, len(a) - 1)] for a in per_segment]
            confs = [p["confidence"] for p in picked]
            conf = None if None in confs else round(float(np.prod(confs)), 4)
            out.append({"text": " ".join(p["text"] for p in picked if p["text"]), "confidence": conf})
        return out

    # ---- driving
    def run(self, items: Iterable[Item]) -> Iterator[tuple[Item, dict]]:
        """Transcribe items; yields ``(item, record)`` in input order as soon as each is complete."""
        return self.run_prepared(self._prepared(items))

    def run_prepared(self, preps: Iterable[Prepared]) -> Iterator[tuple[Item, dict]]:
        """:meth:`run` for items prepared already (by :meth:`prepare` or :meth:`prepare_read`)."""
        pending: deque[_Job] = deque()
        queue: list[tuple[_Job, int]] = []
        queued_s = 0.0
        for prep in preps:
            job = _Job(prep)
            pending.append(job)
            for k, seg in enumerate(prep.segments):
                queue.append((job, k))
                queued_s += seg.seconds
            if queued_s >= self.dcfg.batch_seconds:
                self._decode_queue(queue)
                queue, queued_s = [], 0.0
            while pending and pending[0].missing == 0:
                done = pending.popleft()
                yield done.prep.item, self.record(done.prep, done.results)
        if queue:
            self._decode_queue(queue)
        while pending:
            done = pending.popleft()
            yield done.prep.item, self.record(done.prep, done.results)

    def transcribe_prepared(self, prep: Prepared) -> dict:
        """Decode one prepared item on its own and return its record."""
        job = _Job(prep)
        if prep.segments and not prep.error:
            self._decode_queue([(job, k) for k in range(len(prep.segments))])
        return self.record(prep, job.results)

    def transcribe_array(self, wav: np.ndarray, path: str | None = None) -> dict:
        """``wav: (samples,)`` float at 16 kHz -> a record (``path`` as given, None for arrays)."""
        rec = self.transcribe_prepared(self.prepare_array(Item(path or "", "array"), np.asarray(wav, dtype=np.float32)))
        rec["path"] = path
        return rec
