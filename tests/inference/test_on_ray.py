"""``s2s-media transcribe ... --ray``: Ray Data on a local 2-CPU cluster started by the test gives the records
the plain command gives; ``--resume`` skips what the output holds; bad files become error records; a missing
Ray or an unreachable address is a one-line error."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from s2s_media.cli.main import main
from s2s_media.inference import on_ray
from subprocs import free_port


@pytest.fixture
def inputs(tiny_corpus, tmp_path_factory) -> list[Path]:
    bad = tmp_path_factory.mktemp("zz_bad") / "broken.wav"    # sorts after the corpus: the last input
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    return [tiny_corpus / f"wav/u0{i}.wav" for i in range(5)] + [bad]


def _transcribe(ckpt, inputs, out, *extra) -> int:
    """``s2s-media transcribe INPUTS --out OUT EXTRA``; ``ckpt`` None: the bundled model (the error tests)."""
    model = ["--model", str(ckpt)] if ckpt is not None else []
    return main(["transcribe", *map(str, inputs), *model, "--device", "cpu", "--decoding", "ctc_greedy",
                 "--out", str(out), *extra])


@pytest.mark.timeout(1800)   # Ray starts worker processes that import torch: minutes on a busy machine
def test_ray_resumes_and_gives_the_plain_records(ray_cluster, tiny_asr_ckpt, inputs, tmp_path, capsys):
    plain, on_ray_out = tmp_path / "plain.jsonl", tmp_path / "ray.jsonl"
    assert _transcribe(tiny_asr_ckpt, inputs, plain) == 1                  # the broken file failed
    lines = plain.read_text().splitlines(keepends=True)
    assert '"error"' in lines[-1] and len(lines) == len(inputs)           # broken.wav sorts last
    on_ray_out.write_text("".join(lines[:2]))                             # an interrupted run: two files done
    capsys.readouterr()
    assert _transcribe(tiny_asr_ckpt, inputs, on_ray_out, "--resume", "--ray-batch", "2", "--ray") == 1
    assert "resumed: 2 inputs" in capsys.readouterr().out                 # only the missing 4 ran on Ray
    assert on_ray_out.read_text() == plain.read_text()                    # the same records, in the same order


def test_without_ray_the_error_names_the_extra(monkeypatch, inputs, tmp_path, capsys):
    monkeypatch.setattr(on_ray, "ray", None)
    assert _transcribe(None, inputs, tmp_path / "out.jsonl", "--ray") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 's2s-media[ray]'" in err[0], err


def test_unreachable_address_is_a_one_line_error_not_a_hang(inputs, tmp_path, capsys):
    pytest.importorskip("ray")
    start = time.monotonic()
    assert _transcribe(None, inputs, tmp_path / "out.jsonl", f"--ray=127.0.0.1:{free_port()}") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach the Ray head" in err[0], err
    assert time.monotonic() - start < 60
    assert _transcribe(None, inputs, tmp_path / "out.jsonl", "--ray", str(inputs[0])) == 2
    assert "put --ray after the inputs" in capsys.readouterr().err


def test_each_actor_loads_the_model_on_the_runtime_the_command_names(tiny_asr_ckpt, monkeypatch, tmp_path):
    """What a Ray actor runs once (``load_transcriber``) honours ``--runtime`` as the plain command does."""
    from s2s_media.cli.transcribe import load_transcriber
    from s2s_media.inference.onnx_model import OnnxSeq2Seq
    from s2s_media.inference.transcriber import TranscribeOptions
    monkeypatch.setenv("S2S_MEDIA_CACHE", str(tmp_path))
    onnx = load_transcriber(str(tiny_asr_ckpt), "cpu", TranscribeOptions(), runtime="onnx", threads=1)
    torch_run = load_transcriber(str(tiny_asr_ckpt), "cpu", TranscribeOptions(), runtime="torch")
    assert isinstance(onnx.model, OnnxSeq2Seq)
    assert not isinstance(torch_run.model, OnnxSeq2Seq)
