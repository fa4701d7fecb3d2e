"""Shared fixtures: a tiny real speech corpus (espeak-ng) and tiny model configs."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from s2s_media.frontend.audio import SAMPLE_RATE, load_audio
from fixtures_make import TINY_MODEL

SENTENCES = [
    "the cat sat on the mat", "a dog ran in the park", "hello world how are you",
    "open the door please", "the quick brown fox", "jumps over the lazy dog",
    "good morning to you", "time flies like an arrow", "we like green apples",
    "she sells sea shells", "the sun is bright today", "read me a short story",
]


def _speak(text: str, voice: str, path: Path) -> float:
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True)
    wav = load_audio(raw)
    raw.unlink()
    sf.write(path, wav, SAMPLE_RATE)
    return len(wav) / SAMPLE_RATE


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """12 train + 3 dev utterances spoken by espeak-ng; manifests ``train.jsonl`` and ``dev.jsonl``."""
    root = tmp_path_factory.mktemp("tiny_corpus")
    (root / "wav").mkdir()
    rows = []
    for i, text in enumerate(SENTENCES):
        voice = ["en-us", "en-gb+f3"][i % 2]
        dur = _speak(text, voice, root / "wav" / f"u{i:02d}.wav")
        rows.append({"id": f"u{i:02d}", "audio": f"wav/u{i:02d}.wav", "text": text, "duration": dur,
                     "speaker": voice})
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    return root




@pytest.fixture
def tiny_overrides(tiny_corpus, tmp_path) -> list[str]:
    """``--set`` overrides for a seconds-long training run on :func:`tiny_corpus`."""
    return TINY_MODEL + [f"data.train={tiny_corpus / 'train.jsonl'}", f"data.dev={tiny_corpus / 'dev.jsonl'}",
                         f"train.exp_dir={tmp_path / 'exp'}", "train.epochs=2"]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one intra-op thread; restores the setting afterwards."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_asr_ckpt(tiny_corpus, tmp_path_factory) -> Path:
    """A tiny char Conformer trained for a few steps on :func:`tiny_corpus`, once per session."""
    from asr_fixtures import train_tiny_asr
    return train_tiny_asr(tmp_path_factory, tiny_corpus)


@pytest.fixture(scope="session")
def shapes(tmp_path_factory) -> Path:
    """A tiny synthetic shapes corpus: 16 train, 4 val, 8 test images of 32 pixels."""
    from s2s_media.data.synthetic_shapes import generate_shapes
    out = tmp_path_factory.mktemp("shapes")
    generate_shapes(out, train_images=16, val_images=4, test_images=8, seed=1, size=32, workers=1)
    return out


@pytest.fixture
def caption_overrides(shapes, tmp_path) -> list[str]:
    """``--set`` overrides for a seconds-long captioning run on :func:`shapes`."""
    from caption_fixtures import TINY_IMAGE_MODEL
    return TINY_IMAGE_MODEL + [f"data.caption_train={shapes / 'train.jsonl'}",
                               f"data.caption_dev={shapes / 'val.jsonl'}", f"train.exp_dir={tmp_path / 'exp'}",
                               "train.epochs=2"]


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster of 2 CPUs, started once for the tests that need one and shut down after them."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()
