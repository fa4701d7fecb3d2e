"""Hotwords and alternatives with the bundled model on a rare word spoken by a voice it never heard:
the library (Transcriber), ``transcribe`` and ``evaluate``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import s2s_media
from s2s_media.cli.main import main
from s2s_media.data.synthetic_speech import Prosody, make_voice
from s2s_media.decoding.context import Hotword
from s2s_media.errors import UserError
from s2s_media.frontend.audio import SAMPLE_RATE, resample

SENTENCE = "we drove to terraform after lunch"
# a voice family held out of the bundled model's training (its test split's), as in scripts/bench_hotwords.py
VOICE, PROSODY = "espeak:en-gb-x-rp+robert", Prosody(0.979, -0.1)
OTHERS = ["kubernetes", "grafana", "okonkwo", "siobhan", "zanzibar", "rasputin", "anaconda"]


@pytest.fixture(scope="module")
def wav_path(tmp_path_factory) -> Path:
    wav, sr = make_voice(VOICE).synthesize(SENTENCE, PROSODY)
    wav = resample(wav.astype(np.float32), sr)
    pad = np.zeros(int(0.15 * SAMPLE_RATE), np.float32)
    path = tmp_path_factory.mktemp("hot") / "terraform.wav"
    sf.write(path, np.concatenate([pad, 0.7 * wav / np.abs(wav).max(), pad]), SAMPLE_RATE)
    return path


@pytest.fixture(scope="module")
def model():
    return s2s_media.load_model(device="cpu")


def test_a_hotword_is_recognised_only_when_given(model, wav_path):
    plain = model.transcribe(wav_path, punctuation=False)["text"]
    assert "terraform" not in plain.split()
    tr = model.transcriber(hotwords=[("Terraform", 4.0), *OTHERS, "你好"], punctuation=False, workers=0)
    assert tr.warnings == ["hotword '你好' skipped: characters not in the model's vocabulary: "
                           "'你' (CJK UNIFIED IDEOGRAPH-4F60), '好' (CJK UNIFIED IDEOGRAPH-597D)"]
    biased = tr.transcribe_array(sf.read(wav_path, dtype="float32")[0])["text"]
    assert "terraform" in biased.split()
    assert not set(OTHERS) & set(biased.split())          # the other hotwords are not inserted
    # the attention decoder alone cannot be biased: said so, not ignored
    with pytest.raises(UserError, match="--decoding attention: hotwords and phrase lists work in the CTC"):
        model.transcriber(hotwords=[Hotword("terraform")], decoding="attention")


@pytest.mark.parametrize("decoding", ["rescoring", "ctc_prefix_beam", "attention"])
def test_alternatives_are_ranked_with_confidences(model, wav_path, decoding):
    rec = model.transcribe(wav_path, alternatives=3, decoding=decoding)
    alts = rec["alternatives"]
    assert len(alts) == 3 and alts[0]["text"] == rec["text"]
    assert len({a["text"] for a in alts}) == 3
    confs = [a["confidence"] for a in alts]
    assert all(0.0 <= c <= 1.0 for c in confs) and sum(confs) <= 1.0 + 1e-3
    if decoding != "rescoring":        # rescoring re-ranks: its confidences follow its own scores, also sorted
        assert confs == sorted(confs, reverse=True)
    assert rec["segments"][0]["alternatives"] == alts     # one segment: the record's list is the segment's
    assert "alternatives" not in model.transcribe(wav_path)


def test_transcribe_and_evaluate_commands(wav_path, tmp_path, capsys):
    hot = tmp_path / "hot.txt"
    hot.write_text("# names\n" + "\n".join(OTHERS) + "\nStraße\n")
    out = tmp_path / "out.jsonl"
    code = main(["transcribe", str(wav_path), "--hotwords", str(hot), "--hotword", "Terraform:4", "--alternatives",
                 "2", "--no-punctuation", "--out", str(out)])
    assert code == 0
    rec = json.loads(out.read_text())
    assert "terraform" in rec["text"].split() and len(rec["alternatives"]) == 2
    err = capsys.readouterr().err
    assert "warning: hotword 'Straße' skipped: characters not in the model's vocabulary: " \
           "'ß' (LATIN SMALL LETTER SHARP S)" in err
    # bad input: one line naming the file or the limit, exit 2
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    assert main(["transcribe", str(wav_path), "--hotwords", str(empty)]) == 2
    assert "--hotwords " + str(empty) + ": the file lists no phrase" in capsys.readouterr().err
    assert main(["transcribe", str(wav_path), "--hotwords", str(hot), "--max-hotwords", "3"]) == 2
    assert "hotwords: 8 phrases, over the limit of 3" in capsys.readouterr().err
    # evaluate reports the recall of the hotwords in the references
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "t", "audio": str(wav_path), "text": SENTENCE,
                                    "duration": sf.info(wav_path).duration}) + "\n")
    code = main(["evaluate", "--manifest", str(manifest), "--decoding", "rescoring", "--hotword", "terraform:4",
                 "--out", str(tmp_path / "ev")])
    printed = capsys.readouterr().out
    assert code == 0 and "hotword recall 100.00% (1/1 in the references)" in printed
    scores = json.loads((tmp_path / "ev/scores.json").read_text())
    assert scores["hotwords"]["rescoring"]["hits"] == 1
