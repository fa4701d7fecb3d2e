"""scripts/bench_transcribe.py's sets: the whole manifest, or its natural-voice part (fair to pocketsphinx)."""
from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]
SPEAKERS = ["espeak:en-us", "piper:joe", "flite:kal", "hibari:heart+vtl0.89", "festival:kdl"]


@pytest.fixture
def manifest(tmp_path) -> Path:
    rows = []
    for i, speaker in enumerate(SPEAKERS):
        sf.write(tmp_path / f"u{i}.wav", np.zeros(1600, np.float32), 16000)
        rows.append({"id": f"u{i}", "audio": f"u{i}.wav", "text": f"words {i}", "duration": 0.1, "speaker": speaker})
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_natural_keeps_only_the_neural_voices(manifest):
    load_set = runpy.run_path(str(ROOT / "scripts/bench_transcribe.py"))["load_set"]
    paths, refs = load_set(str(manifest), 0)
    assert refs == [f"words {i}" for i in range(len(SPEAKERS))]
    paths, refs = load_set(str(manifest), 0, natural=True)
    assert refs == ["words 1", "words 3"] and [Path(p).name for p in paths] == ["u1.wav", "u3.wav"]
    assert load_set(str(manifest), 1, natural=True)[1] == ["words 1"]


def test_a_manifest_without_natural_voices_is_a_clear_error(manifest, tmp_path):
    load_set = runpy.run_path(str(ROOT / "scripts/bench_transcribe.py"))["load_set"]
    robotic = tmp_path / "robotic.jsonl"
    robotic.write_text(manifest.read_text().splitlines()[0] + "\n")
    with pytest.raises(SystemExit, match="no entries spoken by a natural"):
        load_set(str(robotic), 0, natural=True)
