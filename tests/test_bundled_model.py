"""The bundled default speech model: it ships inside the package, is a plain small checkpoint, has
its model card, and transcribes espeak-ng speech it never heard well enough that a broken export
(random or mismatched weights, wrong tokenizer, lost CMVN) would fail."""
from __future__ import annotations

import json
from pathlib import Path

import torch

import s2s_media
from s2s_media.metrics import wer

ASSETS = Path(s2s_media.__file__).parent / "assets"
BUNDLED = ASSETS / "asr_default.pt"
CARD = ASSETS / "asr_default.md"


def test_bundled_model_is_a_small_plain_checkpoint_with_a_card():
    assert BUNDLED.is_file(), f"{BUNDLED} is missing: the package must ship its default model"
    assert BUNDLED.stat().st_size < 12 * 2**20, f"{BUNDLED} is {BUNDLED.stat().st_size / 2**20:.1f} MiB; a few MB expected"
    ckpt = torch.load(BUNDLED, map_location="cpu", weights_only=True)
    assert {"model", "config", "tokenizer", "cmvn", "version", "lm"} <= set(ckpt)
    from s2s_media.models.build import load_model_file
    loaded = load_model_file(BUNDLED)
    assert loaded.fusion(loaded.config.decode) is not None       # its language model is on by default
    card = CARD.read_text(encoding="utf-8")
    for must in ("trained on", "test split", "real speech", "language model"):
        assert must in card.lower(), f"the model card must say {must!r}"


def test_load_model_without_a_path_transcribes_unseen_sentences(tiny_corpus, one_thread):
    model = s2s_media.load_model(device="cpu")
    rows = [json.loads(line) for line in (tiny_corpus / "train.jsonl").read_text().splitlines()]
    hyps = [model.transcribe(str(tiny_corpus / r["audio"]))["text"] for r in rows]
    refs = [r["text"] for r in rows]
    score = wer(refs, hyps)
    # an untrained or mis-exported model scores ~100 %; the bundled one is far below (see its card)
    assert score.rate < 0.6, f"bundled model WER {score.rate:.1%} on the test sentences: {list(zip(refs, hyps))}"
