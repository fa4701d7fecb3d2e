"""``s2s-media transcribe``: formats, exit codes, resume, sharding and merging, manifests, Ctrl-C."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch
import soundfile as sf

import subprocs
from s2s_media.cli.main import main
from s2s_media.inference.transcriber import Transcriber
from asr_fixtures import long_recording


@pytest.fixture(scope="module")
def ckpt(tiny_asr_ckpt) -> Path:
    return tiny_asr_ckpt


@pytest.fixture
def run(ckpt):
    def _run(*args: str) -> int:
        return main(["transcribe", *map(str, args), "--model", str(ckpt), "--device", "cpu",
                     "--decoding", "ctc_greedy"])
    return _run


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_jsonl_on_stdout_by_default(run, tiny_corpus, capsys):
    assert run(tiny_corpus / "wav/u00.wav", tiny_corpus / "wav/u01.wav") == 0
    out = capsys.readouterr()
    rows = [json.loads(x) for x in out.out.splitlines()]
    assert [Path(r["path"]).name for r in rows] == ["u00.wav", "u01.wav"]
    assert set(rows[0]) == {"path", "text", "duration", "words", "segments"}
    assert "2 files" in out.err and "RTF" in out.err and "0 failed" in out.err


@pytest.mark.parametrize("name,first", [("out.txt", None), ("out.tsv", "path\tstart\tend\ttext"),
                                        ("out.srt", None), ("out.vtt", "WEBVTT")])
def test_format_follows_the_extension(run, tiny_corpus, tmp_path, name, first):
    out = tmp_path / name
    assert run(tiny_corpus / "wav/u00.wav", "--out", out) == 0
    text = out.read_text()
    if first:
        assert text.splitlines()[0] == first
    if name == "out.txt":
        assert text.startswith(str(tiny_corpus / "wav/u00.wav") + "\n")
    assert _rows(Path(f"{out}.done.jsonl")) == [{"path": str(tiny_corpus / "wav/u00.wav")}]


def test_subtitles_for_a_folder_go_into_a_folder(run, tiny_corpus, tmp_path):
    assert run(tiny_corpus / "wav", "--format", "srt", "--out", tmp_path / "subs") == 0
    assert len(list((tmp_path / "subs").glob("*.srt"))) == 12
    assert run(tiny_corpus / "wav", "--out", tmp_path / "all.srt") == 2          # one file cannot hold 12


def test_failures_get_records_and_a_nonzero_exit(run, tiny_corpus, tmp_path, capsys):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "clip.mp4").write_bytes(b"\0" * 64)
    out = tmp_path / "out.jsonl"
    code = run(tmp_path / "empty.wav", tmp_path / "empty_dir", tmp_path / "clip.mp4", tiny_corpus / "wav/u00.wav",
               "--out", out)
    assert code == 1
    rows = {Path(r["path"]).name: r for r in _rows(out)}
    assert "empty (0 bytes)" in rows["empty.wav"]["error"]
    assert "no audio files" in rows["empty_dir"]["error"]
    assert "unsupported format '.mp4'" in rows["clip.mp4"]["error"]
    assert "text" in rows["u00.wav"]
    report = capsys.readouterr()
    assert "3 failed" in report.out and "error: " in report.err


@pytest.mark.parametrize("vad", ["auto", "silero", "energy"])
def test_long_recording_segments_are_offset(run, tiny_corpus, tmp_path, vad):
    starts = long_recording(tiny_corpus, tmp_path / "long.wav", n=3)
    out = tmp_path / "long.jsonl"
    assert run(tmp_path / "long.wav", "--max-segment", "4", "--vad", vad, "--out", out) == 0
    rec = _rows(out)[0]
    assert len(rec["segments"]) == 3
    assert all(t - 0.25 <= s["start"] <= t + 0.25 for s, t in zip(rec["segments"], starts))


def test_an_unknown_vad_is_a_one_line_error(run, tiny_corpus, capsys):
    assert run(tiny_corpus / "wav/u00.wav", "--vad", "webrtc") == 2
    err = capsys.readouterr().err
    assert "--vad webrtc: vad method 'webrtc': unknown; choose from auto, silero, energy" in err
    assert len(err.strip().splitlines()) == 1


def test_resume_skips_what_is_done(run, tiny_corpus, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    wav = tiny_corpus / "wav"
    assert run(wav / "u00.wav", wav / "u01.wav", "--out", out) == 0
    assert run(wav / "u00.wav", "--out", out) == 2                               # refuses to overwrite
    assert run(wav / "u00.wav", wav / "u01.wav", wav / "u02.wav", "--out", out, "--resume") == 0
    assert [Path(r["path"]).name for r in _rows(out)] == ["u00.wav", "u01.wav", "u02.wav"]
    assert "2 inputs already in" in capsys.readouterr().out


def test_shards_and_merge(run, tiny_corpus, tmp_path, monkeypatch):
    wav = tiny_corpus / "wav"
    parts = []
    for i in range(3):
        parts.append(tmp_path / f"part{i}.jsonl")
        assert run(wav, "--shard", f"{i}/3", "--out", parts[-1]) == 0
    names = [Path(r["path"]).name for p in parts for r in _rows(p)]
    assert sorted(names) == [f"u{i:02d}.wav" for i in range(12)] and len(set(names)) == 12
    assert [Path(r["path"]).name for r in _rows(parts[1])] == ["u01.wav", "u04.wav", "u07.wav", "u10.wav"]
    # torchrun: each rank reads RANK/WORLD_SIZE and writes OUT.rankK; then merge
    out = tmp_path / "all.jsonl"
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        assert run(wav, "--shard", "auto", "--out", out) == 0
    assert main(["transcribe", "--merge", f"{out}.rank0", f"{out}.rank1", "--out", str(out)]) == 0
    assert [Path(r["path"]).name for r in _rows(out)] == [f"u{i:02d}.wav" for i in range(12)]
    assert run(wav, "--shard", "2/2", "--out", tmp_path / "x.jsonl") == 2


def test_manifest_prints_wer_and_cer(run, tiny_corpus, tmp_path, capsys):
    assert run(tiny_corpus / "dev.jsonl", "--out", tmp_path / "dev.jsonl") == 0
    report = capsys.readouterr().out
    assert "3 scored" in report and "WER" in report and "CER" in report
    assert {r["id"] for r in _rows(tmp_path / "dev.jsonl")} == {"u00", "u01", "u02"}


def test_manifest_with_missing_audio(run, tiny_corpus, tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps({"id": "a", "audio": "missing.wav", "text": "x y", "duration": 1.0}) + "\n")
    assert run(m, "--out", tmp_path / "o.jsonl") == 1
    (row,) = _rows(tmp_path / "o.jsonl")
    assert row["id"] == "a" and "missing.wav: audio file not found" in row["error"]


def test_ctrl_c_keeps_what_is_written(run, tiny_corpus, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = Transcriber.record

    def record_then_interrupt(self, prep, results):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, prep, results)
    monkeypatch.setattr(Transcriber, "record", record_then_interrupt)
    out = tmp_path / "out.jsonl"
    assert run(tiny_corpus / "wav", "--out", out, "--batch-seconds", "2") == 130
    assert [Path(r["path"]).name for r in _rows(out)] == ["u00.wav"]
    monkeypatch.setattr(Transcriber, "record", real)
    assert run(tiny_corpus / "wav", "--out", out, "--resume") == 0
    assert len(_rows(out)) == 12


def test_usage_errors_and_help(run, tiny_corpus, capsys):
    assert run(tiny_corpus / "wav", "--shard", "1/x") == 2
    assert run(tiny_corpus / "wav", "--out", "x.docx") == 2
    assert main(["transcribe", str(tiny_corpus / "wav"), "--model", str(tiny_corpus / "nope.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["transcribe", "--help"])
    assert "torchrun" in capsys.readouterr().out


def test_stereo_and_8khz_files(run, tiny_corpus, tmp_path):
    import numpy as np
    from s2s_media.frontend.audio import load_audio
    wav = load_audio(tiny_corpus / "wav/u03.wav", sr=8000)
    sf.write(tmp_path / "s.wav", np.stack([wav, wav], 1), 8000)
    out = tmp_path / "o.jsonl"
    assert run(tmp_path / "s.wav", "--out", out) == 0
    assert abs(_rows(out)[0]["duration"] - len(wav) / 8000) < 0.01


def test_export_then_transcribe(ckpt, tiny_corpus, tmp_path, capsys):
    out = tmp_path / "small.pt"
    assert main(["export", str(ckpt), str(out), "--weights", "float16"]) == 0
    assert "MB" in capsys.readouterr().out
    assert main(["transcribe", str(tiny_corpus / "wav/u00.wav"), "--model", str(out), "--device", "cpu",
                 "--decoding", "ctc_greedy", "--out", str(tmp_path / "o.jsonl")]) == 0
    assert main(["export", str(out), str(tmp_path / "again.pt")]) == 2          # already exported


def test_every_loader_restores_exported_weights(ckpt, tmp_path):
    """load_model_file (used by evaluate, streaming and the server) reads exported checkpoints as
    their weights, not as raw int8/fp16 storage."""
    from s2s_media.inference.export import export_checkpoint
    from s2s_media.inference.checkpoint import load_model_file
    ref = load_model_file(ckpt).model.state_dict()
    for weights in ("int8", "float16"):
        out = tmp_path / f"{weights}.pt"
        export_checkpoint(ckpt, out, weights=weights, quantize=False)
        assert "version" in torch.load(out, weights_only=True)
        got = load_model_file(out).model.state_dict()
        for name, value in ref.items():
            if value.is_floating_point():
                tol = value.abs().max().item() / 100 + 1e-6   # int8: half a step of a per-row scale
                assert torch.allclose(got[name].float(), value, atol=tol), (weights, name)


def test_stdout_to_a_pipe_holds_only_records(ckpt, tiny_corpus):
    """The console script with stdout to a pipe: every stdout line is one record; no progress bar anywhere
    (stderr is no terminal either); the summary on stderr gives short audio in seconds."""
    proc = subprocs.run(["s2s-media", "transcribe", str(tiny_corpus / "wav/u00.wav"), str(tiny_corpus / "wav/u01.wav"),
                         "--model", str(ckpt), "--device", "cpu", "--decoding", "ctc_greedy"],
                        timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [Path(r["path"]).name for r in rows] == ["u00.wav", "u01.wav"] and all("text" in r for r in rows)
    assert "\r" not in proc.stdout + proc.stderr and "transcribing" not in proc.stderr
    assert re.match(r"2 files, \d+\.\d s of audio, ", proc.stderr.strip().splitlines()[-1]), proc.stderr
