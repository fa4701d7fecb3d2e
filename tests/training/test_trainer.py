"""Training end to end on a tiny model: resume exactness, bad utterances, DDP with gloo."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

import subprocs
import torch

from s2s_media.config import load_config
from s2s_media.training.checkpoint import load_checkpoint
from s2s_media.training.run import run_training

CONF = Path(__file__).resolve().parents[2] / "recipes/synthetic_speech/conf/conformer.yaml"


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
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
            "--master_port", str(subprocs.free_port()), "-m", "s2s_media.cli.main", "train", str(CONF)]
    for o in tiny_overrides + [f"train.exp_dir={exp}", "train.device=cpu"]:
        args += ["--set", o]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocs.run(args, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["ranks_in_sync"] is True
    assert summary["step"] > 0


@pytest.mark.parametrize("encoder,decoder,extra", [
    ("transformer", "lstm", ["model.decoder_conf={hidden: 32, embed_dim: 16, attention_dim: 16}"]),
    ("pyramidal_lstm", "transformer", ["model.encoder_conf={hidden: 16, n_layers: 3, pyramid_layers: 2, d_model: 32}"]),
    ("conformer", "transformer", ["optim.accum_grad=2", "optim.scheduler=cosine", "tokenizer.kind=sentencepiece",
                                  "tokenizer.vocab_size=40"]),
])
def test_other_components_train(tiny_overrides, tmp_path, encoder, decoder, extra):
    """Every registered encoder and decoder trains through the same loop; accumulation and cosine too."""
    base = [o for o in tiny_overrides if not o.startswith(("model.decoder_conf", "tokenizer.kind"))]
    if encoder != "conformer":
        base = [o for o in base if not o.startswith("model.encoder_conf")]
        if encoder == "transformer":
            base += ["model.encoder_conf={d_model: 32, n_heads: 2, n_layers: 2, ffn_dim: 64}"]
    if decoder == "transformer" and not any(e.startswith("model.decoder_conf") for e in extra):
        base += ["model.decoder_conf={n_layers: 1, n_heads: 2, ffn_dim: 64}"]
    overrides = base + [f"model.encoder={encoder}", f"model.decoder={decoder}", "train.epochs=1"] + extra
    if not any(e.startswith("tokenizer.kind") for e in extra):
        overrides.append("tokenizer.kind=char")
    cfg = load_config(CONF, overrides)
    state = run_training(cfg)
    assert state.step > 0
    ck = load_checkpoint(Path(cfg.train.exp_dir) / "last.pt")
    assert ck["config"]["model"]["encoder"] == encoder and ck["config"]["model"]["decoder"] == decoder
    log = [json.loads(x) for x in (Path(cfg.train.exp_dir) / "train_log.jsonl").read_text().splitlines()]
    assert all(r["loss"] == r["loss"] for r in log if "loss" in r)  # no NaN
