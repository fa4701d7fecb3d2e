"""The ONNX runtime of a speech model: numpy in, numpy out, no torch.

:class:`OnnxSpeechModel` opens a directory written by ``s2s-media export --format onnx`` (layout in
:mod:`s2s_media.inference.onnx_export`), checks it (every file present and the one its ``manifest.json``
lists, an opset this onnxruntime runs) and runs its three graphs:

- :meth:`~OnnxSpeechModel.forward_chunk`: the next chunk of a batch of streams against a :class:`ChunkCache`
  (the numpy mirror of :class:`~s2s_media.models.attention_encoder.EncoderCache`); the graph appends the
  chunk to the caches and this module trims them to ``max_cache_frames``, as the torch encoder does;
- :meth:`~OnnxSpeechModel.encode`: whole utterances with full context (one chunk, empty caches) or in chunks
  of ``chunk_size`` frames with ``left_chunks`` of left context, what ``Seq2SeqModel.encode`` computes;
- :meth:`~OnnxSpeechModel.ctc_log_probs` and :meth:`~OnnxSpeechModel.decoder_logits`.

A CTC search consumes ``ctc_log_probs`` (numpy ``(B, T, V)`` float32 and ``lengths (B,)``) directly; torch
code wraps them with ``torch.from_numpy`` (:mod:`s2s_media.inference.onnx_model`). Nothing here imports
torch, so a serving install can do without it.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s2s_media.errors import UserError
from s2s_media.text.tokenizer import Tokenizer, tokenizer_from_dict

FORMAT = "s2s-media-onnx"
FORMAT_VERSION = 2              # 2: the LM as lm.npz (numpy), the punctuation model as punctuation.onnx
MANIFEST = "manifest.json"
GRAPHS = ("encoder", "ctc", "decoder")
HOP_SECONDS = 0.01              # feature frame shift (s2s_media.frontend.audio.HOP_LENGTH / SAMPLE_RATE)
REEXPORT = "re-export it with s2s-media export --format onnx CKPT DIR"


def is_onnx_dir(path: str | Path) -> bool:
    """True when ``path`` is a directory with an ONNX model's ``manifest.json``."""
    path = Path(path)
    return path.is_dir() and (path / MANIFEST).is_file()


@dataclass
class ChunkCache:
    """Left context of a batch of streams (see :class:`~s2s_media.models.attention_encoder.EncoderCache`).

    offset: (B,) int64 encoder frames produced; lengths: (B,) int64 cached frames per stream;
    keys/values: per block ``(B, h, L, dk)`` float32, left-padded; conv: per block ``(B, d, K - 1)``
    (Conformer); inner: the half-rate blocks' own cache, or None.
    """

    offset: np.ndarray
    lengths: np.ndarray
    keys: list[np.ndarray]
    values: list[np.ndarray]
    conv: list[np.ndarray]
    inner: ChunkCache | None = None

    @property
    def frames(self) -> int:
        return self.keys[0].shape[2] if self.keys else 0

    def num_bytes(self) -> int:
        own = sum(a.nbytes for a in self.keys + self.values + self.conv)
        return own + (self.inner.num_bytes() if self.inner is not None else 0)

    def levels(self) -> list[ChunkCache]:
        return [self] + ([self.inner] if self.inner is not None else [])

    @staticmethod
    def stack(caches: list[ChunkCache]) -> ChunkCache:
        """One batch from several caches (keys/values left-padded to the longest), as ``EncoderCache.stack``."""
        if len(caches) == 1:
            return caches[0]
        length = max(c.frames for c in caches)

        def padded(arrays: list[np.ndarray]) -> np.ndarray:
            if all(a.shape[2] == length for a in arrays):
                return np.concatenate(arrays)
            return np.concatenate([np.pad(a, ((0, 0), (0, 0), (length - a.shape[2], 0), (0, 0))) for a in arrays])

        n = len(caches[0].keys)
        inner = ChunkCache.stack([c.inner for c in caches]) if caches[0].inner is not None else None
        return ChunkCache(np.concatenate([c.offset for c in caches]), np.concatenate([c.lengths for c in caches]),
                          [padded([c.keys[i] for c in caches]) for i in range(n)],
                          [padded([c.values[i] for c in caches]) for i in range(n)],
                          [np.concatenate([c.conv[i] for c in caches]) for i in range(len(caches[0].conv))], inner)

    def unstack(self) -> list[ChunkCache]:
        """One cache per stream, each trimmed to its own frames (copies, unless the batch is one stream)."""
        batch = self.offset.shape[0]
        if batch == 1:
            return [self]
        inner = self.inner.unstack() if self.inner is not None else [None] * batch
        length = self.frames
        return [ChunkCache(self.offset[b:b + 1].copy(), self.lengths[b:b + 1].copy(),
                           [k[b:b + 1, :, length - n:].copy() for k in self.keys],
                           [v[b:b + 1, :, length - n:].copy() for v in self.values],
                           [c[b:b + 1].copy() for c in self.conv], inner[b])
                for b, n in enumerate(self.lengths.tolist())]


def subsampled_lengths(lengths: np.ndarray) -> np.ndarray:
    """Encoder frames of ``lengths`` feature frames (the ×4 convolutional front): ``((n - 1) // 2 - 1) // 2``."""
    return np.maximum(((np.asarray(lengths) - 1) // 2 - 1) // 2, 0)


def keep_last_valid(arrays: list[np.ndarray], valid: np.ndarray, keep: np.ndarray) -> list[np.ndarray]:
    """Per stream, the last ``keep[b]`` valid positions of ``(B, h, P, dk)`` arrays, left-padded to ``max(keep)``.

    valid: (B, P) bool; keep: (B,) with ``keep[b] <= valid[b].sum()``.
    """
    length = int(keep.max()) if keep.size else 0
    p = valid.shape[1]
    if valid[:, p - length:].all() and (keep == length).all():
        return [a[:, :, p - length:] for a in arrays]
    out = [np.zeros(a.shape[:2] + (length,) + a.shape[3:], a.dtype) for a in arrays]
    for b in range(valid.shape[0]):
        k = int(keep[b])
        if k == 0:
            continue
        cols = np.flatnonzero(valid[b])[-k:]
        for a, o in zip(arrays, out):
            o[b, :, length - k:] = a[b, :, cols].swapaxes(0, 1)
    return out


class OnnxSpeechModel:
    """An exported speech model: ``OnnxSpeechModel(directory, threads=1)``.

    threads: intra-op threads of each graph (0: onnxruntime's default, every core).
    Attributes: ``manifest`` (dict), ``tokenizer``, ``decode`` (the stored decoding defaults, a dict),
    ``n_mels``, ``stride``, ``right_context``, ``frame_shift`` (seconds per encoder frame), ``vocab_size``,
    ``lm_path`` (the shipped language model, ``lm.npz``, or None), ``punctuation_path`` (the shipped
    punctuation model, ``punctuation.onnx``, or None).
    """

    def __init__(self, directory: str | Path, threads: int = 1):
        self.directory = Path(directory)
        self.manifest = read_manifest(self.directory)
        m, enc = self.manifest, self.manifest["encoder"]
        self.n_mels, self.stride, self.right_context = enc["n_mels"], enc["stride"], enc["right_context"]
        self.frame_shift = self.stride * HOP_SECONDS
        self.d_model, self.n_heads, self.kernel_size = enc["d_model"], enc["n_heads"], enc["kernel_size"]
        self.levels: list[int] = enc["levels"]
        self.conformer = bool(enc["conformer"])
        self.vocab_size = m["vocab_size"]
        self.decode = dict(m["config"].get("decode", {}))
        self.mean = np.asarray(m["cmvn"]["mean"], np.float32)
        self.istd = np.asarray(m["cmvn"]["istd"], np.float32)
        self.tokenizer = _tokenizer(m["tokenizer"], self.directory / MANIFEST)
        files = m["files"]
        self.lm_path = self.directory / files["lm"]["path"] if "lm" in files else None
        self.punctuation_path = self.directory / files["punctuation"]["path"] if "punctuation" in files else None
        options = session_options(threads)
        self.sessions = {g: _session(self.directory / files[g]["path"], options) for g in GRAPHS}
        self._check_io()

    def _check_io(self) -> None:
        enc = self.sessions["encoder"]
        have = ([i.name for i in enc.get_inputs()], [o.name for o in enc.get_outputs()])
        want = (self.manifest["encoder"]["inputs"], self.manifest["encoder"]["outputs"])
        if have != want:
            raise UserError(f"{self.directory / 'encoder.onnx'}: its inputs/outputs differ from {MANIFEST}'s "
                            f"(a file from another export?); {REEXPORT}")

    # ---- encoder
    def normalise(self, feats: np.ndarray) -> np.ndarray:
        """CMVN of log-mels ``(..., n_mels)`` -> float32, what :meth:`forward_chunk` expects."""
        return ((np.asarray(feats, np.float32) - self.mean) * self.istd).astype(np.float32, copy=False)

    def init_cache(self, batch: int = 1) -> ChunkCache:
        """An empty cache: ``batch`` streams at frame 0."""
        dk = self.d_model // self.n_heads

        def level(n: int, inner: ChunkCache | None = None) -> ChunkCache:
            empty = np.zeros((batch, self.n_heads, 0, dk), np.float32)
            conv = [np.zeros((batch, self.d_model, self.kernel_size - 1), np.float32)
                    for _ in range(n)] if self.conformer else []
            zeros = np.zeros(batch, np.int64)
            return ChunkCache(zeros, zeros.copy(), [empty] * n, [empty] * n, conv, inner)

        return level(self.levels[0], level(self.levels[1]) if len(self.levels) > 1 else None)

    def forward_chunk(self, feats: np.ndarray, lengths: np.ndarray, cache: ChunkCache,
                      max_cache_frames: int = -1) -> tuple[np.ndarray, np.ndarray, ChunkCache]:
        """The next chunk of each stream (as :meth:`AttentionEncoder.forward_chunk`).

        feats: (B, T, n_mels) CMVN'd features under the chunk's subsampling windows (``4C + 3`` frames for
        ``C`` output frames, overlapping the previous chunk's last 3); lengths: (B,) valid frames;
        max_cache_frames: left context kept per stream (-1: all). Returns ``(out (B, C, d), out_lengths (B,),
        new cache)``.
        """
        lengths = np.asarray(lengths, np.int64)
        feed = {"feats": np.ascontiguousarray(feats, np.float32), "lengths": lengths,
                "offset": cache.offset.astype(np.int64)}
        levels = cache.levels()
        for p, c in zip(("", "inner_"), levels):
            feed[f"{p}cache_lengths"] = c.lengths.astype(np.int64)
            for kind in ("keys", "values") + (("conv",) if self.conformer else ()):
                for i, t in enumerate(getattr(c, kind)):
                    feed[f"{p}{kind}_{i}"] = t
        out, out_lengths, *rest = self.sessions["encoder"].run(None, feed)
        new: list[ChunkCache] = []
        caps = [max_cache_frames, max_cache_frames // 2 if max_cache_frames >= 0 else -1]
        n_frames = [out_lengths, (out_lengths + 1) // 2]
        width = [out.shape[1], (out.shape[1] + 1) // 2]
        for lv, (c, n) in enumerate(zip(levels, self.levels)):
            per = 3 if self.conformer else 2
            part, rest = rest[:per * n], rest[per * n:]
            keys, values, conv = part[:n], part[n:2 * n], part[2 * n:]
            cached = c.frames
            left = np.arange(cached) >= cached - c.lengths[:, None]
            pad = np.arange(width[lv]) < n_frames[lv][:, None]
            keep = c.lengths + n_frames[lv]
            if caps[lv] >= 0:
                keep = np.minimum(keep, caps[lv])
            trimmed = keep_last_valid(keys + values, np.concatenate([left, pad], axis=1), keep)
            new.append(ChunkCache(c.offset + n_frames[lv], keep, trimmed[:n], trimmed[n:], list(conv)))
        if len(new) > 1:
            new[0].inner = new[1]
        return out, out_lengths, new[0]

    def encode(self, feats: np.ndarray, lengths: np.ndarray, chunk_size: int = 0,
               left_chunks: int = -1) -> tuple[np.ndarray, np.ndarray]:
        """Log-mels ``(B, T, n_mels)`` (not normalised), ``lengths (B,)`` -> memory ``(B, T', d)``, ``(B,)``.

        ``chunk_size > 0``: chunks of that many encoder frames, each seeing ``left_chunks`` chunks before it
        (all when negative), what ``Seq2SeqModel.encode(..., chunk_size, left_chunks)`` computes.
        """
        x, lengths = self.normalise(feats), np.asarray(lengths, np.int64)
        cache = self.init_cache(x.shape[0])
        if chunk_size <= 0:
            out, out_lengths, _ = self.forward_chunk(x, lengths, cache)
            return out, out_lengths
        if len(self.levels) > 1 and chunk_size % 2:
            raise UserError(f"chunk size {chunk_size}: this encoder runs blocks at half rate, so chunks need an "
                            f"even number of frames; use {chunk_size + 1}")
        cap = chunk_size * left_chunks if left_chunks >= 0 else -1
        total = subsampled_lengths(lengths)
        window = self.stride * (chunk_size - 1) + self.right_context + 1
        outs = []
        for start in range(0, int(total.max()) if total.size else 0, chunk_size):
            first = self.stride * start
            part = x[:, first:first + window]
            out, _, cache = self.forward_chunk(part, np.clip(lengths - first, 0, part.shape[1]), cache, cap)
            outs.append(out)
        if not outs:
            return np.zeros((x.shape[0], 0, self.d_model), np.float32), total
        return np.concatenate(outs, axis=1), total

    # ---- heads
    def ctc_log_probs(self, memory: np.ndarray) -> np.ndarray:
        """memory (B, T, d) -> CTC log-posteriors (B, T, V) float32."""
        return self.sessions["ctc"].run(None, {"memory": np.ascontiguousarray(memory, np.float32)})[0]

    def decoder_logits(self, tokens: np.ndarray, memory: np.ndarray, memory_mask: np.ndarray,
                       memory_index: np.ndarray | None = None) -> np.ndarray:
        """Teacher-forced attention decoder: ``tokens (N, U)`` over memory rows ``memory_index (N,)`` (default
        row i for token row i) of ``memory (B, T, d)``, ``memory_mask (B, T)`` bool -> logits (N, U, V)."""
        tokens = np.asarray(tokens, np.int64)
        index = np.arange(tokens.shape[0]) if memory_index is None else memory_index
        return self.sessions["decoder"].run(None, {
            "tokens": tokens, "memory": np.ascontiguousarray(memory, np.float32),
            "memory_mask": np.asarray(memory_mask, bool), "memory_index": np.asarray(index, np.int64)})[0]


class OnnxTagger:
    """The punctuation and casing tagger as ONNX (``punctuation.onnx``): ``tag(ids, suffixes)``, numpy
    ``(B, T)`` int64 -> mark logits ``(B, T, M)`` and case logits ``(B, T, C)``, as
    :meth:`~s2s_media.models.punctuation.PunctuationModel.tag`. Its word vocabulary, forms and meta are the
    graph's metadata (``custom_metadata_map["s2s_media"]``, JSON), so the file stands alone."""

    def __init__(self, path: str | Path, threads: int = 1):
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"{self.path}: punctuation model not found; pass a punctuation model "
                            "(--punctuation-model FILE) or turn punctuation off (--no-punctuation)")
        self.session = _session(self.path, session_options(threads))
        try:
            self.info = json.loads(self.session.get_modelmeta().custom_metadata_map["s2s_media"])
        except (KeyError, ValueError) as e:
            raise UserError(f"{self.path}: not an s2s-media punctuation model (no {e} metadata); "
                            f"{REEXPORT}") from None

    def tag(self, ids: np.ndarray, suffixes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        marks, cases = self.session.run(None, {"ids": np.asarray(ids, np.int64),
                                               "suffixes": np.asarray(suffixes, np.int64)})
        return marks, cases


# --------------------------------------------------------------------------- loading and checks
def session_options(threads: int):
    """onnxruntime's options for one model: ``threads`` intra-op threads (0: every core), quiet logs."""
    import onnxruntime as ort     # ~0.4 s: imported by the first model opened, not by importing this module
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options



def read_manifest(directory: Path) -> dict:
    """The checked ``manifest.json`` of an ONNX directory: known format, every listed file present and equal."""
    path = directory / MANIFEST
    if not directory.is_dir():
        raise UserError(f"{directory}: not a directory; pass an ONNX model directory ({REEXPORT})")
    if not path.is_file():
        raise UserError(f"{path}: missing, so {directory} is not an s2s-media ONNX model directory; {REEXPORT}")
    try:
        m = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: unreadable ({type(e).__name__}: {e}); {REEXPORT}") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise UserError(f"{path}: not an s2s-media ONNX manifest (format {m.get('format') if isinstance(m, dict) else m!r}); "
                        f"{REEXPORT}")
    version = m.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UserError(f"{path}: format version {version} is newer than this s2s-media reads "
                        f"({FORMAT_VERSION}); upgrade s2s-media")
    if version < FORMAT_VERSION:
        raise UserError(f"{path}: format version {version} (its LM a torch file) is older than this s2s-media "
                        f"reads ({FORMAT_VERSION}); {REEXPORT}")
    missing = [k for k in ("files", "encoder", "config", "tokenizer", "cmvn", "vocab_size") if k not in m]
    missing += [g for g in GRAPHS if g not in m.get("files", {})]
    if missing:
        raise UserError(f"{path}: lacks {', '.join(missing)}; {REEXPORT}")
    for entry in m["files"].values():
        _check_file(directory / entry["path"], entry)
    return m


def file_digest(path: Path) -> str:
    """The sha256 of a file (hex), what ``manifest.json`` lists for each file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_file(path: Path, entry: dict) -> None:
    if not path.is_file():
        raise UserError(f"{path}: missing (listed in {MANIFEST}); copy the whole directory again or {REEXPORT}")
    size = path.stat().st_size
    if size != entry["bytes"] or file_digest(path) != entry["sha256"]:
        what = f"{size} bytes, {MANIFEST} says {entry['bytes']}" if size != entry["bytes"] else "sha256 differs"
        raise UserError(f"{path}: does not match {MANIFEST} ({what}: a partial copy or a file of another export); "
                        f"copy the whole directory again or {REEXPORT}")


def _session(path: Path, options):
    """An onnxruntime CPU session for one graph; its failures become one-line :class:`UserError`."""
    import onnxruntime as ort
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types; each becomes one line
        text = str(e)
        opset = re.search(r"[Oo]pset (\d+)", text)
        if opset:
            raise UserError(f"{path}: uses ONNX opset {opset.group(1)}, which onnxruntime {ort.__version__} does "
                            "not run; upgrade onnxruntime (pip install -U onnxruntime) or re-export with a lower "
                            "--opset (s2s-media export --format onnx --opset 17)") from None
        reason = text.splitlines()[0][-200:] if text else type(e).__name__
        raise UserError(f"{path}: onnxruntime cannot load it ({reason}); {REEXPORT}") from None


def _tokenizer(d: dict, where: Path) -> Tokenizer:
    d = {k: base64.b64decode(v["base64"]) if isinstance(v, dict) and "base64" in v else v for k, v in d.items()}
    try:
        return tokenizer_from_dict(d)
    except (KeyError, ValueError, TypeError) as e:
        raise UserError(f"{where}: tokenizer entry is unusable ({e}); {REEXPORT}") from None
