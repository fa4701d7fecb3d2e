"""Tiny synthetic audio for the data-format tests: sine tones in noise, written as WAV files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight"]


def tone(seconds: float, freq: float, rng: np.random.Generator, sr: int = 16000) -> np.ndarray:
    """A sine at ``freq`` Hz plus a little white noise: ``(round(seconds * sr),)`` float32."""
    t = np.arange(int(round(seconds * sr))) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def write_corpus(root: Path, n: int, seed: int = 0, low: float = 0.5, high: float = 1.5) -> list[dict]:
    """``n`` WAV files under ``root/wav`` and their manifest rows (id, audio, text, duration, speaker);
    also writes ``root/train.jsonl``."""
    rng = np.random.default_rng(seed)
    (root / "wav").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        seconds = round(float(rng.uniform(low, high)), 2)
        path = root / "wav" / f"utt{i:03d}.wav"
        sf.write(path, tone(seconds, float(rng.uniform(200, 900)), rng), 16000)
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 4))))
        rows.append({"id": f"utt{i:03d}", "audio": str(path), "text": text, "duration": seconds,
                     "speaker": f"spk{i % 3}"})
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows
