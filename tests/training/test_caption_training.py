"""The one trainer on captioning: end to end, exact resume, scheduled sampling, SCST as a second
stage, word-tokenizer min_freq, and a multimodal model that transcribes and captions from one checkpoint."""
from __future__ import annotations

import pytest

import json
from pathlib import Path

import torch

from caption_fixtures import RECIPES, SHAPES_CONF, TINY_IMAGE_MODEL
from fixtures_make import TINY_MODEL
from s2s_media.config import load_config
from s2s_media.data.captions import caption_eval_loader, read_caption_manifest
from s2s_media.data.dataset import eval_loader
from s2s_media.data.manifest import read_manifest
from s2s_media.decoding.beam_search import greedy_search
from s2s_media.inference.pipeline import Searcher
from s2s_media.inference.checkpoint import load_model_file
from s2s_media.training.checkpoint import load_checkpoint
from s2s_media.training.run import run_training, train_tokenizer, training_texts

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models run fastest on one thread

MULTIMODAL_CONF = RECIPES / "synthetic_multimodal" / "conf" / "multimodal.yaml"


def log_of(exp: Path) -> list[dict]:
    return [json.loads(x) for x in (exp / "train_log.jsonl").read_text().splitlines()]


def test_captioning_trains_validates_and_keeps_best(caption_overrides):
    cfg = load_config(SHAPES_CONF, caption_overrides + ["train.epochs=4", "optim.lr=0.003"])
    state = run_training(cfg)
    exp = Path(cfg.train.exp_dir)
    assert state.epoch == 4 and state.step == 16                     # 16 images / 4 per batch, 4 epochs
    for name in ("last.pt", "epoch_4.pt", "tokenizer.pt", "best.json", "summary.json", "curves.png"):
        assert (exp / name).is_file(), name
    assert not (exp / "cmvn.json").exists()
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["images"] == 64 and summary["images_per_s"] > 0 and summary["skipped"] == 0
    log = log_of(exp)
    dev = [r for r in log if "dev_cider_d" in r]
    assert len(dev) == 4 and all(0 <= r["dev_bleu4"] <= 1 for r in dev)
    train = [r["loss"] for r in log if "loss" in r]
    assert min(train[-4:]) < train[0]                                  # it learns
    best = json.loads((exp / "best.json").read_text())
    assert best[0][0] == -max(r["dev_cider_d"] for r in dev)          # kept by CIDEr-D
    ck = load_checkpoint(exp / "epoch_4.pt")
    assert ck["config"]["model"]["modalities"] == ["image"] and ck["tokenizer"]["tasks"] == ["caption"]
    loaded = load_model_file(exp / "epoch_4.pt")
    loader = caption_eval_loader(read_caption_manifest(cfg.data.caption_dev), loaded.tokenizer, cfg.data.image, 4)
    batch = next(iter(loader))
    memory, mask = loaded.model.encode(batch["pixels"], modality="image")
    hyps = greedy_search(loaded.model.decoder, memory, mask, loaded.tokenizer.prefix("caption"), max_len=12)
    assert len(hyps) == 4


def test_caption_resume_matches_an_unbroken_run(caption_overrides, tmp_path):
    base = caption_overrides + ["data.image.hflip=0.5", "data.image.crop_scale=[0.7, 1.0]"]
    run_training(load_config(SHAPES_CONF, base + [f"train.exp_dir={tmp_path / 'a'}"]))
    state = run_training(load_config(SHAPES_CONF, base + [f"train.exp_dir={tmp_path / 'b'}", "train.max_steps=3"]))
    assert state.step == 3
    run_training(load_config(SHAPES_CONF, base + [f"train.exp_dir={tmp_path / 'b'}"]))
    a, b = load_checkpoint(tmp_path / "a/last.pt")["model"], load_checkpoint(tmp_path / "b/last.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


def test_scheduled_sampling_then_self_critical_stage(caption_overrides, tmp_path):
    xe = load_config(SHAPES_CONF, caption_overrides + ["model.decoder=lstm", "model.attention_penalty=0.5",
                                                       "model.decoder_conf={hidden: 32, embed_dim: 16, attention_dim: 16}",
                                                       "train.scheduled_sampling={max_prob: 0.5, ramp_steps: 2}"])
    run_training(xe)
    log = log_of(Path(xe.train.exp_dir))
    assert any(r.get("ss_prob") == 0.5 for r in log) and any("loss_attn_penalty" in r for r in log)
    init = Path(xe.train.exp_dir) / "epoch_2.pt"
    scst = load_config(SHAPES_CONF, caption_overrides + [
        "model.decoder=lstm", "model.decoder_conf={hidden: 32, embed_dim: 16, attention_dim: 16}",
        f"train.exp_dir={tmp_path / 'scst'}", f"train.init_from={init}", "train.epochs=1",
        f"tokenizer.path={Path(xe.train.exp_dir) / 'tokenizer.pt'}", "train.scst={enabled: true, samples: 3}"])
    state = run_training(scst)
    assert state.step == 4
    rewards = [r for r in log_of(tmp_path / "scst") if "reward" in r]
    assert rewards and all(r["reward"] >= 0 and "reward_baseline" in r for r in rewards)
    before, after = load_checkpoint(init)["model"], load_checkpoint(tmp_path / "scst/last.pt")["model"]
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())


def test_word_tokenizer_min_freq_and_task_tokens(caption_overrides):
    cfg = load_config(SHAPES_CONF, caption_overrides + ["tokenizer.min_freq=1000"])
    tok = train_tokenizer(cfg, training_texts(cfg))
    assert tok.tasks == ["caption"] and tok.vocab_size == 5                 # specials + <caption> only
    tok = train_tokenizer(cfg, ["a b b", "b c"])
    assert tok.vocab_size == 5
    cfg = load_config(SHAPES_CONF, caption_overrides + ["tokenizer.min_freq=2"])
    tok = train_tokenizer(cfg, ["a b b", "b c"])
    assert tok.vocab_size == 6 and [tok.itos[i] for i in tok.encode("b a")] == ["b", "<unk>"]


def test_one_multimodal_checkpoint_transcribes_and_captions(tiny_corpus, shapes, tmp_path):
    overrides = TINY_MODEL + TINY_IMAGE_MODEL + [
        "model.encoder_conf.subsampling_channels=8",
        f"data.train={tiny_corpus / 'train.jsonl'}", f"data.dev={tiny_corpus / 'dev.jsonl'}",
        f"data.caption_train={shapes / 'train.jsonl'}", f"data.caption_dev={shapes / 'val.jsonl'}",
        f"train.exp_dir={tmp_path / 'mm'}", "train.epochs=1"]
    cfg = load_config(MULTIMODAL_CONF, overrides)
    state = run_training(cfg)
    log = log_of(tmp_path / "mm")
    assert {"loss_asr", "loss_caption"} <= {k for r in log for k in r}
    assert any("dev_wer" in r and "dev_cider_d" in r and "dev_loss_asr" in r for r in log)
    assert state.images == 16 and state.audio_seconds > 0
    loaded = load_model_file(tmp_path / "mm" / "last.pt")
    assert set(loaded.model.encoders) == {"audio", "image"} and loaded.tokenizer.tasks == ["asr", "caption"]
    audio = eval_loader(read_manifest(tiny_corpus / "dev.jsonl"), loaded.tokenizer, cfg.model.n_mels, 60)
    transcribed = 0
    for batch in audio:
        results = Searcher(loaded, cfg.decode, methods=["ctc_greedy", "attention"]).decode_batch(batch["feats"],
                                                                                                 batch["lengths"])
        assert len(results["attention"]) == len(results["ctc_greedy"]) == len(batch["ids"])
        transcribed += len(batch["ids"])
    assert transcribed == 3
    images = caption_eval_loader(read_caption_manifest(shapes / "val.jsonl"), loaded.tokenizer, cfg.data.image, 4)
    pixels = next(iter(images))["pixels"]
    memory, mask = loaded.model.encode(pixels, modality="image")
    captions = greedy_search(loaded.model.decoder, memory, mask, loaded.tokenizer.prefix("caption"), max_len=12)
    assert len(captions) == 4
