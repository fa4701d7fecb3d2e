"""Streaming tests: tiny random models (no training) on one thread, and the espeak-ng tiny corpus."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fixtures_make import TINY_MODEL
from s2s_media.frontend.audio import load_audio
from s2s_media.frontend.logmel import compute_cmvn
from s2s_media.config import load_config
from s2s_media.inference.checkpoint import LoadedModel
from s2s_media.models.seq2seq import Seq2SeqModel
from s2s_media.text.tokenizer import BLANK, CharTokenizer


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def tiny_model(seed: int = 0, encoder: str = "conformer", cmvn_wavs=(), **encoder_conf) -> LoadedModel:
    """An untrained tiny model whose CTC head is sharpened: confident posteriors, blank on about
    half the frames, so the search has clear winners (random weights alone give near-uniform
    posteriors, where float rounding could flip beam decisions) and the text is not empty."""
    overrides = TINY_MODEL + [f"model.encoder={encoder}", "model.encoder_conf.dropout=0.0",
                              "model.decoder_conf.dropout=0.0"]
    if encoder == "transformer":
        overrides.remove("model.encoder_conf.kernel_size=5")
    elif encoder == "pyramidal_lstm":
        overrides = [o for o in overrides if not o.startswith("model.encoder_conf.")] + [
            "model.encoder_conf.d_model=32", "model.encoder_conf.hidden=16"]
    overrides += [f"model.encoder_conf.{k}={v}" for k, v in encoder_conf.items()]
    cfg = load_config(None, overrides)
    tokenizer = CharTokenizer.train(["abcdefghijklmnopqrstuvwxyz '"])
    torch.manual_seed(seed)
    model = Seq2SeqModel(cfg.model, tokenizer.vocab_size)
    if cmvn_wavs:
        model.encoders["audio"].cmvn.set_stats(*compute_cmvn(cmvn_wavs))
    with torch.no_grad():
        model.ctc.proj.weight.mul_(6.0)
        model.ctc.proj.bias.zero_()
        model.ctc.proj.bias[BLANK] = 3.0
        model.ctc.proj.bias[tokenizer.stoi["▁"]] = 2.0    # some word boundaries
    return LoadedModel(model.eval(), tokenizer, cfg, {})


@pytest.fixture(scope="session")
def make_model():
    """:func:`tiny_model` itself, for tests that build their own variants."""
    return tiny_model


@pytest.fixture(scope="session")
def corpus_wavs(tiny_corpus) -> list[np.ndarray]:
    return [load_audio(tiny_corpus / f"wav/u{i:02d}.wav") for i in range(12)]


@pytest.fixture(scope="session")
def loaded(corpus_wavs) -> LoadedModel:
    return tiny_model(cmvn_wavs=corpus_wavs[:4])
