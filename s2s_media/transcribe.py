"""Batch transcription: audio files, folders and manifests -> records with word timestamps.

The flow, one responsibility per step:

1. :func:`discover` turns the command-line paths into a sorted list of :class:`Item`: audio
   files, the audio files of folders (``recursive`` descends), and the entries of JSONL
   manifests. Anything unusable (a missing path, a folder without audio, a format we cannot
   decode) becomes an item that carries its error, so it gets an error record in order.
2. :meth:`Transcriber.prepare` (in ``workers`` threads) loads an item at 16 kHz mono, cuts it
   into segments and computes each segment's log-mels. A recording no longer than
   ``vad.max_segment_s`` is decoded whole, exactly as ``evaluate`` does (unless it is silent
   throughout); a longer one is split on silence by :mod:`s2s_media.vad`.
3. Segments of consecutive files wait in one queue; once it holds ``batch_seconds`` of audio
   they are sorted by length and decoded in padded batches (one encoder pass, then the search
   method from :data:`~s2s_media.decoding.recognizer.SEARCHES`).
4. A file's record is built once all its segments are decoded; records come out in input order.

Timestamps. CTC methods (``ctc_greedy``, ``ctc_prefix_beam``, ``rescoring``) give every token
its peak frame on the best alignment and its posterior there. ``attention`` hypotheses have no
frames; when the model has a CTC head, the hypothesis is force-aligned to the CTC posteriors
(``torchaudio.functional.forced_align``) and each token takes the peak of its aligned span.
Encoder frame ``t`` of a segment starting at ``s`` seconds is at ``s + t * shift``, where
``shift`` is the encoder frame shift (10 ms hop x the subsampling factor: 40 ms for the
attention encoders). A word starts at its first token's frame and ends one frame shift after
its last token's frame (CTC emits a token as a spike, so this is the end of the spike, not of
the sound). Its confidence is the **minimum** posterior of its tokens: a word is as sure as its
least sure piece. Without a CTC head, attention tokens are spread evenly over the segment and
confidences are ``None``.

Records: ``{"path", "text", "duration", "words": [{"word", "start", "end", "confidence"}],
"segments": [{"start", "end", "text"}]}``, ``"id"`` added for manifest entries (whose times count
from the entry's ``offset``); a failure is ``{"path", "error"}``. Times are seconds (3 decimals).
"""
from __future__ import annotations

import shutil
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from s2s_media.audio import HOP_LENGTH, SAMPLE_RATE, LogMel, load_audio
from s2s_media.data.manifest import read_manifest
from s2s_media.data.sampler import make_batches
from s2s_media.decoding.recognizer import SEARCHES, Decoded
from s2s_media.errors import UserError
from s2s_media.models.build import LoadedModel
from s2s_media.models.seq2seq import Seq2SeqModel
from s2s_media.output import record_key
from s2s_media.parallel import ordered_map
from s2s_media.text.tokenizer import BLANK, Tokenizer
from s2s_media.vad import Segment, VadConfig, segment

DEFAULT_MODEL = "assets/asr_default.pt"   # inside the s2s_media package
MIN_DECODE_S = 0.1                        # shorter segments give no encoder frames: empty text
NATIVE_EXTS = {".wav", ".flac", ".ogg", ".opus"}
FFMPEG_EXTS = {".mp3", ".m4a"}            # mp3 is native too when libsndfile reads it (>= 1.1)


# --------------------------------------------------------------------------- options
@dataclass(frozen=True)
class TranscribeOptions:
    decoding: str | None = None         # ctc_greedy | ctc_prefix_beam | attention | rescoring; None = the model's
    beam: int | None = None             # beam size; None = the model's decode.beam
    ctc_weight: float | None = None     # CTC share of the rescoring score; None = the model's
    lm_weight: float | None = None      # weight of the model's language model (0 = off); None = the model's
    batch_seconds: float | None = None  # padded seconds of audio per decoding batch; None = the model's
    chunk_size: int = 0                 # encoder chunk in frames after subsampling; 0 = full context
    workers: int = 1                    # threads loading audio and computing features (0 = the main thread)
    vad: VadConfig = field(default_factory=VadConfig)  # segmentation of long recordings


# --------------------------------------------------------------------------- inputs
@dataclass
class Item:
    """One input to transcribe.

    path: the audio file (for a failed discovery: the path that failed).
    name: its name for per-file outputs (subtitle folders): relative to the folder it was found
        in, without extension; the entry id for manifest entries.
    id, offset, duration, ref: manifest entries only (``ref`` is the reference transcript).
    error: set when the item cannot be transcribed at all (it then gets an error record).
    """

    path: str
    name: str
    id: str | None = None
    offset: float = 0.0
    duration: float | None = None
    ref: str | None = None
    error: str | None = None

    @property
    def key(self) -> str:
        return record_key(self.path, self.id)


def has_ffmpeg() -> bool:
    return shutil.which("ffmpeg") is not None


def readable_extensions() -> set[str]:
    """Audio file extensions this machine decodes: wav, flac, ogg/opus, plus mp3 (libsndfile or ffmpeg)
    and m4a (ffmpeg)."""
    exts = set(NATIVE_EXTS)
    if "MP3" in sf.available_formats():
        exts.add(".mp3")
    if has_ffmpeg():
        exts |= FFMPEG_EXTS
    return exts


def _unsupported(path: Path, readable: set[str]) -> str:
    ext = path.suffix.lower()
    if ext in FFMPEG_EXTS:
        return f"{path}: decoding {ext} needs ffmpeg, which is not on PATH; install ffmpeg or convert to wav/flac"
    shown = ", ".join(sorted(e.lstrip(".") for e in readable))
    return f"{path}: unsupported format '{ext or '(no extension)'}'; supported: {shown}, or a .jsonl manifest"


def _folder_items(folder: Path, recursive: bool, readable: set[str]) -> list[Item]:
    files = folder.rglob("*") if recursive else folder.iterdir()
    items = []
    for f in sorted(files):
        rel = f.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not f.is_file():
            continue
        ext = f.suffix.lower()
        name = str(rel.with_suffix(""))
        if ext in readable:
            items.append(Item(str(f), name))
        elif ext in FFMPEG_EXTS:  # audio we cannot decode here: say so rather than skip it silently
            items.append(Item(str(f), name, error=_unsupported(f, readable)))
    if not items:
        exts = ", ".join(sorted(e.lstrip(".") for e in readable))
        has_subfolders = any(p.is_dir() for p in folder.iterdir())
        hint = "; add --recursive to look in its subfolders" if not recursive and has_subfolders else ""
        items.append(Item(str(folder), folder.name, error=f"{folder}: no audio files ({exts}) in this folder{hint}"))
    return items


def _manifest_items(path: Path) -> list[Item]:
    try:
        records = read_manifest(path)
    except UserError as e:
        return [Item(str(path), path.stem, error=str(e))]
    if not records:
        return [Item(str(path), path.stem, error=f"{path}: the manifest has no entries")]
    return [Item(r.audio, r.id, id=r.id, offset=r.offset or 0.0, duration=r.duration if r.offset is not None else None, ref=r.text)
            for r in records]


def discover(paths: Iterable[str | Path], recursive: bool = False) -> list[Item]:
    """Expand files, folders and ``.jsonl`` manifests into items, sorted by path (then id).

    Never raises for a bad path: that path becomes an item with ``error`` set. Duplicate inputs
    are kept once; names that collide get ``-2``, ``-3``... appended.
    """
    readable = readable_extensions()
    items: list[Item] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            items += _folder_items(p, recursive, readable)
        elif not p.exists():
            items.append(Item(str(p), p.stem, error=f"{p}: no such file or folder; check the path"))
        elif p.suffix.lower() == ".jsonl":
            items += _manifest_items(p)
        elif p.suffix.lower() in readable:
            items.append(Item(str(p), p.stem))
        else:
            items.append(Item(str(p), p.stem, error=_unsupported(p, readable)))
    unique = {it.key: it for it in items}
    items = sorted(unique.values(), key=lambda it: (it.path, it.id or ""))
    seen: dict[str, int] = {}
    for it in items:
        n = seen.get(it.name, 0) + 1
        seen[it.name] = n
        if n > 1:
            it.name = f"{it.name}-{n}"
    return items


def shard(items: list[Item], index: int, count: int) -> list[Item]:
    """Every ``count``-th item starting at ``index`` (0-based) of the sorted list."""
    if count < 1 or not 0 <= index < count:
        raise UserError(f"--shard {index}/{count}: need 0 <= I < N")
    return items[index::count]


# --------------------------------------------------------------------------- model helpers
def encoder_frame_shift(model: Seq2SeqModel) -> float:
    """Seconds between encoder output frames: the 10 ms hop x the encoder's time reduction."""
    body = model.encoders["audio"].body
    sub = getattr(body, "subsampling", None)
    if sub is not None:
        stride = sub.stride
    else:  # the pyramidal BLSTM halves the frame rate once per pyramid layer
        stride = 2 ** body.cfg.pyramid_layers
    return stride * HOP_LENGTH / SAMPLE_RATE


def ctc_align(log_probs: torch.Tensor, tokens: list[int]) -> tuple[list[int], list[float]] | None:
    """Force-align ``tokens`` to CTC log-posteriors ``(T, V)``; per token its peak frame and posterior.

    Returns None when the tokens do not fit in ``T`` frames.
    """
    import torchaudio.functional as AF
    if not tokens:
        return [], []
    targets = torch.tensor([tokens], dtype=torch.int32)
    try:
        labels, scores = AF.forced_align(log_probs[None].float().cpu(), targets, blank=BLANK)
    except (RuntimeError, ValueError):
        return None
    frames, probs = [], []
    for span in AF.merge_tokens(labels[0], scores[0]):
        seg = scores[0, span.start:span.end]
        k = int(seg.argmax())
        frames.append(span.start + k)
        probs.append(float(seg[k].exp()))
    return (frames, probs) if len(frames) == len(tokens) else None


def tokens_to_words(tokenizer: Tokenizer, d: Decoded, shift: float, start_s: float, end_s: float) -> list[dict]:
    """Group a segment's tokens into words with absolute times and confidences.

    A unit starting with ``▁`` begins a word (SentencePiece pieces; the char tokenizer's space
    unit ``▁`` is a bare boundary); word-level tokenizers give one word per token. Token ``k`` is
    at ``start_s + d.frames[k] * shift``; a word spans its first token's time to its last token's
    time plus ``shift``, clipped to ``end_s``; its confidence is the minimum of its tokens'
    posteriors. Without frames the tokens are spread evenly over the segment (confidence None).
    """
    tokens, frames, probs = d.tokens, d.frames, d.probs
    if len(frames) != len(tokens):
        n_frames = max(1, int((end_s - start_s) / shift))
        frames = [int(k * n_frames / max(1, len(tokens))) for k in range(len(tokens))]
        probs = [None] * len(tokens)
    itos, reserved = tokenizer.itos, tokenizer.num_reserved
    whole_words = tokenizer.kind == "word"
    words: list[dict] = []
    current = None
    for tok, fr, p in zip(tokens, frames, probs):
        if not reserved <= tok < len(itos):  # specials and task tokens are not text
            continue
        unit = itos[tok]
        if whole_words or unit.startswith("▁"):
            current = None
            if not whole_words:
                unit = unit.lstrip("▁")
        if not unit:
            continue
        t = start_s + fr * shift
        if current is None:
            current = {"word": unit, "start": t, "end": t + shift, "probs": [p]}
            words.append(current)
        else:
            current["word"] += unit
            current["end"] = t + shift
            current["probs"].append(p)
    out = []
    for w in words:
        conf = None if None in w["probs"] else min(w["probs"])
        start = min(w["start"], end_s)
        out.append({"word": w["word"], "start": round(start, 3), "end": round(max(start, min(w["end"], end_s)), 3),
                    "confidence": None if conf is None else round(conf, 4)})
    return out


# --------------------------------------------------------------------------- transcriber
@dataclass
class Prepared:
    """An item loaded and cut: ``feats[i]: (T_i, n_mels)`` are the log-mels of ``segments[i]``."""

    item: Item
    duration: float = 0.0
    segments: list[Segment] = field(default_factory=list)
    feats: list[torch.Tensor] = field(default_factory=list)
    error: str | None = None


class _Job:
    """A prepared file waiting for its segments' results."""

    def __init__(self, prep: Prepared):
        self.prep = prep
        self.results: list[Decoded | None] = [None] * len(prep.segments)
        self.missing = len(prep.segments)


class Transcriber:
    """Turns items (or arrays) into records with one model and one set of options."""

    def __init__(self, loaded: LoadedModel, device: torch.device | str = "cpu",
                 options: TranscribeOptions = TranscribeOptions()):
        self.loaded, self.options = loaded, options
        self.device = torch.device(device)
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        dec = loaded.config.decode
        self.method = options.decoding or dec.method
        if self.method not in SEARCHES:
            raise UserError(f"--decoding {self.method}: unknown method; choose from {', '.join(SEARCHES)}")
        if self.method != "attention" and self.model.ctc is None:
            raise UserError(f"--decoding {self.method}: this model has no CTC head (ctc_weight 0); "
                            "use --decoding attention")
        self.dcfg = dec.override(chunk_size=options.chunk_size, beam=options.beam, ctc_weight=options.ctc_weight,
                                 batch_seconds=options.batch_seconds, lm_weight=options.lm_weight)
        if self.dcfg.beam < 1:
            raise UserError(f"--beam {self.dcfg.beam}: must be at least 1")
        if self.dcfg.batch_seconds <= 0:
            raise UserError(f"--batch-seconds {self.dcfg.batch_seconds}: must be positive")
        self.lm = loaded.fusion(self.dcfg)
        self.shift = encoder_frame_shift(self.model)
        self.logmel = LogMel(loaded.config.model.n_mels)
        self.prefix = self.tokenizer.prefix("asr" if "asr" in self.tokenizer.tasks else None)

    # ---- preparing
    def _cut(self, wav: np.ndarray) -> list[Segment]:
        """Segments of ``wav: (samples,)``: the whole of a short recording, else split on silence."""
        parts = segment(wav, self.options.vad)
        if parts and len(wav) <= self.options.vad.max_segment_s * SAMPLE_RATE:
            return [Segment(0, len(wav))]
        return parts

    def prepare_array(self, item: Item, wav: np.ndarray) -> Prepared:
        """``wav: (samples,)`` float32 at 16 kHz -> segments and their log-mels."""
        segs = self._cut(wav)
        feats = [self.logmel(torch.from_numpy(np.ascontiguousarray(wav[s.start:s.end]))[None])[0] for s in segs]
        return Prepared(item, len(wav) / SAMPLE_RATE, segs, feats)

    def prepare(self, item: Item) -> Prepared:
        """Load and cut one item; a failure is returned in ``error``, never raised."""
        if item.error:
            return Prepared(item, error=item.error)
        try:
            wav = load_audio(item.path, offset=item.offset, duration=item.duration)
        except UserError as e:
            return Prepared(item, error=str(e))
        except Exception as e:  # noqa: BLE001 - one bad file never stops the run
            return Prepared(item, error=f"{item.path}: cannot read audio ({type(e).__name__}: {e})")
        return self.prepare_array(item, wav)

    def _prepared(self, items: Iterable[Item]) -> Iterator[Prepared]:
        workers = self.options.workers
        return ordered_map(self.prepare, items, workers, 2 * workers)

    # ---- decoding
    @torch.inference_mode()
    def decode(self, feats: list[torch.Tensor]) -> list[Decoded]:
        """Decode segments in one padded batch. ``feats[i]: (T_i, n_mels)``.

        Every result has ``frames``/``probs`` for its tokens when they can be had (see the module
        docstring); results of segments shorter than ``MIN_DECODE_S`` are empty.
        """
        min_frames = int(MIN_DECODE_S * SAMPLE_RATE / HOP_LENGTH)
        out: list[Decoded] = [Decoded([], 0.0) for _ in feats]
        todo = [i for i, f in enumerate(feats) if f.size(0) > min_frames]
        if not todo:
            return out
        lengths = torch.tensor([feats[i].size(0) for i in todo])
        x = torch.zeros(len(todo), int(lengths.max()), feats[todo[0]].size(1))
        for j, i in enumerate(todo):
            x[j, : feats[i].size(0)] = feats[i]
        x, lengths = x.to(self.device), lengths.to(self.device)
        memory, mask = self.model.encode(x, lengths, chunk_size=self.dcfg.chunk_size,
                                         left_chunks=self.dcfg.left_chunks)
        hyps = SEARCHES[self.method](self.model, memory, mask, self.prefix, self.dcfg, self.lm)
        log_probs = None
        for j, (i, h) in enumerate(zip(todo, hyps)):
            if h.tokens and len(h.frames) != len(h.tokens) and self.model.ctc is not None:
                if log_probs is None:
                    log_probs = self.model.ctc(memory)
                aligned = ctc_align(log_probs[j, : int(mask[j].sum())], h.tokens)
                if aligned is not None:
                    h.frames, h.probs = aligned
            out[i] = h
        return out

    def _decode_safely(self, feats: list[torch.Tensor]) -> list[Decoded | Exception]:
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
        return tokens_to_words(self.tokenizer, d, self.shift, seg.start / SAMPLE_RATE, seg.end / SAMPLE_RATE)

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
        text = " ".join(s["text"] for s in segments if s["text"])
        return {**head, "text": text, "duration": round(prep.duration, 3), "words": words, "segments": segments}

    # ---- driving
    def run(self, items: Iterable[Item]) -> Iterator[tuple[Item, dict]]:
        """Transcribe items; yields ``(item, record)`` in input order as soon as each is complete."""
        pending: deque[_Job] = deque()
        queue: list[tuple[_Job, int]] = []
        queued_s = 0.0
        for prep in self._prepared(items):
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


# --------------------------------------------------------------------------- the bundled model
def default_model_path() -> Path:
    """The bundled checkpoint ``s2s_media/assets/asr_default.pt``; UserError when it is not installed."""
    path = Path(str(resources.files("s2s_media").joinpath(DEFAULT_MODEL)))
    if not path.is_file():
        raise UserError(f"no bundled model: {path} is missing from this install; pass a checkpoint "
                        "(--model CKPT, or load_model(path)) or reinstall s2s-media")
    return path


def load_speech_model(path: str | Path | None = None, device: str = "auto"):
    """:func:`s2s_media.model.load` for transcription: the checkpoint at ``path`` (the bundled default
    when None) as a :class:`~s2s_media.model.Model`; UserError when the model has no audio encoder."""
    from s2s_media.model import load
    return load(path, device, task="asr")
