"""The runtime install: ``--help``, ``transcribe``, ``serve`` and ``stream`` on an ONNX model directory in an
environment where torch cannot be imported (:mod:`runtime_env`), and one-line errors for what needs torch.

The model is exported with torch (this process); everything after runs in the torch-free interpreter, which
logs every attempt to import torch: none may happen.
"""
from __future__ import annotations

import asyncio
import json
import queue
import re
import subprocess
import threading
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

import s2s_media
import subprocs
from runtime_env import torch_free_python, runtime_env
from s2s_media.cli.main import main
from s2s_media.frontend.audio import SAMPLE_RATE, load_audio
from s2s_media.inference.checkpoint import load_model_file
from s2s_media.lm import NgramLM
from s2s_media.lm.files import save_lm_file
from s2s_media.text.tokenizer import EOS, SOS
from server.client import STOP, messages, pcm16

REPO = Path(s2s_media.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def onnx_dir(tiny_asr_ckpt, tiny_corpus, tmp_path_factory) -> Path:
    """The tiny model exported with a language model (lm.npz) and the bundled punctuation (punctuation.onnx)."""
    root = tmp_path_factory.mktemp("torch_free")
    tokenizer = load_model_file(tiny_asr_ckpt).tokenizer
    texts = [json.loads(line)["text"] for line in (tiny_corpus / "train.jsonl").read_text().splitlines()]
    lm = NgramLM.train([tokenizer.encode(t) for t in texts], order=3, vocab_size=tokenizer.vocab_size,
                       bos=SOS, eos=EOS)
    save_lm_file(root / "lm.pt", lm, tokenizer, {})
    out = root / "model_onnx"
    assert main(["export", "--format", "onnx", str(tiny_asr_ckpt), str(out), "--lm", str(root / "lm.pt")]) == 0
    assert {"lm", "punctuation"} <= set(json.loads((out / "manifest.json").read_text())["files"])
    return out


@pytest.fixture(scope="module")
def torch_free(tmp_path_factory):
    """``run(*args)``: ``python -m s2s_media.cli.main ARGS`` in the torch-free environment; ``env`` and
    ``python`` to start processes there; ``blocked()``: the torch imports attempted so far."""
    root = tmp_path_factory.mktemp("venv")
    python = torch_free_python(root / "env")
    log = root / "blocked.log"
    env = runtime_env(REPO, log)

    class Env:
        def __init__(self):
            self.python, self.env = python, env

        def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
            return subprocs.run([str(python), "-m", "s2s_media.cli.main", *args], timeout=timeout, env=env)

        def blocked(self) -> list[str]:
            return log.read_text().split() if log.exists() else []

    return Env()


def test_help_runs_without_torch(torch_free):
    proc = torch_free.run("--help")
    assert proc.returncode == 0 and "transcribe" in proc.stdout and "serve" in proc.stdout, proc.stderr
    assert torch_free.run("transcribe", "--help").returncode == 0
    assert torch_free.blocked() == []


def test_transcribe_an_onnx_directory_without_torch(torch_free, onnx_dir, tiny_corpus, tmp_path):
    wav = tiny_corpus / "wav/u00.wav"
    out = tmp_path / "out.jsonl"
    proc = torch_free.run("transcribe", str(wav), "--model", str(onnx_dir), "--decoding", "rescoring",
                          "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert torch_free.blocked() == []
    record = json.loads(out.read_text())
    # the same directory decoded here, where torch is importable: the same record (LM and punctuation included)
    want = s2s_media.load_model(onnx_dir).transcribe(wav, decoding="rescoring")
    assert record["text"] == want["text"] and record["words"] == want["words"]


def _start_server(torch_free, onnx_dir: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([str(torch_free.python), "-m", "s2s_media.cli.main", "serve", "--port", "0", "--model",
                             str(onnx_dir), "--chunk-size", "8", "--threads", "1"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, start_new_session=True,
                            env={**torch_free.env, "PYTHONUNBUFFERED": "1"})
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    seen = []
    while True:
        try:
            line = lines.get(timeout=120)
        except queue.Empty:
            proc.kill()
            raise AssertionError(f"the server did not start: {seen}") from None
        seen.append(line)
        if m := re.search(r"listening on ws://127\.0\.0\.1:(\d+)", line):
            return proc, int(m.group(1))


def test_serve_and_stream_without_torch(torch_free, onnx_dir, tiny_corpus):
    proc, port = _start_server(torch_free, onnx_dir)
    try:
        audio = load_audio(tiny_corpus / "wav/u01.wav")

        async def session() -> list[dict]:
            async with connect(f"ws://127.0.0.1:{port}/v1/stream") as ws:
                await ws.send(json.dumps({"type": "start", "sample_rate": SAMPLE_RATE}))
                data = pcm16(audio)
                for i in range(0, len(data), 3200):
                    await ws.send(data[i:i + 3200])
                await ws.send(STOP)
                return [m async for m in messages(ws)]

        received = asyncio.run(asyncio.wait_for(session(), 120))
        kinds = [m["type"] for m in received]
        assert kinds[0] == "ready" and kinds[-1] == "end" and "final" in kinds, kinds
        final = next(m for m in received if m["type"] == "final")
        assert final["text"] and final["words"]
        streamed = torch_free.run("stream", str(tiny_corpus / "wav/u01.wav"), "--url",
                                  f"ws://127.0.0.1:{port}/v1/stream", "--fast", "--json")
        assert streamed.returncode == 0, streamed.stderr[-2000:]
        assert any(json.loads(line)["type"] == "final" for line in streamed.stdout.splitlines() if line.strip())
    finally:
        proc.kill()
        proc.wait(10)
    assert torch_free.blocked() == []


@pytest.mark.parametrize("args", [["train", "conf.yaml"], ["export", "m.pt", "out"], ["caption", "x.png"]])
def test_what_needs_torch_says_so_in_one_line(torch_free, args):
    proc = torch_free.run(*args)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and "\n" not in err and "Traceback" not in err, err
    assert 's2s-media[train]' in err and args[0] in err


def test_a_checkpoint_needs_the_train_extra(torch_free, tiny_asr_ckpt, tiny_corpus):
    proc = torch_free.run("transcribe", str(tiny_corpus / "wav/u00.wav"), "--model", str(tiny_asr_ckpt))
    err = proc.stderr.strip()
    assert proc.returncode == 2 and "\n" not in err and str(tiny_asr_ckpt) in err and "train" in err, err


def test_transcribe_without_a_model_takes_the_bundled_onnx_form(torch_free, tiny_corpus, tmp_path):
    """No --model in a runtime install: assets/asr_default.onnx/ with the shared punct_default.onnx; the only
    torch look-up is the loader's probe (importlib.util.find_spec), which imports nothing."""
    wav = tiny_corpus / "wav/u00.wav"
    out = tmp_path / "out.jsonl"
    before = len(torch_free.blocked())
    proc = torch_free.run("transcribe", str(wav), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert torch_free.blocked()[before:] == ["torch"]
    record = json.loads(out.read_text())
    # the bundled ONNX form decoded here, where torch is importable: the same record
    want = s2s_media.load_model(runtime="onnx").transcribe(wav)
    assert record["text"] == want["text"] and record["words"] == want["words"] and record["text"][0].isupper()
