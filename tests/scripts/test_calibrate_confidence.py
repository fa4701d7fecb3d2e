"""Word-confidence calibration: Platt scaling fitted by scripts/calibrate_confidence.py, stored beside the
model, found by the loader and applied to every word's confidence."""
from __future__ import annotations

import runpy
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import s2s_media
from s2s_media.decoding.timing import ConfidenceCalibration, tokens_to_words
from s2s_media.decoding.types import Decoded
from s2s_media.errors import UserError
from s2s_media.text.tokenizer import CharTokenizer

ROOT = Path(__file__).resolve().parents[2]


def _script() -> SimpleNamespace:
    sys.path.insert(0, str(ROOT / "scripts"))        # it imports bench_hotwords beside it
    return SimpleNamespace(**runpy.run_path(str(ROOT / "scripts/calibrate_confidence.py")))


def test_platt_scaling_removes_a_known_miscalibration():
    cc = _script()
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.02, 0.98, 20000)
    truth = 1 / (1 + np.exp(-(0.5 * np.log(conf / (1 - conf)) - 1.0)))   # overconfident, by a known Platt map
    right = (rng.uniform(size=conf.size) < truth).astype(float)
    a, b = cc.fit_platt(conf, right)
    assert a == pytest.approx(0.5, abs=0.05) and b == pytest.approx(-1.0, abs=0.05)
    cal = ConfidenceCalibration(a, b)
    after = np.array([cal(c) for c in conf])
    assert cc.ece(conf, right) > 0.15 and cc.ece(after, right) < 0.02
    assert cc.ece(np.array([0.95, 0.95]), np.array([1.0, 0.0])) == pytest.approx(0.45)


def test_calibration_is_stored_beside_the_model_and_applied(tiny_asr_ckpt, tmp_path):
    ckpt = tmp_path / "m.pt"
    shutil.copy(tiny_asr_ckpt, ckpt)
    assert s2s_media.load_model(ckpt).loaded.calibration is None
    cal = ConfidenceCalibration(0.5, -1.0, "a test")
    written = cal.write(ckpt, {"measured": {"test": {"ece_raw": 0.3}}})
    assert written == tmp_path / "m.calibration.json"
    assert s2s_media.load_model(ckpt).loaded.calibration == cal
    # a word's confidence is its least sure token's posterior, mapped through the calibration
    tok = CharTokenizer.train(["ab"])
    a, b = tok.encode("ab")
    d = Decoded([a, b], 0.0, [0, 2], [0.9, 0.6])
    raw = tokens_to_words(tok, d, 0.04, 0.0, 1.0)[0]["confidence"]
    calibrated = tokens_to_words(tok, d, 0.04, 0.0, 1.0, cal)[0]["confidence"]
    assert raw == 0.6 and calibrated == pytest.approx(cal(0.6), abs=1e-4) and calibrated < raw
    written.write_text("{}")
    with pytest.raises(UserError, match="m.calibration.json: not a word-confidence calibration"):
        s2s_media.load_model(ckpt)


def test_manifest_rows_are_the_first_utterances_with_normalised_text(tmp_path):
    cc = _script()
    (tmp_path / "dev.jsonl").write_text("".join(
        f'{{"id": "d{i}", "audio": "d{i}.wav", "text": "Hello, World {i}!", "duration": 1.0}}\n' for i in range(5)))
    rows = cc.manifest_rows(str(tmp_path / "dev.jsonl"), 3)
    assert [r["id"] for r in rows] == ["d0", "d1", "d2"]
    assert rows[1]["text"] == "hello world one" and rows[1]["audio"] == str(tmp_path / "d1.wav")
