"""``s2s-media serve`` as a real process (SIGTERM) and ``s2s-media stream`` against a real server."""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import types

import numpy as np
import pytest
from websockets.asyncio.client import connect

from s2s_media.cli.main import main
from server.client import pcm16
from server_fixtures import chunks, collect, start_process, stop_process

SR = 16000


def test_sigterm_finishes_sessions_and_exits_0_within_2_s(tiny_ckpt, speech):
    """SIGTERM: the sessions get their finals and close 1001; the process exits 0 within 2 s of the
    last close (issue #17: the interpreter's teardown took 3-60 s)."""
    proc, port, _ = start_process("--model", str(tiny_ckpt), "--chunk-size", "8")
    url = f"ws://127.0.0.1:{port}/v1/stream"
    exited: list[float] = []
    threading.Thread(target=lambda: (proc.wait(), exited.append(time.monotonic())), daemon=True).start()

    async def run():
        async with connect(url) as streaming, connect(url) as waiting:
            await streaming.send('{"type":"start"}')
            assert json.loads(await streaming.recv())["type"] == "ready"
            for c in chunks(pcm16(speech[:SR]), 3200):
                await streaming.send(c)
            while json.loads(await streaming.recv())["type"] != "partial":   # decoding is under way
                pass
            proc.send_signal(signal.SIGTERM)
            rest = await collect(streaming)
            await waiting.wait_closed()
            return rest, streaming.close_code, waiting.close_code, time.monotonic()
    try:
        rest, code, waiting_code, last_close = asyncio.run(run())
        assert proc.wait(timeout=60) == 0
    finally:
        stop_process(proc)
    assert [m["type"] for m in rest][-2:] == ["final", "end"]
    assert code == 1001 and waiting_code == 1001
    assert exited[0] - last_close < 2.0, f"exited {exited[0] - last_close:.1f} s after the last session closed"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_stream_client_prints_finals(serve, speech_wav, capsys):
    srv = serve()
    assert main(["stream", str(speech_wav), "--url", srv.url(), "--fast"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= 2 and all(re.match(r"\[\d+\.\d\d-\d+\.\d\d\] ", line) for line in lines), lines
    assert main(["stream", str(speech_wav), "--url", srv.url(), "--fast", "--json"]) == 0
    kinds = [json.loads(line)["type"] for line in capsys.readouterr().out.splitlines()]
    assert kinds[0] == "ready" and "partial" in kinds and kinds[-2:] == ["final", "end"]


def test_stream_client_errors(serve, speech_wav, tmp_path, capsys, monkeypatch):
    srv = serve(token="t0k")
    assert main(["stream", str(speech_wav), "--url", srv.url()]) == 2
    assert "(HTTP 401); pass --token" in capsys.readouterr().err
    assert main(["stream", str(speech_wav), "--url", srv.url(), "--token", "t0k", "--fast"]) == 0
    capsys.readouterr()
    with socket.socket() as s:                        # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    assert main(["stream", str(speech_wav), "--url", f"ws://127.0.0.1:{free}/v1/stream"]) == 2
    assert "cannot connect" in capsys.readouterr().err
    assert main(["stream", str(tmp_path / "missing.wav"), "--url", srv.url()]) == 2
    assert main(["stream", str(speech_wav), "--chunk-ms", "5"]) == 2
    assert "--chunk-ms: 5 is out of range" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "sounddevice", None)     # not installed
    assert main(["mic", "--url", srv.url()]) == 2
    assert "mic needs the sounddevice package" in capsys.readouterr().err


def test_file_chunks_real_time_pace():
    from s2s_media.cli.stream import file_chunks

    async def collect(fast):
        t0, out = time.monotonic(), []
        async for chunk in file_chunks(np.zeros(8000, dtype=np.float32), 100, fast=fast):
            out.append(chunk)
        return time.monotonic() - t0, out

    paced, chunks = asyncio.run(collect(False))
    assert len(chunks) == 5 and all(len(c) == 3200 for c in chunks)      # 100 ms of PCM16 each
    assert paced >= 0.39                                                  # the last leaves at 0.4 s
    fast, _ = asyncio.run(collect(True))
    assert fast < 0.1


def test_mic_client_streams_until_ctrl_c(serve, speech_wav, capsys, monkeypatch):
    """A fake sounddevice feeds the wav as microphone blocks, then Ctrl-C: the last final still prints."""
    import soundfile as sf
    wav, sr = sf.read(speech_wav, dtype="int16")
    assert sr == 16000

    class FakeStream:
        def __init__(self, samplerate, channels, dtype, blocksize, callback):
            assert (samplerate, channels, dtype) == (16000, 1, "int16")
            self.blocksize, self.callback = blocksize, callback

        def feed(self):
            for i in range(0, len(wav), self.blocksize):
                self.callback(wav[i:i + self.blocksize].tobytes(), self.blocksize, None, None)
                time.sleep(0.002)
            time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGINT)

        def __enter__(self):
            threading.Thread(target=self.feed, daemon=True).start()
            return self

        def __exit__(self, *exc):
            return False

    fake = types.SimpleNamespace(RawInputStream=FakeStream, query_devices=lambda kind: {"name": "fake"},
                                 PortAudioError=RuntimeError)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    srv = serve()
    assert main(["mic", "--url", srv.url(), "--json"]) == 0
    kinds = [json.loads(line)["type"] for line in capsys.readouterr().out.splitlines()]
    assert kinds[0] == "ready" and "final" in kinds and kinds[-1] == "end"


def test_serve_usage_errors(tiny_ckpt, tmp_path, capsys, monkeypatch):
    from s2s_media.inference import checkpoint
    monkeypatch.setitem(checkpoint.BUNDLED, "asr", "assets/not_there.pt")
    assert main(["serve", "--port", "0"]) == 2
    assert "no bundled model" in capsys.readouterr().err
    assert main(["serve", "--model", str(tiny_ckpt), "--certfile", str(tmp_path / "c.pem")]) == 2
    assert "--certfile and --keyfile go together" in capsys.readouterr().err
    assert main(["serve", "--model", str(tiny_ckpt), "--chunk-size", "0"]) == 2
    for flag, value in [("--start-timeout", "0"), ("--min-audio-rate", "1.5"), ("--rate-window", "-1"),
                        ("--max-per-client", "-1"), ("--max-buffered", "0"), ("--max-upload", "0"),
                        ("--max-audio", "-1"), ("--max-hotwords", "0")]:
        assert main(["serve", "--model", str(tiny_ckpt), flag, value]) == 2
        integer = flag in ("--max-per-client", "--max-hotwords")
        assert f"{flag}: {int(value) if integer else float(value)} is out of range" \
            in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", "--model", str(tiny_ckpt), "--port", str(taken.getsockname()[1])]) == 2
    assert "cannot serve on 127.0.0.1" in capsys.readouterr().err
