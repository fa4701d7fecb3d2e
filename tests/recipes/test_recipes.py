"""The GPU recipes' shell logic: data stages for real on tiny corpora, later stages with stand-in commands.

Stages 0-1 (manifests, tokenizer) run the real ``s2s-media`` on fixtures laid out like LibriSpeech
and Common Voice. Stages 2-4 (train, average, evaluate) would need a GPU and hours, so they run with
``s2s-media`` and ``torchrun`` replaced by scripts that only record their arguments: that checks the
commands the recipe builds (torchrun or not, the --set overrides, one evaluation per test set and
chunk size) without training anything.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import subprocs
from fixtures_make import make_commonvoice, make_librispeech

from s2s_media.data.manifest import read_manifest
from s2s_media.training.run import load_tokenizer

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
LIBRISPEECH = RECIPES / "librispeech" / "run.sh"
COMMONVOICE = RECIPES / "commonvoice" / "run.sh"
ALL_LS_SUBSETS = ("train-clean-100", "train-clean-360", "dev-clean", "dev-other", "test-clean", "test-other")


def run(script: Path, *args: str, path_prefix: Path | None = None) -> subprocess.CompletedProcess:
    """``bash script args...`` with this interpreter's ``s2s-media`` first on PATH (or ``path_prefix``)."""
    path = [str(Path(sys.executable).parent), os.environ.get("PATH", "")]
    if path_prefix is not None:
        path.insert(0, str(path_prefix))
    env = {**os.environ, "PATH": os.pathsep.join(path)}
    return subprocs.run(["bash", str(script), *map(str, args)], env=env, timeout=240)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def speakers(path: Path) -> set[str]:
    return {r.speaker for r in read_manifest(path)}


# --------------------------------------------------------------------------- data stages, for real

def test_librispeech_data_stages(tmp_path):
    corpus = make_librispeech(tmp_path / "src", ALL_LS_SUBSETS)
    data, exp = tmp_path / "data", tmp_path / "exp"
    out = ok(run(LIBRISPEECH, "--stage", 0, "--stop-stage", 1, "--src", corpus.root, "--data", data,
                 "--exp", exp, "--bpe-units", 30)).stdout
    assert "stage 0" in out and "stage 1" in out and "stage 2" not in out
    expected = {"train": ("train-clean-100", "train-clean-360"), "dev": ("dev-clean",), "dev_other": ("dev-other",),
                "test": ("test-clean",), "test_other": ("test-other",)}
    assert sorted(p.name for p in data.glob("*.jsonl")) == sorted(f"{s}.jsonl" for s in expected)
    for split, subsets in expected.items():
        records = read_manifest(data / f"{split}.jsonl")
        truth = {k: u for s in subsets for k, u in corpus.split(s).items()}
        assert {r.id for r in records} == set(truth), split
        assert all(Path(r.audio).is_absolute() and Path(r.audio).is_file() for r in records)
    tokenizer = load_tokenizer(exp / "tokenizer.pt")
    assert tokenizer.kind == "sentencepiece" and tokenizer.vocab_size <= 30 + 4
    assert tokenizer.decode(tokenizer.encode("the quick brown fox")) == "the quick brown fox"


def test_librispeech_train_subsets(tmp_path):
    corpus = make_librispeech(tmp_path / "src", ALL_LS_SUBSETS)
    data = tmp_path / "data"
    # SRC may also be the LibriSpeech/ folder itself
    ok(run(LIBRISPEECH, "--stage", 0, "--stop-stage", 0, "--src", corpus.root / "LibriSpeech", "--data", data,
           "--train-subsets", "train-clean-100"))
    assert {r.id for r in read_manifest(data / "train.jsonl")} == set(corpus.split("train-clean-100"))
    assert {r.id for r in read_manifest(data / "test_other.jsonl")} == set(corpus.split("test-other"))
    # the links folder holds only links; audio paths in the manifests point at the real corpus
    assert all(p.is_symlink() for p in (data / "subsets").iterdir())
    assert all(str(corpus.root) in r.audio for r in read_manifest(data / "train.jsonl"))

    bad = run(LIBRISPEECH, "--stage", 0, "--stop-stage", 0, "--src", corpus.root, "--data", data,
              "--train-subsets", "train-other-500")
    assert bad.returncode == 1 and "train-other-500 not found" in bad.stderr


def test_commonvoice_data_stages(tmp_path):
    corpus = make_commonvoice(tmp_path / "src")
    data, exp = tmp_path / "data", tmp_path / "exp"
    # SRC = the release folder; the preparer finds its only language folder
    ok(run(COMMONVOICE, "--stage", 0, "--stop-stage", 1, "--src", corpus.root.parent, "--data", data,
           "--exp", exp, "--bpe-units", 30, "--workers", 1))
    for split in ("train", "dev", "test"):
        records = read_manifest(data / f"{split}.jsonl")
        assert {r.id for r in records} == set(corpus.split(split)), split
        # --convert (the recipe default): FLAC copies inside data/, written relative to the manifest
        raw = [json.loads(line)["audio"] for line in (data / f"{split}.jsonl").read_text().splitlines()]
        assert all(a.startswith("audio/") and a.endswith(".flac") and (data / a).is_file() for a in raw)
    assert load_tokenizer(exp / "tokenizer.pt").kind == "sentencepiece"


# --------------------------------------------------------------------------- common.sh

@pytest.mark.parametrize("script", [LIBRISPEECH, COMMONVOICE], ids=["librispeech", "commonvoice"])
def test_unknown_option_is_rejected(script, tmp_path):
    result = run(script, "--stage", 0, "--no-such-option", 3, "--data", tmp_path / "data")
    assert result.returncode == 2
    assert f"unknown option --no-such-option for {script.name}" in result.stderr
    assert result.stdout == "" and not (tmp_path / "data").exists()


@pytest.mark.parametrize("script", [LIBRISPEECH, COMMONVOICE], ids=["librispeech", "commonvoice"])
def test_stage_past_the_last_runs_nothing(script, tmp_path):
    result = ok(run(script, "--stage", 5, "--src", tmp_path / "missing", "--data", tmp_path / "data",
                    "--exp", tmp_path / "exp"))
    assert result.stdout == "" and result.stderr == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("script", [LIBRISPEECH, COMMONVOICE], ids=["librispeech", "commonvoice"])
def test_gpu_counts_must_be_integers(script, tmp_path):
    result = run(script, "--nproc-per-node", "four", "--data", tmp_path / "data")
    assert result.returncode == 2 and "take integers, got 'four'" in result.stderr
    assert not (tmp_path / "data").exists()


def test_commonvoice_convert_must_be_true_or_false(tmp_path):
    result = run(COMMONVOICE, "--convert", "yes", "--data", tmp_path / "data")
    assert result.returncode == 2 and "--convert takes true or false, got 'yes'" in result.stderr


# --------------------------------------------------------------------------- stages 2-4, commands only

@pytest.fixture
def recorder(tmp_path) -> tuple[Path, Path]:
    """A bin folder whose ``s2s-media`` and ``torchrun`` only append their argv to a log; (bin, log)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for name in ("s2s-media", "torchrun"):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nprintf "%s\\n" "{name} $*" >> "{log}"\n')
        script.chmod(0o755)
    return bin_dir, log


def calls(log: Path) -> list[list[str]]:
    return [shlex.split(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_librispeech_commands(recorder, tmp_path):
    bin_dir, log = recorder
    data, exp = tmp_path / "data", tmp_path / "exp"
    data.mkdir()
    (data / "test.jsonl").write_text("")      # test_other.jsonl missing: evaluated sets are skipped, not fatal
    result = ok(run(LIBRISPEECH, "--src", tmp_path / "ls", "--data", data, "--exp", exp, "--bpe-units", 500,
                    "--extra", "--set train.epochs=3", path_prefix=bin_dir))
    assert f"no {data}/test_other.jsonl" in result.stdout
    prepare, tokenizer, train, average, *evaluate = calls(log)
    assert prepare == ["s2s-media", "prepare", "librispeech", str(tmp_path / "ls"), str(data)]
    common = ["--set", f"train.exp_dir={exp}", "--set", f"data.train={data}/train.jsonl",
              "--set", f"data.dev={data}/dev.jsonl", "--set", "tokenizer.vocab_size=500"]
    assert tokenizer == ["s2s-media", "tokenizer", "conf/conformer.yaml", *common]
    assert train == ["s2s-media", "train", "conf/conformer.yaml", *common, "--set", "train.epochs=3"]
    assert average == ["s2s-media", "average", str(exp), "--best", "-n", "10", "-o", f"{exp}/avg_best_10.pt"]
    assert [(c[c.index("--manifest") + 1], c[c.index("--chunk-size") + 1], c[c.index("--out") + 1])
            for c in evaluate] == [(f"{data}/test.jsonl", "0", f"{exp}/decode_test_chunk0"),
                                   (f"{data}/test.jsonl", "16", f"{exp}/decode_test_chunk16")]
    assert all(c[c.index("--model") + 1] == f"{exp}/avg_best_10.pt" for c in evaluate)


@pytest.mark.parametrize("script", [LIBRISPEECH, COMMONVOICE], ids=["librispeech", "commonvoice"])
def test_multi_gpu_training_goes_through_torchrun(script, recorder, tmp_path):
    bin_dir, log = recorder
    ok(run(script, "--stage", 2, "--stop-stage", 2, "--data", tmp_path / "data", "--exp", tmp_path / "exp",
           "--nproc-per-node", 4, "--nnodes", 2, "--node-rank", 1, "--master-addr", "10.0.0.1", path_prefix=bin_dir))
    (train,) = calls(log)
    assert train[:train.index("-m")] == ["torchrun", "--nnodes", "2", "--node_rank", "1", "--nproc_per_node", "4",
                                         "--master_addr", "10.0.0.1", "--master_port", "29500"]
    assert train[train.index("-m"):][:4] == ["-m", "s2s_media.cli.main", "train", "conf/conformer.yaml"]
    assert "tokenizer.vocab_size" not in " ".join(train)     # no --bpe-units: the conf's value stands


def test_commonvoice_commands(recorder, tmp_path):
    bin_dir, log = recorder
    ok(run(COMMONVOICE, "--stage", 0, "--stop-stage", 0, "--src", tmp_path / "cv", "--data", tmp_path / "data",
           "--workers", 3, path_prefix=bin_dir))
    ok(run(COMMONVOICE, "--stage", 0, "--stop-stage", 0, "--src", tmp_path / "cv", "--data", tmp_path / "data",
           "--workers", 3, "--convert", "false", path_prefix=bin_dir))
    converted, plain = calls(log)
    assert converted == ["s2s-media", "prepare", "commonvoice", str(tmp_path / "cv"), str(tmp_path / "data"),
                         "--convert", "--workers", "3"]
    assert plain == converted[:5] + ["--workers", "3"]


def test_synthetic_speech_commands(recorder, tmp_path):
    bin_dir, log = recorder
    data, exp, feats = tmp_path / "data", tmp_path / "exp", tmp_path / "feats"
    ok(run(RECIPES / "synthetic_speech" / "run.sh", "--stage", 1, "--data", data, "--exp", exp, "--lm-order", 7,
           "--feats", feats, "--workers", 2, "--lm-weight", 0.7, path_prefix=bin_dir))
    tokenizer, lm, features, train, average, plain, fused, export = calls(log)
    assert tokenizer[:3] == ["s2s-media", "tokenizer", "conf/conformer_v3.yaml"]
    assert lm == ["s2s-media", "lm", "fortunes+wordnet", "--tokenizer", f"{exp}/tokenizer.pt", "-o", f"{exp}/lm.pt",
                  "--order", "7", "--exclude", f"{data}/dev.jsonl", f"{data}/test.jsonl", "--dev", f"{data}/dev.jsonl"]
    assert features == ["s2s-media", "features", f"{data}/train.jsonl", f"{data}/dev.jsonl", f"{data}/test.jsonl",
                        "--cache", str(feats), "--workers", "2"]
    # two DDP processes of one thread each, reading the feature cache
    assert train[0] == "torchrun" and train[train.index("--nproc_per_node") + 1] == "2"
    assert train[train.index("-m"):][:4] == ["-m", "s2s_media.cli.main", "train", "conf/conformer_v3.yaml"]
    assert f"data.feature_cache={feats}" in train and average[:2] == ["s2s-media", "average"]
    # the test split is scored without the LM (every method) and with it (the CTC searches it fuses into)
    assert plain[plain.index("--lm-weight") + 1] == "0" and "--lm" not in plain
    assert fused[fused.index("--lm") + 1] == f"{exp}/lm.pt"
    assert fused[fused.index("--decoding") + 1] == "ctc_prefix_beam,rescoring"
    # the bundled form: int8 with the LM and the decoding defaults tuned on dev
    assert export[:5] == ["s2s-media", "export", f"{exp}/avg_best_3.pt", f"{exp}/asr_default.pt", "--weights"]
    assert export[export.index("--lm") + 1] == f"{exp}/lm.pt"
    assert {"decode.beam=12", "decode.lm_weight=0.7", "decode.lm_bonus=2.0"} <= set(export)


def test_synthetic_speech_earlier_recipe_without_cache_or_ddp(recorder, tmp_path):
    bin_dir, log = recorder
    ok(run(RECIPES / "synthetic_speech" / "run.sh", "--stage", 1, "--stop-stage", 2, "--conf", "conf/conformer.yaml",
           "--feats", "", "--nproc-per-node", 1, "--data", tmp_path / "data", "--exp", tmp_path / "exp",
           path_prefix=bin_dir))
    tokenizer, lm, train = calls(log)                       # no feature stage
    assert train[:3] == ["s2s-media", "train", "conf/conformer.yaml"] and "data.feature_cache=" in train
