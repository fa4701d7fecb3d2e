"""Training end to end on a tiny model: resume exactness, bad utterances, DDP with gloo."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from s2s_media.config import load_config
from s2s_media.training.checkpoint import load_checkpoint
from s2s_media.training.run import run_training

CONF = Path(__file__).resolve().parents[2] / "recipes/synthetic_speech/conf/conformer.yaml"
# no augmentation randomness needed to test exactness, but keep it on: it must be reproducible too
AUG_ON = []


def _weights(path: Path) -> dict:
    return load_checkpoint(path)["model"]


def test_train_writes_checkpoints_logs_and_curves(tiny_overrides, tmp_path):
    cfg = load_config(CONF, tiny_overrides)
    state = run_training(cfg)
    exp = Path(cfg.train.exp_dir)
    assert state.epoch == 2 and state.step > 0
    for name in ("last.pt", "epoch_1.pt", "epoch_2.pt", "tokenizer.pt", "cmvn.json", "best.json",
                 "summary.json", "curves.png", "train_log.jsonl"):
        assert (exp / name).is_file(), name
    assert list((exp / "tensorboard").iterdir())
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["skipped"] == 0 and summary["ranks_in_sync"] and summary["audio_s_per_s"] > 0
    ck = load_checkpoint(exp / "epoch_2.pt")
    assert {"model", "config", "tokenizer", "cmvn", "version"} <= set(ck)
    assert len(ck["cmvn"]["mean"]) == 80
    log = [json.loads(x) for x in (exp / "train_log.jsonl").read_text().splitlines()]
    assert any("dev_wer" in r for r in log) and any("loss_ctc" in r for r in log)


def test_resume_after_stop_matches_uninterrupted_run(tiny_overrides, tmp_path):
    straight = load_config(CONF, tiny_overrides + [f"train.exp_dir={tmp_path / 'a'}"])
    run_training(straight)
    # stop mid-epoch 1 (the first epoch has several steps), then resume to the end
    first = load_config(CONF, tiny_overrides + [f"train.exp_dir={tmp_path / 'b'}", "train.max_steps=3"])
    state = run_training(first)
    assert state.step == 3 and state.epoch == 0 and state.consumed == 3
    resumed = load_config(CONF, tiny_overrides + [f"train.exp_dir={tmp_path / 'b'}"])
    state = run_training(resumed)
    assert state.epoch == 2
    a, b = _weights(tmp_path / "a/last.pt"), _weights(tmp_path / "b/last.pt")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


def test_bad_utterances_are_skipped_and_counted(tiny_corpus, tiny_overrides, tmp_path, caplog):
    rows = [json.loads(x) for x in (tiny_corpus / "train.jsonl").read_text().splitlines()]
    for r in rows:
        r["audio"] = str(tiny_corpus / r["audio"])
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF....WAVEfmt garbage" * 10)
    rows += [{"id": "missing", "audio": str(tmp_path / "nope.wav"), "text": "a b", "duration": 1.0},
             {"id": "empty", "audio": str(tmp_path / "empty.wav"), "text": "a b", "duration": 1.0},
             {"id": "corrupt", "audio": str(tmp_path / "corrupt.wav"), "text": "a b", "duration": 1.0},
             {"id": "notext", "audio": rows[0]["audio"], "text": "?!", "duration": rows[0]["duration"]}]
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(CONF, tiny_overrides + [f"data.train={manifest}", "train.epochs=1"])
    state = run_training(cfg)
    assert state.skipped == 4
    text = caplog.text
    for uid in ("missing", "empty", "corrupt", "notext"):
        assert f"skipping utterance {uid}" in text


def test_ddp_two_cpu_processes_train_in_sync(tiny_overrides, tmp_path):
    exp = tmp_path / "ddp"
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
            "-m", "s2s_media.cli.main", "train", str(CONF)]
    for o in tiny_overrides + [f"train.exp_dir={exp}", "train.device=cpu"]:
        args += ["--set", o]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["ranks_in_sync"] is True
    assert summary["step"] > 0
