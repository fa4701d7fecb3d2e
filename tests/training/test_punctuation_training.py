"""Training the punctuation model: a training step learns, the recipe's run writes a loadable small
model and its held-out text, held-out transcripts stay out, and the CLI scores it."""
from __future__ import annotations

import json
import random

import pytest
import torch

from s2s_media.cli.main import main
from s2s_media.errors import ConfigError
from s2s_media.inference.punctuation import Punctuator
from s2s_media.models.punctuation import PunctuationModel, PunctuationModelConfig
from s2s_media.text.normalize import normalize_text
from s2s_media.text.punctuation import WordVocab
from s2s_media.training.punctuation import (PunctuationDataConfig, batches, cut_runs, load_punctuation_config,
                                            loss_of, read_corpus, to_example)

TEXT = [
    "Where are you going? I am going home, and then to bed.",
    "Is it raining? Yes, it is raining again!",
    "The cat sat on the mat. The dog ran in the park, happily.",
    "What time is it? It is late, Tom.",
    "Open the door, please. Thank you!",
    "Alice likes green apples. Bob likes red ones, not green.",
] * 8
HELD_OUT = "The secret sentence stays out of training"


@pytest.fixture
def text_file(tmp_path):
    lines = [f"{line} Paragraph number {i} ends here." for i, line in enumerate(TEXT)] + [HELD_OUT + "."]
    path = tmp_path / "text.txt"
    path.write_text("\n".join(lines) + "\n")
    manifest = tmp_path / "test.jsonl"
    manifest.write_text(json.dumps({"id": "t", "audio": "t.wav", "text": HELD_OUT, "duration": 1.0}) + "\n")
    return path, manifest


def _conf(tmp_path, text, manifest, **train) -> str:
    conf = tmp_path / "tiny.yaml"
    train = {"exp_dir": str(tmp_path / "exp"), "epochs": 2, "batch_words": 256, "lr": 0.01, "warmup_steps": 2,
             "max_minutes": 5, **train}
    conf.write_text(json.dumps({
        "model": {"dim": 16, "kernel": 3, "dilations": [1, 2], "dropout": 0.0},
        "data": {"sources": [str(text)], "exclude": [str(manifest)], "dev_percent": 20.0, "test_percent": 20.0,
                 "vocab_size": 200, "min_count": 1, "suffix_buckets": 32, "max_sentences": 3, "max_words": 40},
        "train": train}))
    return str(conf)


def test_a_training_step_lowers_the_loss(text_file, one_thread):
    splits, _ = read_corpus(PunctuationDataConfig(sources=[str(text_file[0])], dev_percent=1, test_percent=1))
    paragraphs = [p for s in splits.values() for p in s]
    vocab = WordVocab.build([w for p in paragraphs for s in p for w in s.words], 200, 1, suffix_buckets=32)
    runs = cut_runs(paragraphs, random.Random(0), 3, 40)
    examples = [to_example(r, vocab, 40) for r in runs]
    torch.manual_seed(0)
    model = PunctuationModel(PunctuationModelConfig(dim=16, dilations=[1, 2], dropout=0.0), len(vocab), 32)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    batch = next(batches(examples, 4096))
    assert batch[0].shape == batch[2].shape and (batch[2][batch[0] == 0] == -100).all()
    first = loss_of(model, batch).item()
    for _ in range(30):
        opt.zero_grad()
        loss = loss_of(model, batch)
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_a_batch_scores_as_its_sequences_alone(one_thread):
    """Padding is masked: a short sequence in a padded batch gets the logits it gets on its own."""
    torch.manual_seed(0)
    model = PunctuationModel(PunctuationModelConfig(dim=16, dilations=[1, 2, 4]), 50, 16).eval()
    ids = torch.tensor([[3, 4, 5, 6, 7, 8], [9, 10, 11, 0, 0, 0]])
    sufs = torch.tensor([[1, 2, 3, 4, 5, 6], [7, 8, 9, 0, 0, 0]])
    marks, cases = model(ids, sufs)
    alone_marks, alone_cases = model(ids[1:, :3], sufs[1:, :3])
    assert torch.allclose(marks[1, :3], alone_marks[0], atol=1e-5)
    assert torch.allclose(cases[1, :3], alone_cases[0], atol=1e-5)


def test_train_writes_a_small_loadable_model_without_the_held_out_text(text_file, tmp_path, one_thread, capsys):
    text, manifest = text_file
    assert main(["punctuation", "train", _conf(tmp_path, text, manifest)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    exp = tmp_path / "exp"
    ckpt = torch.load(exp / "punct.pt", map_location="cpu", weights_only=True)      # a plain dict
    assert ckpt["kind"] == "punctuation" and ckpt["meta"]["excluded"] == [str(manifest)]
    assert all(v.dtype == torch.float16 for v in ckpt["model"].values() if v.is_floating_point())
    assert summary["params"] == sum(v.numel() for v in ckpt["model"].values()) and summary["minutes"] < 5
    assert ckpt["meta"]["text"]["excluded_paragraphs"] == 1
    held = (exp / "dev.txt").read_text() + (exp / "test.txt").read_text()
    assert held.strip() and "secret" not in held
    punctuator = Punctuator.load(exp / "punct.pt")
    words = normalize_text("is it raining yes it is raining again").split()
    assert [w.lower().rstrip(".,?!") for w in punctuator.restore(words)] == words

    assert main(["punctuation", "evaluate", "--model", str(exp / "punct.pt"), str(exp / "test.txt")]) == 0
    out = capsys.readouterr().out
    assert "| `.` |" in out and "casing accuracy" in out

    tuned = tmp_path / "tuned"                      # the recipe's fine-tuning stage: on from a model file
    assert main(["punctuation", "train", _conf(tmp_path, text, manifest, epochs=1, exp_dir=str(tuned),
                                               init_from=str(exp / "punct.pt"), mark_weights=[1, 3, 1.5, 3, 3])]) == 0
    assert torch.load(tuned / "punct.pt", weights_only=True)["meta"]["init_from"] == str(exp / "punct.pt")
    assert Punctuator.load(tuned / "punct.pt").vocab.itos == punctuator.vocab.itos


def test_config_errors_name_the_field(text_file, tmp_path):
    text, manifest = text_file
    with pytest.raises(ConfigError, match="train.epochs"):
        load_punctuation_config(_conf(tmp_path, text, manifest, epochs=0))
    with pytest.raises(ConfigError, match="mark_weights"):
        load_punctuation_config(_conf(tmp_path, text, manifest, mark_weights=[1, 2]))
    with pytest.raises(ConfigError, match="train.nope: unknown key"):
        load_punctuation_config(_conf(tmp_path, text, manifest), ["train.nope=1"])
