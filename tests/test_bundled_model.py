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
