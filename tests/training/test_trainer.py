"""Training end to end on a tiny model: resume exactness, bad utterances, DDP with gloo."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import subprocs
import torch

from s2s_media.config import load_config
from s2s_media.errors import UserError
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


CONF_V2 = CONF.with_name("conformer_v2.yaml")


def test_resume_is_exact_with_cached_features_and_half_rate_blocks(tiny_overrides, tmp_path):
    """The v2 recipe's pipeline: conv1d front, half-rate blocks, features from the cache, SpecAugment."""
    v2 = [o for o in tiny_overrides if not o.startswith("model.encoder_conf.n_layers")] + [
        "model.encoder_conf.n_layers=3", "model.encoder_conf.half_rate_blocks=[1,2]",
        f"data.feature_cache={tmp_path / 'feats'}", "train.threads=1"]
    straight = load_config(CONF_V2, v2 + [f"train.exp_dir={tmp_path / 'a'}"])
    assert straight.model.encoder_conf["subsampling"] == "conv1d" and straight.data.feature_cache
    run_training(straight)
    assert len(list((tmp_path / "feats").rglob("*.npy"))) == 12          # one per file (dev reuses 3 train files)
    first = load_config(CONF_V2, v2 + [f"train.exp_dir={tmp_path / 'b'}", "train.max_steps=3"])
    assert run_training(first).step == 3
    state = run_training(load_config(CONF_V2, v2 + [f"train.exp_dir={tmp_path / 'b'}"]))
    assert state.epoch == 2
    a, b = _weights(tmp_path / "a/last.pt"), _weights(tmp_path / "b/last.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    summary = json.loads((tmp_path / "b/summary.json").read_text())
    assert 0.0 <= summary["data_wait_share"] < 1.0


def test_max_audio_hours_stops_the_run(tiny_overrides, tmp_path):
    cfg = load_config(CONF, tiny_overrides + ["train.epochs=50", "train.max_audio_hours=0.01"])   # 36 s of audio
    state = run_training(cfg)
    assert 36.0 <= state.audio_seconds < 36.0 + 8.0 + 1e-6                  # stops within one batch (<= 8 s) past it
    assert state.epoch < 50


def test_sigterm_stops_cleanly_after_the_update_and_saves(tiny_overrides, tmp_path):
    """A stop signal mid-run: exit 0, last.pt holds the very last update (not the last periodic save)."""
    exp = tmp_path / "sig"
    args = [sys.executable, "-m", "s2s_media.cli.main", "train", str(CONF)]
    for o in tiny_overrides + [f"train.exp_dir={exp}", "train.epochs=500", "train.save_interval=1000",
                               "train.threads=1"]:
        args += ["--set", o]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        log = exp / "train_log.jsonl"
        deadline = time.time() + 180
        while time.time() < deadline and (not log.is_file() or len(log.read_text().splitlines()) < 4):
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-2000:]
    assert "stopping at step" in err and "on a signal" in err
    ck = load_checkpoint(exp / "last.pt")
    steps = ck["trainer"]["step"]
    assert steps >= 4 and ck["trainer"]["epoch"] < 500           # saved at the stop, not at save_interval
    assert json.loads((exp / "summary.json").read_text())["step"] == steps


def test_resume_survives_a_cut_off_log_line_and_a_broken_last_pt(tiny_overrides, tmp_path, caplog):
    """A crash can cut off train_log.jsonl's last line and (power loss) leave last.pt unreadable:
    resume skips the line and falls back to last.prev.pt, each with a warning, and still finishes
    to the end."""
    exp = tmp_path / "b"
    state = run_training(load_config(CONF, tiny_overrides + [f"train.exp_dir={exp}", "train.max_steps=3"]))
    assert state.step == 3 and (exp / "last.prev.pt").is_file()
    with open(exp / "train_log.jsonl", "a") as f:
        f.write('{"step": 4, "loss": 1.2')                   # the crash cut this line off
    (exp / "last.pt").write_bytes((exp / "last.pt").read_bytes()[:1000])
    with caplog.at_level("WARNING"):
        state = run_training(load_config(CONF, tiny_overrides + [f"train.exp_dir={exp}"]))
    assert state.epoch == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("train_log.jsonl" in w and "cut off" in w for w in warnings), warnings
    assert any("last.pt" in w and "last.prev.pt" in w for w in warnings), warnings
    log = [json.loads(x) for x in (exp / "train_log.jsonl").read_text().splitlines()]
    assert log and all("step" in r for r in log)
    assert load_checkpoint(exp / "last.pt")["trainer"]["epoch"] == 2


def test_unreadable_last_pt_without_a_fallback_says_what_to_do(tiny_overrides, tmp_path):
    exp = tmp_path / "b"
    exp.mkdir()
    (exp / "last.pt").write_bytes(b"PK\x03\x04 cut off")
    with pytest.raises(UserError, match=r"last\.pt.*no last\.prev\.pt to fall back to: move .* away"):
        run_training(load_config(CONF, tiny_overrides + [f"train.exp_dir={exp}"]))
