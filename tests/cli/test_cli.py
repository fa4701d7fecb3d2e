"""The ``s2s-media`` command in-process: help, tokenizer -> train -> average -> evaluate, and every
user error ending as one ``error:`` line with exit code 2 (never a traceback)."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
import torch

import subprocs
from fixtures_make import TINY_MODEL
from s2s_media.cli.main import SUBCOMMANDS, build_parser, main
from s2s_media.decoding.search import SEARCHES
from s2s_media.training.checkpoint import load_checkpoint

CONF = Path(__file__).resolve().parents[2] / "recipes/synthetic_speech/conf/conformer.yaml"


def _sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def _error_line(capsys) -> str:
    """The single stderr line of a failed command."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def exp(tiny_corpus, tmp_path_factory) -> dict:
    """Run ``tokenizer`` (on the dev transcripts only) then ``train`` once for the whole module."""
    root = tmp_path_factory.mktemp("cli")
    overrides = TINY_MODEL + [f"data.train={tiny_corpus / 'train.jsonl'}", f"data.dev={tiny_corpus / 'dev.jsonl'}",
                              f"train.exp_dir={root / 'exp'}", "train.epochs=2",
                              "train.threads=1", "train.save_interval=1000"]  # fewer fsyncs, no core fights
    threads = torch.get_num_threads()
    # a tokenizer fitted on 3 sentences has fewer units than one fitted on all 12: that tells them apart
    assert main(["tokenizer", str(CONF), *_sets(overrides + [f"data.train={tiny_corpus / 'dev.jsonl'}"])]) == 0
    tokenizer = load_checkpoint(root / "exp/tokenizer.pt")["tokenizer"]
    try:
        assert main(["train", str(CONF), *_sets(overrides)]) == 0
    finally:
        torch.set_num_threads(threads)  # train.threads is process-wide
    return {"root": root, "dir": root / "exp", "overrides": overrides, "tokenizer": tokenizer}


# --------------------------------------------------------------------------- help
def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_top_level_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SUBCOMMANDS)


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [s for a in parser._actions for s in a.option_strings if s.startswith("--")]


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_subcommand_help_mentions_its_options(name, capsys):
    parser = _subparsers()[name]
    options = _options(parser)
    nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if nested:      # e.g. `punctuation train|evaluate|restore`: each action has options of its own
        assert all(_options(sub) != ["--help"] for a in nested for sub in a.choices.values())
    else:
        assert options != ["--help"]
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: s2s-media {name}")
    for opt in options:
        assert opt in out, opt


# --------------------------------------------------------------------------- the happy path
def test_train_uses_the_tokenizer_written_by_the_tokenizer_command(exp, tiny_corpus):
    ck = load_checkpoint(exp["dir"] / "epoch_2.pt")
    assert ck["tokenizer"] == exp["tokenizer"]
    assert set(ck["tokenizer"]["units"]) < set("".join(json.loads(x)["text"] for x in
                                                       (tiny_corpus / "train.jsonl").read_text().splitlines()) + "▁")


def test_train_prints_a_summary(exp, capsys, tiny_corpus, tmp_path):
    # a finished experiment resumes from last.pt and stops at once: a cheap way to see the summary line
    threads = torch.get_num_threads()
    try:
        assert main(["train", str(CONF), *_sets(exp["overrides"])]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "trained" in out and "0 bad utterances skipped" in out and str(exp["dir"]) in out


@pytest.mark.parametrize("best", [False, True])
def test_average_last_and_best(exp, best, capsys):
    out = exp["root"] / f"avg_{'best' if best else 'last'}.pt"
    assert main(["average", str(exp["dir"]), "-n", "2", *(["--best"] if best else []), "-o", str(out)]) == 0
    assert "averaged 2 checkpoints" in capsys.readouterr().out
    ck = load_checkpoint(out)
    assert {"model", "config", "tokenizer", "cmvn", "meta"} <= set(ck)
    assert len(ck["meta"]["averaged"]) == 2
    if not best:
        assert ck["meta"]["averaged"] == ["epoch_1.pt", "epoch_2.pt"]
        a, b = (load_checkpoint(exp["dir"] / n)["model"] for n in ("epoch_1.pt", "epoch_2.pt"))
        k = next(k for k, v in a.items() if v.is_floating_point() and not torch.equal(v, b[k]))
        torch.testing.assert_close(ck["model"][k], (a[k] + b[k]) / 2)


def test_evaluate_all_methods_writes_hypotheses_and_scores(exp, tiny_corpus, capsys):
    out_dir = exp["root"] / "eval_all"
    model = exp["root"] / "avg_last.pt"
    if not model.is_file():
        assert main(["average", str(exp["dir"]), "-n", "2", "-o", str(model)]) == 0
    code = main(["evaluate", "--model", str(model), "--manifest", str(tiny_corpus / "dev.jsonl"),
                 "--decoding", "all", "--beam", "2", "--workers", "0", "--out", str(out_dir)])
    assert code == 0
    printed = capsys.readouterr().out
    ids = [json.loads(x)["id"] for x in (tiny_corpus / "dev.jsonl").read_text().splitlines()]
    for m in SEARCHES:
        rows = [json.loads(x) for x in (out_dir / f"{m}.jsonl").read_text().splitlines()]
        assert sorted(r["id"] for r in rows) == sorted(ids)
        assert all({"id", "ref", "hyp", "score"} <= set(r) for r in rows)
        line = next(x for x in printed.splitlines() if x.startswith(m + " "))
        assert "WER" in line and "CER" in line
    scores = json.loads((out_dir / "scores.json").read_text())
    assert set(scores["scores"]) == set(SEARCHES)
    assert scores["utterances"] == len(ids) and scores["skipped"] == 0 and scores["beam"] == 2
    assert all(0 <= s["wer"] and 0 <= s["cer"] for s in scores["scores"].values())


def test_evaluate_skips_missing_audio_scores_the_rest_and_exits_1(exp, tiny_corpus, tmp_path, caplog, capsys):
    rows = [json.loads(x) for x in (tiny_corpus / "dev.jsonl").read_text().splitlines()]
    for r in rows:
        r["audio"] = str(tiny_corpus / r["audio"])
    rows.insert(1, {"id": "ghost", "audio": str(tmp_path / "ghost.wav"), "text": "boo", "duration": 1.0})
    manifest = tmp_path / "with_missing.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main(["evaluate", "--model", str(exp["dir"] / "epoch_2.pt"), "--manifest", str(manifest),
                 "--decoding", "ctc_greedy", "--workers", "0", "--out", str(tmp_path / "out")])
    assert code == 1
    assert "skipping ghost" in caplog.text and str(tmp_path / "ghost.wav") in caplog.text
    scores = json.loads((tmp_path / "out/scores.json").read_text())
    assert scores["utterances"] == len(rows) - 1 and scores["skipped"] == 1
    assert "1 skipped" in capsys.readouterr().out


def test_evaluate_scores_each_voice_family_and_shows_pairs(exp, tiny_corpus, tmp_path, capsys):
    """Synthetic-corpus speaker ids give WER per voice family and for the natural-voice part."""
    rows = [json.loads(x) for x in (tiny_corpus / "train.jsonl").read_text().splitlines()][:6]
    speakers = ["espeak:en-us+m3", "hibari:heart+vtl0.89", "hibari:heart", "piper:joe+vtl1.11", "flite:awb", "x"]
    for r, spk in zip(rows, speakers):
        r["audio"], r["speaker"] = str(tiny_corpus / r["audio"]), spk
    manifest = tmp_path / "families.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main(["evaluate", "--model", str(exp["dir"] / "epoch_2.pt"), "--manifest", str(manifest),
                 "--decoding", "ctc_greedy", "--workers", "0", "--out", str(tmp_path / "out"), "--show", "2"])
    assert code == 0
    groups = json.loads((tmp_path / "out/scores.json").read_text())["by_group"]["ctc_greedy"]
    assert {g: v["utterances"] for g, v in groups.items()} == {
        "espeak-ng": 1, "flite": 1, "hibari": 1, "perturbed": 2, "natural (unseen speakers)": 2}
    hyps = {json.loads(x)["id"]: json.loads(x)["hyp"] for x in (tmp_path / "out/ctc_greedy.jsonl").read_text().splitlines()}
    from s2s_media.metrics import wer
    natural = [r for r in rows if r["speaker"] in ("hibari:heart+vtl0.89", "piper:joe+vtl1.11")]
    expected = wer([r["text"] for r in natural], [hyps[r["id"]] for r in natural]).rate
    assert groups["natural (unseen speakers)"]["wer"] == pytest.approx(expected)
    out = capsys.readouterr().out
    assert "ctc_greedy by voice family:" in out and out.count("  said:  ") == 2 and out.count("  heard: ") == 2


# --------------------------------------------------------------------------- user errors -> exit 2
def test_evaluate_manifest_line_not_json(exp, tiny_corpus, tmp_path, capsys):
    manifest = tmp_path / "bad.jsonl"
    first = (tiny_corpus / "dev.jsonl").read_text().splitlines()[0]
    manifest.write_text(first + "\n" + "this is not json\n")
    code = main(["evaluate", "--model", str(exp["dir"] / "epoch_2.pt"), "--manifest", str(manifest),
                 "--workers", "0", "--out", str(tmp_path / "out")])
    assert code == 2
    err = _error_line(capsys)
    assert f"{manifest}:2" in err and "not valid JSON" in err


@pytest.mark.parametrize("yaml_text,field,reason", [
    ("train:\n  epochz: 3\n", "train.epochz", "unknown key"),
    ("model:\n  encoder_conf:\n    n_layerz: 2\n", "n_layerz", "unknown"),
    ("train:\n  epochs: many\n", "train.epochs", "expected an integer"),
    ("optim:\n  lr: fast\n", "optim.lr", "expected a number"),
    ("data: [1, 2]\n", "data", "expected a mapping"),
])
def test_train_config_errors_name_the_field(tmp_path, capsys, yaml_text, field, reason):
    conf = tmp_path / "bad.yaml"
    conf.write_text(yaml_text)
    assert main(["train", str(conf)]) == 2
    err = _error_line(capsys)
    assert str(conf) in err and field in err and reason in err


def test_train_override_with_wrong_type_names_the_field(tmp_path, capsys):
    assert main(["train", str(CONF), "--set", "train.epochs=lots"]) == 2
    err = _error_line(capsys)
    assert "train.epochs" in err and "lots" in err


def test_set_without_equals(capsys):
    assert main(["train", str(CONF), "--set", "train.epochs"]) == 2
    err = _error_line(capsys)
    assert "train.epochs" in err and "KEY=VALUE" in err


def test_missing_config_file(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert str(tmp_path / "nope.yaml") in _error_line(capsys)


def test_evaluate_missing_checkpoint(tiny_corpus, tmp_path, capsys):
    ckpt = tmp_path / "no_such.pt"
    assert main(["evaluate", "--model", str(ckpt), "--manifest", str(tiny_corpus / "dev.jsonl")]) == 2
    err = _error_line(capsys)
    assert str(ckpt) in err and "not found" in err


@pytest.mark.parametrize("content", [b"", b"\x00garbage" * 100, b"PK\x03\x04 not really a zip"])
def test_evaluate_corrupt_checkpoint(tiny_corpus, tmp_path, capsys, content):
    ckpt = tmp_path / "broken.pt"
    ckpt.write_bytes(content)
    assert main(["evaluate", "--model", str(ckpt), "--manifest", str(tiny_corpus / "dev.jsonl")]) == 2
    assert str(ckpt) in _error_line(capsys)


def test_evaluate_a_torch_file_that_is_not_a_checkpoint(tiny_corpus, tmp_path, capsys):
    ckpt = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, ckpt)
    assert main(["evaluate", "--model", str(ckpt), "--manifest", str(tiny_corpus / "dev.jsonl")]) == 2
    assert str(ckpt) in _error_line(capsys)


def test_evaluate_unknown_decoding_method(tiny_corpus, tmp_path, capsys):
    assert main(["evaluate", "--model", str(tmp_path / "x.pt"), "--manifest", str(tiny_corpus / "dev.jsonl"),
                 "--decoding", "ctc_greedy,telepathy"]) == 2
    assert "telepathy" in _error_line(capsys)


def test_console_script_error_is_one_line_without_traceback(tiny_corpus, tmp_path):
    ckpt = tmp_path / "missing.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocs.run(["s2s-media", "evaluate", "--model", str(ckpt), "--manifest", str(tiny_corpus / "dev.jsonl")],
                        timeout=120, env=env)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(ckpt) in lines[0], proc.stderr


def test_prepare_passes_zero_counts_through(tmp_path):
    """``--hours 0 --dev-utts 0`` mean "no train, no dev split", not "the generator's defaults"."""
    from s2s_media.cli.prepare import preparer_options
    args = build_parser().parse_args(["prepare", "synthetic", "fortunes", str(tmp_path),
                                      "--hours", "0", "--dev-utts", "0", "--test-utts", "3"])
    assert preparer_options("synthetic", args) == {"hours": 0.0, "dev_utts": 0, "test_utts": 3}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["prepare", "synthetic", "fortunes", str(tmp_path), "--hours", "-1"])
