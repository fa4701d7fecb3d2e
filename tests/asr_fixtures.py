"""A tiny trained speech model, long recordings and a fake search, shared by the transcription, CLI, LM and punctuation tests
(the model is trained once per session: the ``tiny_asr_ckpt`` fixture of ``tests/conftest.py``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from fixtures_make import TINY_MODEL
from s2s_media.config import load_config
from s2s_media.decoding.types import Decoded
from s2s_media.frontend.audio import SAMPLE_RATE as SR, load_audio
from s2s_media.training.run import run_training

CONF = Path(__file__).resolve().parents[1] / "recipes/synthetic_speech/conf/conformer.yaml"


def train_tiny_asr(tmp_path_factory, corpus: Path) -> Path:
    """A tiny char Conformer trained for a few steps on the tiny corpus, once per test session."""
    exp = tmp_path_factory.getbasetemp() / "tiny_asr"
    if not (exp / "last.pt").is_file():
        run_training(load_config(CONF, TINY_MODEL + [
            f"data.train={corpus / 'train.jsonl'}", f"data.dev={corpus / 'dev.jsonl'}", f"train.exp_dir={exp}",
            "train.epochs=1", "train.max_steps=4"]))
    return exp / "last.pt"


def long_recording(corpus: Path, path: Path, n: int = 5, gap_s: float = 1.5) -> list[float]:
    """Write ``n`` corpus utterances separated by ``gap_s`` of silence; returns where each starts."""
    parts, starts, pos = [], [], 0
    gap = np.zeros(int(gap_s * SR), np.float32)
    for i in range(n):
        wav = load_audio(corpus / f"wav/u{i:02d}.wav")
        parts += [gap, wav]
        starts.append((pos + len(gap)) / SR)
        pos += len(gap) + len(wav)
    sf.write(path, np.concatenate(parts + [gap]), SR)
    return starts


def fake_search(text: str, tokenizer):
    """A search that "hears" ``text`` in every segment: tokens at frames 2, 4, 6, ... with known posteriors."""
    ids = tokenizer.encode(text)

    def search(model, memory, mask, prefix, cfg, lm=None, **options):
        return [Decoded(list(ids), 0.0, [2 + 2 * k for k in range(len(ids))], [0.9 - 0.01 * k for k in range(len(ids))])
                for _ in range(memory.size(0))]
    return search
