"""Export a speech model to an ONNX directory, run by :mod:`s2s_media.inference.onnx_runtime` without torch.

The directory (``s2s-media export --format onnx CKPT OUT_DIR``) holds:

- ``encoder.onnx``: ONE chunk of the streaming encoder (:meth:`AttentionEncoder.forward_chunk`) with its
  caches as explicit inputs and outputs. Inputs: ``feats (B, T, F)`` CMVN'd log-mels, ``lengths (B,)``,
  ``offset (B,)`` the position of each stream's next encoder frame, then per frame-rate level
  (``""`` and, with ``half_rate_blocks``, ``"inner_"``) ``{p}cache_lengths (B,)`` and per block ``{p}keys_i``,
  ``{p}values_i (B, h, L, dk)`` (left-padded) and, for a Conformer, ``{p}conv_i (B, d, K - 1)``.
  Outputs: ``out (B, C, d)``, ``out_lengths (B,)``, per block ``{p}new_keys_i``/``{p}new_values_i``
  ``(B, h, L + C', dk)`` (the cache with the chunk appended, not yet trimmed) and ``{p}new_conv_i``. The
  runtime trims the caches (numpy). A whole utterance as one chunk with empty caches is full-context encoding.
- ``ctc.onnx``: ``memory (B, T, d) -> log_probs (B, T, V)``.
- ``decoder.onnx``: the attention decoder, teacher-forced for rescoring: ``tokens (N, U)``, ``memory (B, T, d)``,
  ``memory_mask (B, T)`` bool, ``memory_index (N,)`` -> ``logits (N, U, V)``.
- ``lm.npz``: the model's language model, when it has one (numpy's format, :func:`s2s_media.lm.files.save_lm_npz`).
- ``punctuation.onnx``: the punctuation and casing tagger the transcripts are written with (the bundled one for a
  model writing normalised English, or the one given), its vocabulary in the graph's metadata
  (:class:`~s2s_media.inference.onnx_runtime.OnnxTagger`).
- ``manifest.json``: format version, s2s-media version, opset, every file with its size and sha256, the
  checkpoint it was made from (``source``: file name and sha256), the
  full config, tokenizer, CMVN stats, the encoder's geometry and the model's ``meta``.

Weights: ``int8`` (the default) quantises every MatMul weight with ONNX Runtime's weight-only int8
(``MatMulNBits``, blocks of ``BLOCK`` along the input dimension, ``accuracy_level`` 4: int8 products with
activations quantised per row and block). No scale is shared between the rows of a batch, so a result never
depends on what it is batched with (unlike dynamic quantisation's per-tensor activation scale).
``float32`` keeps float weights. Positional encodings are computed in the graph (no table, no length limit).
"""
from __future__ import annotations

import base64
import copy
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import warnings
from importlib import metadata
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from s2s_media.config import to_dict
from s2s_media.errors import UserError
from s2s_media.inference.checkpoint import LoadedModel, load_model_file
from s2s_media.inference.onnx_runtime import FORMAT, FORMAT_VERSION, MANIFEST, file_digest
from s2s_media.inference.punctuation import Punctuator, writes_normalised_english
from s2s_media.lm.files import save_lm_npz
from s2s_media.models.attention_encoder import AttentionEncoder, half_lengths
from s2s_media.models.layers import PositionalEncoding, lengths_to_mask

OPSET = 17
ONNX_WEIGHTS = ("int8", "float32")
BLOCK = 32              # int8 weight blocks along the input dimension (MatMulNBits block_size)


class _Positions(nn.Module):
    """:class:`PositionalEncoding` computed in the graph: ``x * sqrt(d) + sinusoid(offset + t)``.

    ``forward(x: (B, T, d), offset: int | (B,)) -> (B, T, d)``; the same float32 products as the table.
    """

    def __init__(self, d_model: int):
        super().__init__()
        self.d_model = d_model
        div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
        self.register_buffer("div", div, persistent=False)

    def forward(self, x: torch.Tensor, offset=0) -> torch.Tensor:
        t = torch.arange(x.size(1), device=x.device)
        pos = (offset.unsqueeze(1) + t if isinstance(offset, torch.Tensor) else t.unsqueeze(0) + offset).float()
        angle = pos.unsqueeze(-1) * self.div                                   # (B|1, T, d/2)
        pe = torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1).flatten(2)
        return x * math.sqrt(self.d_model) + pe


def _with_graph_positions(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose :class:`PositionalEncoding` layers compute their table in the graph."""
    module = copy.deepcopy(module)
    for name, child in list(module.named_modules()):
        if isinstance(child, PositionalEncoding):
            parent = module.get_submodule(name.rpartition(".")[0]) if "." in name else module
            setattr(parent, name.rpartition(".")[2], _Positions(child.d_model))
    return module


def _version() -> str:
    """The installed s2s-media's version (the package's ``__init__`` sits in the API layer, above this one)."""
    try:
        return metadata.version("s2s-media")
    except metadata.PackageNotFoundError:
        return "unknown"


def level_sizes(body: AttentionEncoder) -> list[int]:
    """Blocks per frame-rate level: ``[outer]`` or ``[outer, inner]`` (half-rate blocks)."""
    n_half = len(body.half_rate)
    return [len(body.blocks) - n_half] + ([n_half] if n_half else [])


LEVEL_PREFIX = ("", "inner_")


def encoder_io_names(levels: list[int], conformer: bool) -> tuple[list[str], list[str]]:
    """Input and output names of ``encoder.onnx`` (see the module docstring)."""
    inputs, outputs = ["feats", "lengths", "offset"], ["out", "out_lengths"]
    for p, n in zip(LEVEL_PREFIX, levels):
        inputs.append(f"{p}cache_lengths")
        for kind in ("keys", "values") + (("conv",) if conformer else ()):
            inputs += [f"{p}{kind}_{i}" for i in range(n)]
            outputs += [f"{p}new_{kind}_{i}" for i in range(n)]
    return inputs, outputs


class _EncoderChunk(nn.Module):
    """:meth:`AttentionEncoder.forward_chunk` without the cache bookkeeping, over flat tensors (traceable)."""

    def __init__(self, body: AttentionEncoder):
        super().__init__()
        self.body = _with_graph_positions(body)
        self.levels = level_sizes(body)
        self.conformer = body.conformer

    def _unflat(self, flat: list[torch.Tensor]) -> list[tuple[torch.Tensor, list, list, list]]:
        """Per level: (cache_lengths, keys, values, conv)."""
        out = []
        for n in self.levels:
            lengths, flat = flat[0], flat[1:]
            keys, values, flat = flat[:n], flat[n:2 * n], flat[2 * n:]
            conv, flat = (flat[:n], flat[n:]) if self.conformer else ([None] * n, flat)
            out.append((lengths, keys, values, conv))
        return out

    @staticmethod
    def _valid(cache_lengths: torch.Tensor, cached: int, pad_mask: torch.Tensor) -> torch.Tensor:
        left = torch.arange(cached, device=pad_mask.device) >= cached - cache_lengths.unsqueeze(1)
        return torch.cat([left, pad_mask], dim=1)

    def forward(self, feats, lengths, offset, *flat):
        body, levels = self.body, self._unflat(list(flat))
        x, out_lengths = body.subsampling(feats, lengths)
        x = body.pos(x, offset)
        pad_masks = [lengths_to_mask(out_lengths, x.size(1))]
        news: list[list[list[torch.Tensor]]] = [[[], [], []] for _ in levels]
        counters, full = [0, 0], None
        for i, block in enumerate(body.blocks):
            if body.half_rate and i == body.half_rate.start:
                full = x
                x = _pair_merge(body.merge.logits, x, pad_masks[0])
                pad_masks.append(lengths_to_mask(half_lengths(out_lengths), x.size(1)))
            lv = 1 if i in body.half_rate else 0
            j = counters[lv]
            counters[lv] += 1
            cache_lengths, keys, values, conv = levels[lv]
            valid = self._valid(cache_lengths, keys[j].size(2), pad_masks[lv])
            x, k, v, c = block.forward_chunk(x, valid.unsqueeze(1), pad_masks[lv], keys[j], values[j], conv[j])
            news[lv][0].append(k)
            news[lv][1].append(v)
            if c is not None:
                news[lv][2].append(c)
            if full is not None and i == body.half_rate.stop - 1:
                x = body.bypass(full, x)
        out = [body.final_norm(x), out_lengths]
        for keys, values, conv in news:
            out += keys + values + conv
        return tuple(out)


def _pair_merge(logits: torch.Tensor, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
    """:class:`~s2s_media.models.attention_encoder.PairMerge` without a Python branch on the length (a trace
    would keep the example's): one zero frame is always appended, then ``ceil(T / 2)`` pairs are taken."""
    half = (x.size(1) + 1) // 2
    x = F.pad(x.masked_fill(~pad_mask.unsqueeze(-1), 0.0), (0, 0, 0, 1))
    w = torch.softmax(logits, 0)
    return w[0] * x[:, 0::2][:, :half] + w[1] * x[:, 1::2][:, :half]


class _Decoder(nn.Module):
    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.decoder = _with_graph_positions(decoder)

    def forward(self, tokens, memory, memory_mask, memory_index):
        return self.decoder(tokens, memory, memory_mask, memory_index=memory_index)


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
            dynamic: dict[str, dict[int, str]], opset: int) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")          # tracer warnings about Python ints taken from shapes
        torch.onnx.export(module.eval(), args, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic, opset_version=opset, dynamo=False, do_constant_folding=True)


def _example_cache(body: AttentionEncoder, batch: int, frames: int) -> list[torch.Tensor]:
    """Flat cache inputs of ``frames`` cached positions (``frames // 2`` at the inner level)."""
    cfg, flat = body.cfg, []
    h = cfg.n_heads
    for lv, n in enumerate(level_sizes(body)):
        f = frames // (2 ** lv)
        flat.append(torch.full((batch,), f, dtype=torch.long))
        flat += [torch.randn(batch, h, f, cfg.d_model // h) for _ in range(2 * n)]
        if body.conformer:
            flat += [torch.randn(batch, cfg.d_model, cfg.kernel_size - 1) for _ in range(n)]
    return flat


def export_encoder(body: AttentionEncoder, n_mels: int, path: Path, opset: int = OPSET) -> None:
    """Write ``encoder.onnx`` (see the module docstring) for a streamable attention encoder."""
    inputs, outputs = encoder_io_names(level_sizes(body), body.conformer)
    b, chunk = 2, 8
    feats = torch.randn(b, 4 * chunk + 3, n_mels)
    args = (feats, torch.tensor([4 * chunk + 3, 4 * chunk - 1]), torch.tensor([8, 8]), *_example_cache(body, b, 8))
    dynamic = {"feats": {0: "B", 1: "T"}, "lengths": {0: "B"}, "offset": {0: "B"}, "out": {0: "B", 1: "C"},
               "out_lengths": {0: "B"}}
    for name in inputs[3:] + outputs[2:]:
        dynamic[name] = {0: "B", 2: "L"} if ("keys" in name or "values" in name) else {0: "B"}
    _export(_EncoderChunk(body), args, path, inputs, outputs, dynamic, opset)


def export_ctc(ctc: nn.Module, d_model: int, path: Path, opset: int = OPSET) -> None:
    _export(ctc, (torch.randn(2, 5, d_model),), path, ["memory"], ["log_probs"],
            {"memory": {0: "B", 1: "T"}, "log_probs": {0: "B", 1: "T"}}, opset)


def export_decoder(decoder: nn.Module, d_model: int, path: Path, opset: int = OPSET) -> None:
    args = (torch.tensor([[1, 2, 3, 4], [1, 2, 3, 3], [1, 4, 4, 4]]), torch.randn(2, 6, d_model),
            torch.tensor([[True] * 6, [True] * 4 + [False] * 2]), torch.tensor([0, 1, 1]))
    _export(_Decoder(decoder), args, path, ["tokens", "memory", "memory_mask", "memory_index"], ["logits"],
            {"tokens": {0: "N", 1: "U"}, "memory": {0: "B", 1: "T"}, "memory_mask": {0: "B", 1: "T"},
             "memory_index": {0: "N"}, "logits": {0: "N", 1: "U"}}, opset)


def export_punctuation(punctuator: Punctuator, path: Path, opset: int = OPSET, source: dict | None = None) -> None:
    """Write a torch punctuation model as ``punctuation.onnx`` (float32), its vocabulary, forms and meta in the
    graph's metadata (what :class:`~s2s_media.inference.onnx_runtime.OnnxTagger` reads); ``source``
    (:func:`source_entry` of the file it came from) too, when given."""
    import onnx     # noqa: PLC0415 - the train extra's; only export needs it

    ids = torch.tensor([[3, 4, 5, 0], [6, 7, 0, 0]])
    _export(punctuator.model, (ids, ids.clamp(max=1)), path, ["ids", "suffixes"], ["marks", "cases"],
            {"ids": {0: "B", 1: "T"}, "suffixes": {0: "B", 1: "T"}, "marks": {0: "B", 1: "T"},
             "cases": {0: "B", 1: "T"}}, opset)
    model = onnx.load(str(path))
    info = {"vocab": punctuator.vocab.to_dict(), "forms": punctuator.forms, "meta": punctuator.meta,
            **({"source": source} if source is not None else {})}
    onnx.helper.set_model_props(model, {"s2s_media": json.dumps(info)})
    onnx.save(model, str(path))


def quantize_int8(path: Path) -> None:
    """Weight-only int8 of every MatMul with a constant weight, in place (see the module docstring)."""
    import onnx     # noqa: PLC0415 - the train extra's; only export needs it
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    model = onnx.load(str(path))
    config = DefaultWeightOnlyQuantConfig(block_size=BLOCK, is_symmetric=True, accuracy_level=4, bits=8)
    quantizer = MatMulNBitsQuantizer(model, algo_config=config)
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.WARNING)         # the quantizer logs every node at INFO
    try:
        quantizer.process()
    finally:
        logging.getLogger().setLevel(level)
    onnx.save(quantizer.model.model, str(path))


def source_entry(path: str | Path) -> dict:
    """``{"file", "sha256"}`` of the file an export was made from: what tells an export made from it."""
    return {"file": Path(path).name, "sha256": file_digest(Path(path))}


def file_entry(path: Path) -> dict:
    """``{"path", "bytes", "sha256"}`` of one file of the directory."""
    return {"path": path.name, "bytes": path.stat().st_size, "sha256": file_digest(path)}


def json_tokenizer(d: dict) -> dict:
    """A tokenizer dict made JSON-safe: bytes (a SentencePiece model) as ``{"base64": ...}``."""
    return {k: {"base64": base64.b64encode(v).decode("ascii")} if isinstance(v, bytes) else v for k, v in d.items()}


def export_onnx(loaded: LoadedModel, out_dir: str | Path, weights: str = "int8", opset: int = OPSET,
                punctuation: Punctuator | None = None, source: dict | None = None) -> dict:
    """Write ``loaded`` (a float model, e.g. :func:`load_model_file` with ``quantize=False``) and ``punctuation``
    (None: none shipped) as an ONNX directory; returns the manifest, which records ``source`` (the checkpoint's
    :func:`source_entry`) when given. The directory is written in a temporary folder and moved in place."""
    if weights not in ONNX_WEIGHTS:
        raise UserError(f"--weights {weights}: the ONNX export stores {' or '.join(ONNX_WEIGHTS)}")
    model, out_dir = loaded.model, Path(out_dir)
    if "audio" not in model.encoders or model.ctc is None:
        raise UserError("export --format onnx: needs a speech model with a CTC head (model.modalities audio, "
                        "ctc_weight > 0); captioning models export with --format torch")
    audio = model.encoders["audio"]
    body = audio.body
    if not isinstance(body, AttentionEncoder):
        raise UserError(f"export --format onnx: the {audio.name} encoder has no chunked form; "
                        "export a conformer or transformer model, or use --format torch")
    audio.check_streamable()
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UserError(f"{out_dir}: exists and is not empty; choose a new directory or remove it")
    levels = level_sizes(body)
    if 0 in levels:
        raise UserError("export --format onnx: half_rate_blocks cover every block; keep at least one full-rate block")
    d = body.cfg.d_model
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent if out_dir.parent.exists() else None))
    try:
        files = {"encoder": tmp / "encoder.onnx", "ctc": tmp / "ctc.onnx", "decoder": tmp / "decoder.onnx"}
        export_encoder(body, loaded.config.model.n_mels, files["encoder"], opset)
        export_ctc(model.ctc, d, files["ctc"], opset)
        export_decoder(model.decoder, d, files["decoder"], opset)
        if weights == "int8":
            for p in files.values():
                quantize_int8(p)
        if loaded.lm is not None:
            files["lm"] = save_lm_npz(tmp / "lm.npz", loaded.lm, loaded.tokenizer, {"from": "export"})
        if punctuation is not None:
            files["punctuation"] = tmp / "punctuation.onnx"
            export_punctuation(punctuation, files["punctuation"], opset)
        inputs, outputs = encoder_io_names(levels, body.conformer)
        cmvn = audio.cmvn
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "s2s_media_version": _version(), "opset": opset,
            "weights": weights,
            "files": {k: file_entry(p) for k, p in files.items()},
            "config": to_dict(loaded.config),
            "tokenizer": json_tokenizer(loaded.tokenizer.to_dict()),
            "vocab_size": loaded.tokenizer.vocab_size,
            "cmvn": {"mean": cmvn.mean.tolist(), "istd": cmvn.istd.tolist()},
            "encoder": {"n_mels": loaded.config.model.n_mels, "d_model": d, "n_heads": body.cfg.n_heads,
                        "kernel_size": body.cfg.kernel_size if body.conformer else 0, "conformer": body.conformer,
                        "levels": levels, "stride": body.subsampling.stride,
                        "right_context": body.subsampling.right_context, "inputs": inputs, "outputs": outputs},
            "meta": loaded.meta,
            **({"source": source} if source is not None else {}),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        if out_dir.exists():
            out_dir.rmdir()
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def export_onnx_checkpoint(src: str | Path, out_dir: str | Path, weights: str = "int8", opset: int = OPSET,
                           lm: str | Path | None = None, punctuation: bool = True,
                           punctuation_model: str | Path | None = None) -> dict:
    """:func:`export_onnx` of checkpoint ``src`` (from train, average or a torch export); ``lm``: an LM file to
    ship in place of the one stored in the checkpoint; the punctuation model shipped: ``punctuation_model``, else
    the bundled one when the model writes normalised English, none when not ``punctuation``. Returns a summary
    with the sizes."""
    loaded = load_model_file(src, quantize=False, lm=lm)
    punctuator = None
    if punctuation and (punctuation_model is not None or writes_normalised_english(loaded.tokenizer)):
        punctuator = Punctuator.load(punctuation_model)
    manifest = export_onnx(loaded, out_dir, weights, opset, punctuator, source_entry(src))
    total = sum(f["bytes"] for f in manifest["files"].values())
    return {"src": str(src), "dst": str(out_dir), "src_bytes": Path(src).stat().st_size, "dst_bytes": total,
            "weights": weights, "lm": "lm" in manifest["files"], "punctuation": "punctuation" in manifest["files"]}


def cache_root() -> Path:
    """Where :func:`cached_onnx_dir` keeps exports: ``$S2S_MEDIA_CACHE/onnx`` (default ``~/.cache/s2s-media``)."""
    return Path(os.environ.get("S2S_MEDIA_CACHE") or Path.home() / ".cache" / "s2s-media") / "onnx"


def cached_onnx_dir(ckpt: str | Path) -> Path:
    """The ONNX directory of checkpoint ``ckpt`` (int8), exported on first use and kept, keyed by the file's
    sha256, so ``--runtime onnx`` with a checkpoint (or the bundled model) exports once."""
    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise UserError(f"{ckpt}: checkpoint not found; pass a checkpoint file (.pt) or an ONNX model directory")
    digest = file_digest(ckpt)[:16]
    out = cache_root() / f"{ckpt.stem}-{digest}-v{FORMAT_VERSION}"
    if not (out / MANIFEST).is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        print(f"exporting {ckpt} to ONNX once, into {out} (takes a minute)", file=sys.stderr)
        export_onnx_checkpoint(ckpt, out)
    return out
