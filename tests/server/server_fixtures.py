"""Helpers shared by the server and browser tests: a tiny random streaming model checkpoint and
a real server running in a background thread."""
from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from websockets.asyncio.client import connect

from fixtures_make import TINY_MODEL
from server.client import STOP, messages

CONF = Path(__file__).resolve().parents[2] / "recipes/synthetic_speech/conf/conformer.yaml"


def make_tiny_checkpoint(path: Path) -> Path:
    """A randomly initialised tiny causal Conformer with a char tokenizer, saved as a real checkpoint."""
    from s2s_media.config import load_config, to_dict
    from s2s_media.models.seq2seq import Seq2SeqModel
    from s2s_media.text.tokenizer import CharTokenizer
    from s2s_media.training.checkpoint import save_checkpoint
    cfg = load_config(CONF, TINY_MODEL)
    tokenizer = CharTokenizer.train(["abcdefghijklmnopqrstuvwxyz '"])
    torch.manual_seed(0)
    model = Seq2SeqModel(cfg.model, tokenizer.vocab_size)
    save_checkpoint({"model": model.state_dict(), "config": to_dict(cfg), "tokenizer": tokenizer.to_dict(),
                     "cmvn": None, "meta": {}}, path)
    return path


class RunningServer:
    """An :class:`server.App` serving in a background thread with its own event loop."""

    def __init__(self, app):
        self.app = app
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self._started = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def serve():
            self.loop = asyncio.get_running_loop()
            task = asyncio.create_task(self.app.run())
            ready = asyncio.create_task(self.app.ready.wait())
            await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
            self._started.set()
            await task
        try:
            asyncio.run(serve())
        except BaseException as e:  # noqa: BLE001 - reported by stop()
            self.error = e
        finally:
            self._started.set()

    def start(self, timeout: float = 30) -> "RunningServer":
        self.thread.start()
        assert self._started.wait(timeout), "server did not start"
        if self.error:
            raise self.error
        return self

    def stop(self) -> None:
        if self.loop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.app.stop)
        self.thread.join(30)
        assert not self.thread.is_alive(), "server did not stop"
        if self.error:
            raise self.error

    def url(self, path: str = "/v1/stream", scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.app.port}{path}"

    def get(self, path: str) -> tuple[int, str, str]:
        """HTTP GET: status, content type, body."""
        try:
            with urllib.request.urlopen(self.url(path, "http"), timeout=10) as r:
                return r.status, r.headers.get("Content-Type", ""), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type", ""), e.read().decode()

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no session is open (a client may see its close before the server has counted it)."""
        deadline = time.monotonic() + timeout
        while self.metric("s2s_sessions_active") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not self.metric("s2s_sessions_active"), "sessions still open"

    def metric(self, name: str) -> float:
        """The value of one sample line of /metrics (``name`` with its labels, as printed)."""
        for line in self.get("/metrics")[2].splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        raise KeyError(name)


def start_process(*args: str) -> tuple[subprocess.Popen, int, "queue.Queue[str]"]:
    """``s2s-media serve --port 0 ARGS`` in a subprocess of its own process group; returns it, its port
    and its log lines. End it with :func:`stop_process`."""
    proc = subprocess.Popen([sys.executable, "-m", "s2s_media.cli.main", "serve", "--port", "0", *args],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    seen = []
    try:
        while True:
            try:
                line = lines.get(timeout=300)   # importing torch on a busy 2-core machine can be slow
            except queue.Empty:
                raise AssertionError(f"the server did not start; its log: {seen}") from None
            seen.append(line)
            if m := re.search(r"listening on ws://127\.0\.0\.1:(\d+)", line):
                return proc, int(m.group(1)), lines
    except BaseException:                   # no start, or the test's own timeout: leave no server behind
        stop_process(proc)
        raise


def stop_process(proc: subprocess.Popen) -> None:
    """Kill the server's whole process group if it is still running."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def tiny_recognizer(ckpt: Path):
    """A streaming recognizer on ``ckpt`` with small chunks and a 1 s maximum segment (endpoint rule 3),
    so a few seconds of audio give several finals."""
    from s2s_media.inference.checkpoint import load_model_file
    from s2s_media.inference.streaming import EndpointConfig, StreamingConfig, StreamingRecognizer
    config = StreamingConfig(chunk_size=8, beam=2, endpoint=EndpointConfig(rule3_max_utterance=1.0))
    return StreamingRecognizer(load_model_file(ckpt), config)


def tiny_decoder(ckpt: Path):
    """What a decoding worker process builds in the tests (``serve --workers N``): the tiny recognizer on one
    thread, raw finals."""
    torch.set_num_threads(1)
    return tiny_recognizer(ckpt), None


def unloadable_decoder(path: str):
    """A worker's build that fails as loading a bad model file does."""
    from s2s_media.errors import UserError
    raise UserError(f"{path}: not a checkpoint; give a file written by train, average or export")


def start_server(recognizer, engine: dict | None = None, punctuator=None, **fields) -> RunningServer:
    """A started server on a free port of 127.0.0.1; ``fields``: :class:`server.ServerConfig` fields;
    ``punctuator`` writes its finals (None: raw)."""
    from server import App, EngineConfig, ServerConfig
    config = ServerConfig(host="127.0.0.1", port=0, engine=EngineConfig(**(engine or {})), **fields)
    return RunningServer(App(recognizer, config, punctuator)).start()


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


async def collect(ws) -> list[dict]:
    """Every message until the connection closes (normally or not)."""
    return [m async for m in messages(ws)]


async def session(url: str, start: dict | None, audio: list[bytes], stop: bool = True, **kw) -> tuple[list[dict], int]:
    """Run one v1 session; returns every message received and the close code."""
    async with connect(url, max_size=None, **kw) as ws:
        if start is not None:
            await ws.send(json.dumps({"type": "start", **start}))
        for a in audio:
            await ws.send(a)
        if stop:
            await ws.send(STOP)
        received = await collect(ws)
        await ws.wait_closed()
        return received, ws.close_code


def check_stream(messages: list[dict], duration: float, words: bool = True, partials: bool = True) -> list[dict]:
    """The v1 message sequence is well formed; returns the finals."""
    kinds = [m["type"] for m in messages]
    assert kinds[0] == "ready" and kinds[-1] == "end", kinds
    assert messages[0]["protocol"] == 1 and isinstance(messages[0]["session"], int)
    assert ("partial" in kinds) == partials
    finals = [m for m in messages if m["type"] == "final"]
    assert finals and kinds[-2] == "final"
    assert [f["segment"] for f in finals] == list(range(len(finals)))
    for m in messages[1:-1]:
        assert 0 <= m["start"] <= m["end"] <= duration + 0.05, m
        assert isinstance(m["text"], str)
        assert ("words" in m) == (words and m["type"] == "final")
    assert finals[-1]["end"] == pytest.approx(duration, abs=0.05)
    if words:
        ws = [w for f in finals for w in f["words"]]
        assert ws and all({"word", "start", "end", "confidence"} <= set(w) for w in ws)
    return finals
