"""The bundled default speech model: it ships inside the package, is a plain small checkpoint, has
its model card, and transcribes espeak-ng speech it never heard well enough that a broken export
(random or mismatched weights, wrong tokenizer, lost CMVN) would fail."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import s2s_media
from s2s_media.inference.checkpoint import load_model_file
from s2s_media.metrics import wer
from s2s_media.models.seq2seq import param_count

ASSETS = Path(s2s_media.__file__).parent / "assets"
BUNDLED = ASSETS / "asr_default.pt"
CARD = ASSETS / "asr_default.md"


def test_bundled_model_is_a_small_plain_checkpoint_with_a_card():
    assert BUNDLED.is_file(), f"{BUNDLED} is missing: the package must ship its default model"
    assert BUNDLED.stat().st_size < 12 * 2**20, f"{BUNDLED} is {BUNDLED.stat().st_size / 2**20:.1f} MiB; a few MB expected"
    ckpt = torch.load(BUNDLED, map_location="cpu", weights_only=True)
    assert {"model", "config", "tokenizer", "cmvn", "version", "lm"} <= set(ckpt)
    loaded = load_model_file(BUNDLED, quantize=False)
    assert loaded.fusion(loaded.config.decode) is not None       # its language model is on by default
    card = CARD.read_text(encoding="utf-8")
    for must in ("trained on", "test split", "real speech", "language model"):
        assert must in card.lower(), f"the model card must say {must!r}"


def _number(pattern: str, text: str) -> float:
    m = re.search(pattern, text)
    assert m, f"the model card no longer says {pattern!r}"
    return float(m.group(1).replace(" ", ""))


def test_the_card_describes_the_file_it_ships_with():
    """What the card states (size, parameters, vocabulary, n-grams, default decoding) is what the file holds."""
    card = CARD.read_text(encoding="utf-8")
    loaded = load_model_file(BUNDLED, quantize=False)
    dec = loaded.config.decode
    assert _number(r"([\d.]+) M-parameter", card) == pytest.approx(param_count(loaded.model) / 1e6, abs=0.005)
    assert _number(r"\((\d+) units\)", card) == loaded.tokenizer.vocab_size
    assert _number(r"([\d ]+) n-grams", card) == loaded.lm.num_ngrams
    assert _number(r"([\d.]+) MB in all", card) == pytest.approx(BUNDLED.stat().st_size / 1e6, abs=0.05)
    assert _number(r"CTC prefix beam search \(beam (\d+)\)", card) == dec.beam
    assert _number(r"\(weight ([\d.]+),", card) == pytest.approx(dec.lm_weight)
    assert _number(r"bonus ([\d.]+) per character", card) == pytest.approx(dec.lm_bonus)
    assert _number(r"the best (\d+) hypotheses rescored", card) == dec.rescore_nbest and dec.method == "rescoring"
    assert _number(r"up\s+to (\d+) s of audio", card) == dec.batch_seconds


def test_load_model_without_a_path_transcribes_unseen_sentences(tiny_corpus, one_thread):
    model = s2s_media.load_model(device="cpu")
    rows = [json.loads(line) for line in (tiny_corpus / "train.jsonl").read_text().splitlines()]
    hyps = [model.transcribe(str(tiny_corpus / r["audio"]))["text"] for r in rows]
    refs = [r["text"] for r in rows]
    score = wer(refs, hyps)
    # an untrained or mis-exported model scores ~100 %; the bundled one is far below (see its card)
    assert score.rate < 0.6, f"bundled model WER {score.rate:.1%} on the test sentences: {list(zip(refs, hyps))}"


ONNX_FORM = ASSETS / "asr_default.onnx"
REGENERATE = "python scripts/export_bundled_onnx.py"


def test_the_onnx_form_was_made_from_the_shipped_checkpoint():
    """asr_default.onnx/ and punct_default.onnx record the sha256 of the .pt they were exported from: after a
    new .pt, this fails until the ONNX forms are made again (the card says how)."""
    from s2s_media.inference.onnx_export import source_entry
    from s2s_media.inference.onnx_runtime import OnnxTagger, read_manifest
    redo = f"the ONNX form is stale; run {REGENERATE}"
    manifest = read_manifest(ONNX_FORM)                         # every listed file present, sizes and sha256 equal
    assert manifest.get("source") == source_entry(BUNDLED), redo
    assert "punctuation" not in manifest["files"]                # shared: assets/punct_default.onnx
    assert (ONNX_FORM / "calibration.json").read_bytes() == BUNDLED.with_suffix(".calibration.json").read_bytes(), redo
    assert OnnxTagger(ASSETS / "punct_default.onnx").info.get("source") == source_entry(ASSETS / "punct_default.pt"), redo
    assert REGENERATE in CARD.read_text(encoding="utf-8"), "the model card must say how to make the ONNX form"


def test_the_package_ships_the_onnx_form():
    import fnmatch
    import tomllib
    root = Path(s2s_media.__file__).parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["s2s_media"]
    files = [p.relative_to(ASSETS.parent).as_posix() for p in [*ONNX_FORM.iterdir(), ASSETS / "punct_default.onnx"]]
    assert all(any(fnmatch.fnmatch(f, pat) for pat in patterns) for f in files), (files, patterns)


def test_the_loader_picks_the_form_the_runtime_runs(monkeypatch):
    from s2s_media.inference import loaded, punctuation
    assert loaded.bundled_model_path("asr") == BUNDLED                       # torch is importable here
    assert loaded.bundled_model_path("asr", "torch") == BUNDLED
    assert loaded.bundled_model_path("asr", "onnx") == ONNX_FORM
    assert punctuation.bundled_punctuation_path() == ASSETS / "punct_default.pt"
    monkeypatch.setattr(loaded, "torch_importable", lambda: False)
    monkeypatch.setattr(punctuation, "torch_importable", lambda: False)
    assert loaded.bundled_model_path("asr") == ONNX_FORM                     # a runtime install
    assert punctuation.bundled_punctuation_path() == ASSETS / "punct_default.onnx"


def test_the_onnx_form_transcribes_as_the_checkpoint_does(tiny_corpus, one_thread):
    rows = [json.loads(line) for line in (tiny_corpus / "train.jsonl").read_text().splitlines()][:4]
    wavs = [str(tiny_corpus / r["audio"]) for r in rows]
    torch_model = s2s_media.load_model(device="cpu")
    onnx_model = s2s_media.load_model(runtime="onnx", threads=1)
    assert onnx_model.loaded.calibration is not None
    from s2s_media.inference.onnx_runtime import OnnxTagger
    from s2s_media.inference.transcriber import TranscribeOptions, punctuator_for
    # its punctuation: the shared ONNX form, so the ONNX runtime never needs torch
    assert isinstance(punctuator_for(TranscribeOptions(), onnx_model.loaded).model, OnnxTagger)
    want = [torch_model.transcribe(w)["text"] for w in wavs]
    got = [onnx_model.transcribe(w)["text"] for w in wavs]
    # int8 weights on both sides, quantised differently: a word may differ, no more
    assert wer(want, got).rate <= 0.15, list(zip(want, got))
