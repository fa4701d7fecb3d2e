"""The captioning recipes' shell logic: data and tokenizer stages for real on tiny corpora laid out
like the real ones; training, averaging and evaluation stages with ``s2s-media``/``torchrun``
replaced by stand-ins that record their arguments (the commands are checked, nothing is trained)."""
from __future__ import annotations

import pytest

import os
import shlex
import subprocess
import sys
from pathlib import Path

import subprocs
from caption_fixtures import RECIPES, make_coco, make_flickr
from s2s_media.data.captions import read_caption_manifest
from s2s_media.training.run import load_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models run fastest on one thread


def run(script: Path, *args, stand_in: Path | None = None) -> subprocess.CompletedProcess:
    path = [str(Path(sys.executable).parent), os.environ.get("PATH", "")]
    if stand_in is not None:
        path.insert(0, str(stand_in))
    result = subprocs.run(["bash", str(script), *map(str, args)], timeout=240,
                          env={**os.environ, "PATH": os.pathsep.join(path)})
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def stand_ins(tmp_path: Path) -> tuple[Path, Path]:
    """A folder with fake ``s2s-media`` and ``torchrun`` that append their command lines to a log."""
    folder, log = tmp_path / "bin", tmp_path / "calls.log"
    folder.mkdir()
    for name in ("s2s-media", "torchrun"):
        (folder / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {shlex.quote(str(log))}\n')
        (folder / name).chmod(0o755)
    return folder, log


def test_synthetic_shapes_recipe(tmp_path):
    script = RECIPES / "synthetic_shapes" / "run.sh"
    data, exp = tmp_path / "data", tmp_path / "exp"
    out = run(script, "--stop-stage", 1, "--train-images", 12, "--val-images", 3, "--test-images", 16, "--size", 32,
              "--workers", 1, "--data", data, "--exp", exp).stdout
    assert "stage 0" in out and "stage 1" in out and "stage 2" not in out
    assert len(read_caption_manifest(data / "train.jsonl")) == 12 and (data / "shapes.json").is_file()
    assert (data / "test_heldout.jsonl").is_file()       # 16 test images with seed 0 hold some unseen pairs
    tok = load_tokenizer(exp / "tokenizer.pt")
    assert tok.kind == "word" and tok.tasks == ["caption"] and 1 not in tok.encode("a small red circle")
    folder, log = stand_ins(tmp_path)
    run(script, "--stage", 2, "--stop-stage", 7, "--data", data, "--exp", exp, "--size", 32, stand_in=folder)
    calls = log.read_text().splitlines()
    assert calls[0].startswith("s2s-media train conf/resnet_transformer.yaml") and "data.image.size=32" in calls[0]
    assert calls[1] == f"s2s-media average {exp} --best -n 2 -o {exp}/avg_best_2.pt"
    evaluations = [c for c in calls if c.startswith("s2s-media evaluate")]
    assert len(evaluations) == 4 and all("--beam 3" in c for c in evaluations)       # test + test_heldout, twice
    assert any(f"--manifest {data}/test_heldout.jsonl" in c for c in evaluations)
    scst = [c for c in calls if "conf/scst.yaml" in c]
    assert len(scst) == 1 and f"train.init_from={exp}/avg_best_2.pt" in scst[0]
    assert f"tokenizer.path={exp}/tokenizer.pt" in scst[0]


def test_coco_recipe(tmp_path):
    script = RECIPES / "coco" / "run.sh"
    truth = make_coco(tmp_path / "coco", "caption_datasets")
    data, exp = tmp_path / "data", tmp_path / "exp"
    run(script, "--stop-stage", 1, "--src", tmp_path / "coco", "--data", data, "--exp", exp)
    found = {r.id for s in ("train", "val", "test") for r in read_caption_manifest(data / f"{s}.jsonl")}
    assert found == set(truth)
    assert load_tokenizer(exp / "tokenizer.pt").tasks == ["caption"]
    folder, log = stand_ins(tmp_path)
    run(script, "--stage", 2, "--stop-stage", 4, "--data", data, "--exp", exp, "--nproc-per-node", 2,
        "--weights", "/w/resnet50.pth", stand_in=folder)
    calls = log.read_text().splitlines()
    assert calls[0].startswith("torchrun --nnodes 1 --node_rank 0 --nproc_per_node 2")
    assert "model.image_encoder_conf.weights=/w/resnet50.pth" in calls[0]
    assert calls[-1].startswith(f"s2s-media evaluate --model {exp}/avg_best_5.pt --manifest {data}/test.jsonl")


def test_flickr8k_recipe_data_stages(tmp_path):
    script = RECIPES / "flickr8k" / "run.sh"
    truth = make_flickr(tmp_path / "f8k", "flickr8k", "Images")
    data, exp = tmp_path / "data", tmp_path / "exp"
    run(script, "--stop-stage", 1, "--src", tmp_path / "f8k", "--data", data, "--exp", exp)
    found = {r.id: r.split for s in ("train", "val", "test") for r in read_caption_manifest(data / f"{s}.jsonl")}
    assert found == truth
    tok = load_tokenizer(exp / "tokenizer.pt")
    assert tok.kind == "word" and tok.vocab_size == 5          # min_freq 5: no word is that frequent here


def test_multimodal_recipe_tokenizer_covers_both_tasks(tiny_corpus, shapes, tmp_path):
    script = RECIPES / "synthetic_multimodal" / "run.sh"
    exp = tmp_path / "exp"
    out = run(script, "--stop-stage", 2, "--speech", tiny_corpus, "--shapes", shapes, "--exp", exp,
              "--extra", "").stdout
    assert out.count("exists; kept") == 2                    # both corpora are there: not generated again
    tok = load_tokenizer(exp / "tokenizer.pt")
    assert tok.tasks == ["asr", "caption"]
    assert tok.decode(tok.encode("a small red circle")) == "a small red circle"
